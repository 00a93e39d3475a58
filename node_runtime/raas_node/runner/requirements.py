"""A user's requirements.txt: resolved while fetching, installed offline when running.

Resolution (`build_wheelhouse`) runs during the fetch step, the only one with network access:
``pip wheel`` turns every requirement into a wheel in a wheelhouse named by the content hash of
requirements.txt. Installation (`install_offline`) runs with ``--no-index`` from that wheelhouse
into a site folder, also named by the hash, that the run puts on ``PYTHONPATH``. Both are cached:
a resubmission with the same requirements pays for neither.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from raas_node.runner.fetch import FetchError
from raas_node.runner.requirement_lines import check_requirement_lines

_COMPLETE_MARKER = ".complete"


PIP_SETTINGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_TRUSTED_HOST")
"""pip's own variables that choose the package index: passed through to pip."""


def run_pip(
    arguments: Sequence[str], timeout_s: float, environment: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m pip <arguments>`` with a clean environment (`PIP_SETTINGS`, certificates and
    TMPDIR taken from `environment`, default ``os.environ``); `FetchError` on a timeout."""
    source = os.environ if environment is None else environment
    clean = {
        "PATH": source.get("PATH", "/usr/bin:/bin"),
        "HOME": source.get("HOME", "/tmp"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_PROGRESS_BAR": "off",
    }
    for name in (*PIP_SETTINGS, "PIP_CERT", "SSL_CERT_FILE", "TMPDIR"):
        if name in source:
            clean[name] = source[name]
    try:
        return subprocess.run(
            [sys.executable, "-m", "pip", *arguments],
            env=clean,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FetchError("RequirementsTimeout", f"installing requirements took longer than {timeout_s:.0f} s") from None


def build_wheelhouse(
    requirements: Path,
    digest: str,
    cache_dir: Path,
    *,
    index_arguments: Sequence[str] = (),
    timeout_s: float = 600.0,
) -> Path:
    """Wheels for every requirement, in ``cache_dir/wheels/<digest>`` (reused when complete);
    binary wheels preferred (a source package's build script is a stranger's code). A file that
    is more than plain requirements is refused first (`check_requirement_lines`)."""
    check_requirement_lines(requirements)
    return _cached_pip_output(
        cache_dir / "wheels" / digest,
        lambda target: ["wheel", "--quiet", "--prefer-binary", "--wheel-dir", str(target), "--requirement",
                        str(requirements), *index_arguments],
        "requirements.txt cannot be resolved",
        timeout_s,
    )  # fmt: skip


def install_offline(requirements: Path, digest: str, cache_dir: Path, *, timeout_s: float = 300.0) -> Path:
    """Install from the wheelhouse without network into ``cache_dir/site/<digest>``; returns it."""
    wheelhouse = cache_dir / "wheels" / digest
    if not (wheelhouse / _COMPLETE_MARKER).exists():
        raise FetchError("RequirementsMissing", "the requirements were not resolved while fetching")
    return _cached_pip_output(
        cache_dir / "site" / digest,
        lambda target: ["install", "--quiet", "--no-index", "--find-links", str(wheelhouse), "--target", str(target),
                        "--requirement", str(requirements)],
        "requirements.txt cannot be installed",
        timeout_s,
    )  # fmt: skip


def _cached_pip_output(folder: Path, arguments: Callable[[Path], list[str]], failure: str, timeout_s: float) -> Path:
    """Run pip into a partial folder and publish it as `folder` only when it succeeded."""
    if (folder / _COMPLETE_MARKER).exists():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    result = run_pip(arguments(partial), timeout_s)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise FetchError("RequirementsFailed", f"{failure}: {pip_error_summary(result.stderr)}")
    (partial / _COMPLETE_MARKER).touch()
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def pip_error_summary(stderr: str) -> str:
    """The line of pip's error output that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip().startswith("ERROR")]
    return lines[0] if lines else (stderr.strip().splitlines() or ["pip failed"])[-1]
