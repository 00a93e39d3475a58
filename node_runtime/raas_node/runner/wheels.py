"""A user's requirements.txt on a cluster: wheels resolved by the fetch pod, installed by the job pod.

Only the fetch pod may reach a package index, and it runs on an ordinary node, while the job
runs on a robot node of another architecture (a Raspberry Pi: aarch64). So the fetch pod builds
one wheelhouse that serves every robot architecture:

1. ``pip wheel`` of the requirements on the fetch pod's own platform: this also turns source-only
   packages into wheels, which are pure Python (``py3-none-any``) whenever they can run anywhere;
2. ``pip download --only-binary=:all: --platform <tag>`` for each robot platform
   (`DEFAULT_PLATFORMS`: manylinux for aarch64 and x86_64, glibc 2.36 as in the job image's
   Debian), with the wheels of step 1 as links, so those pure wheels satisfy it and a compiled
   package must have a wheel for the robots' platform.

`pack_wheelhouse` makes it one ``wheels.tar.gz`` (wheel files only) that the fetch pod uploads;
the job pod's init container (`raas_node.runner.install_wheels`) installs from it with no index
and no network. The package index is pip's: ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``,
``PIP_FIND_LINKS``, ``PIP_NO_INDEX`` and ``PIP_TRUSTED_HOST`` pass from the fetch pod's environment.
"""

from __future__ import annotations

import sys
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from raas_node.runner.fetch import FetchError
from raas_node.runner.requirement_lines import check_requirement_lines
from raas_node.runner.requirements import pip_error_summary, run_pip

DEFAULT_PLATFORMS = ("manylinux_2_36_aarch64", "manylinux_2_36_x86_64")
"""pip platform tags of the robot nodes (older manylinux tags are implied by pip)."""

MAX_WHEELHOUSE_BYTES = 512 * 1024 * 1024
"""The largest wheelhouse a job may bring (the job pod's install volume is sized after it)."""


def resolve_wheelhouse(
    requirements: Path,
    wheelhouse: Path,
    *,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    environment: Mapping[str, str] | None = None,
    timeout_s: float = 600.0,
) -> list[Path]:
    """Wheels for `requirements` on this platform and on each of `platforms`, in `wheelhouse`.

    Binary wheels are preferred (a source package's build script is a stranger's code). Raises
    `FetchError` (``UnsafeRequirements``: more than plain requirements, `check_requirement_lines`;
    ``RequirementsFailed``, ``RequirementsTimeout``, ``RequirementsTooLarge``)."""
    check_requirement_lines(requirements)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    command = ["wheel", "--prefer-binary", "--wheel-dir", str(wheelhouse), "--requirement", str(requirements)]
    _pip(command, environment, timeout_s)
    for platform in platforms:
        _pip(
            [
                "download", "--only-binary=:all:", "--platform", platform, "--implementation", "cp",
                "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}",
                "--dest", str(wheelhouse), "--find-links", str(wheelhouse), "--requirement", str(requirements),
            ],
            environment,
            timeout_s,
            failure=f"requirements.txt has no wheels for the robots' platform {platform}",
        )  # fmt: skip
    wheels = sorted(wheelhouse.glob("*.whl"))
    size = sum(wheel.stat().st_size for wheel in wheels)
    if size > MAX_WHEELHOUSE_BYTES:
        raise FetchError(
            "RequirementsTooLarge",
            f"the requirements come to {size / 2**20:.0f} MiB of wheels (limit {MAX_WHEELHOUSE_BYTES / 2**20:.0f} MiB)",
        )
    return wheels


def pack_wheelhouse(wheels: Sequence[Path], archive: Path) -> Path:
    """``wheels.tar.gz``: the wheel files, flat, nothing else."""
    with tarfile.open(archive, "w:gz") as bundle:
        for wheel in wheels:
            bundle.add(wheel, arcname=wheel.name, recursive=False)
    return archive


def _pip(
    arguments: list[str],
    environment: Mapping[str, str] | None,
    timeout_s: float,
    failure: str = "requirements.txt cannot be resolved",
) -> None:
    # No cache: a fetch pod is thrown away, and its HOME is too small for large wheels.
    result = run_pip(["--quiet", "--no-cache-dir", *arguments], timeout_s, environment)
    if result.returncode != 0:
        raise FetchError("RequirementsFailed", f"{failure}: {pip_error_summary(result.stderr)}")
