"""Building RaaS container images without a registry: a debootstrapped base, a host wheelhouse, podman.

The steps every image of the project shares (``images/build.py`` and
`raas_node.runner.image.ensure_runtime_image` call them):

* `ensure_base_image`: ``debootstrap --variant=minbase bookworm`` (≈30 s, ≈200 MB, cached in a
  folder) imported with ``podman import`` as ``localhost/raas-debian-min:bookworm``; it stands in
  for ``debian:12-slim`` where no registry is reachable. For a foreign architecture (arm64 on an
  amd64 host: the Raspberry Pis' images) it is ``…:bookworm-arm64``, its second stage and the
  image's build steps running under qemu-user-static;
* `build_wheelhouse`: pip cannot reach an index from inside a build, so every wheel the image's
  ``pip install`` needs is gathered on the host: the local projects' own wheels (built from
  copies of their folders), then their dependencies and the image's requirement files as binary
  wheels for bookworm's CPython 3.11 on each target architecture, whatever the host's Python is.
  A ``SHA256SUMS`` manifest lists the wheels (the Containerfiles copy it, so that a changed
  wheelhouse is a changed layer);
* `build_image`: ``podman build --runtime runc`` (crun fails on hybrid cgroups) of an image
  folder (its ``Containerfile`` and requirement files) with the wheelhouse as ``wheels/`` in the
  build context.

Needs root, podman, runc and debootstrap (``scripts/install-system-deps``), the Debian mirror and
PyPI. Errors are `ImageBuildError`s naming the step that failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

PODMAN_RUNTIME = "runc"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_IMAGE = f"localhost/raas-debian-min:{DEBIAN_SUITE}"
TARGET_PYTHON = "3.11"
"""Bookworm's python3: the wheelhouse holds wheels for this CPython."""
WHEELHOUSE_MANIFEST = "SHA256SUMS"

_GLIBC_MINOR = 36  # bookworm's glibc 2.36: manylinux_2_17 … manylinux_2_36 wheels run on it
_COMPLETE_MARKER = ".complete"
_MACHINES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


class ImageBuildError(RuntimeError):
    """An image cannot be built; the message says which step failed and why."""


def machine_name(architecture: str) -> str:
    """The wheel-tag machine of an architecture: ``amd64`` → ``x86_64``, ``arm64`` → ``aarch64`` (or themselves)."""
    try:
        return _MACHINES[architecture.lower()]
    except KeyError:
        raise ImageBuildError(f"unknown architecture {architecture!r}: use amd64 or arm64") from None


def host_machine() -> str:
    """This machine's wheel-tag machine (``x86_64`` or ``aarch64``)."""
    return machine_name(platform.machine())


def image_exists(image: str) -> bool:
    """Whether podman's local storage holds `image` (False when podman is missing)."""
    if shutil.which("podman") is None:
        return False
    return run_step(["podman", "image", "exists", image], timeout_s=60, check=False).returncode == 0


def require_tools(*tools: str) -> None:
    """`ImageBuildError` unless every tool is installed and we are root (rootful podman, debootstrap)."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise ImageBuildError(f"{', '.join(missing)} not installed: run scripts/install-system-deps as root")
    if os.geteuid() != 0:
        raise ImageBuildError("building images needs root (debootstrap and rootful podman)")


def debian_architecture(architecture: str) -> str:
    """Debian's (and OCI's) name of an architecture: ``x86_64`` → ``amd64``, ``aarch64`` → ``arm64``."""
    return {"x86_64": "amd64", "aarch64": "arm64"}[machine_name(architecture)]


def base_image_tag(architecture: str | None = None) -> str:
    """The debootstrapped base's tag: `BASE_IMAGE` for this machine's architecture, with the
    architecture appended for a foreign one (``…:bookworm-arm64``)."""
    machine = machine_name(architecture) if architecture else host_machine()
    return BASE_IMAGE if machine == host_machine() else f"{BASE_IMAGE}-{debian_architecture(machine)}"


def require_emulation(architecture: str) -> None:
    """`ImageBuildError` unless this machine can run `architecture`'s programs (its own, or a
    foreign one through qemu-user-static registered with binfmt_misc, with the F flag so that
    it works inside containers too)."""
    machine = machine_name(architecture)
    if machine == host_machine():
        return
    handler = Path("/proc/sys/fs/binfmt_misc") / f"qemu-{machine}"
    lines = handler.read_text().splitlines() if handler.is_file() else []
    flags = next((line.partition(":")[2] for line in lines if line.startswith("flags:")), "")
    if "enabled" not in lines or "F" not in flags:
        raise ImageBuildError(
            f"building for {debian_architecture(machine)} on this {host_machine()} machine needs qemu-user-static "
            "registered with binfmt_misc: run scripts/install-system-deps as root"
        )


def ensure_base_image(
    rootfs: Path, *, mirror: str = DEBIAN_MIRROR, timeout_s: float = 1800.0, architecture: str | None = None
) -> str:
    """The debootstrapped base (`base_image_tag`), imported unless podman has it; its root file
    system is kept in `rootfs` for next time (a foreign `architecture`'s beside it, in
    ``<rootfs>-<arch>``: debootstrap runs its second stage under qemu-user-static)."""
    tag = base_image_tag(architecture)
    if image_exists(tag):
        return tag
    debian_arch = debian_architecture(architecture or host_machine())
    if tag != BASE_IMAGE:
        require_emulation(debian_arch)
        rootfs = rootfs.with_name(f"{rootfs.name}-{debian_arch}")
    if not (rootfs / _COMPLETE_MARKER).exists():
        partial = rootfs.with_name(rootfs.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        log.info("debootstrap %s (%s) into %s (once per machine)", DEBIAN_SUITE, debian_arch, rootfs)
        command = ["debootstrap", "--variant=minbase", f"--arch={debian_arch}", DEBIAN_SUITE, str(partial), mirror]
        run_step(command, timeout_s, step="debootstrap")
        partial.rename(rootfs)
        (rootfs / _COMPLETE_MARKER).touch()
    log.info("importing %s as %s", rootfs, tag)
    # The marker must not end up in the image: tar everything but it.
    entries = sorted(entry.name for entry in rootfs.iterdir() if entry.name != _COMPLETE_MARKER)
    importing = ["podman", "import", "--quiet", "--arch", debian_arch, "-", tag]
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", *entries], stdout=subprocess.PIPE) as tar:
        run_step(importing, timeout_s, step="podman import", stdin=tar.stdout)
    if tar.returncode != 0:
        raise ImageBuildError(f"tar of {rootfs} failed with status {tar.returncode}")
    return tag


def build_wheelhouse(
    wheelhouse: Path,
    *,
    projects: Sequence[Path],
    requirements: Sequence[Path] = (),
    machines: Sequence[str] = (),
    pip_options: Sequence[str] = (),
    timeout_s: float = 1800.0,
) -> Path:
    """`wheelhouse`, filled with every wheel needed to install `projects` and `requirements` offline.

    `projects` are folders holding a ``pyproject.toml`` (built to wheels here; requirement files
    name them as ordinary requirements, e.g. ``raas-node``); `machines` are target architectures
    (default: this one's), all in one wheelhouse (pip inside each build picks its own).
    `pip_options` go to ``pip download`` (e.g. ``--extra-index-url`` of PyTorch's CPU wheels).
    Reused when already complete; built in a ``.partial`` sibling otherwise.
    """
    if (wheelhouse / _COMPLETE_MARKER).exists():
        return wheelhouse
    wheelhouse.parent.mkdir(parents=True, exist_ok=True)
    partial = wheelhouse.with_name(wheelhouse.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    with tempfile.TemporaryDirectory(dir=wheelhouse.parent, prefix="source-") as copies:
        trees = []
        for project in projects:
            # Building from a copy: setuptools would leave build/ and *.egg-info in the source tree.
            tree = Path(copies) / project.resolve().name
            ignored = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*_cache")
            shutil.copytree(project, tree, ignore=ignored)
            trees.append(str(tree))
        if trees:
            run_step(
                [*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(partial), *trees], timeout_s, "pip wheel"
            )
    # The own wheels are named by path: pip then takes them, never a same-named project on an index.
    own_wheels = [str(path) for path in sorted(partial.glob("*.whl"))]
    requirement_arguments = [argument for file in requirements for argument in ("--requirement", str(file))]
    for machine in machines or [host_machine()]:
        run_step(
            [*pip, "download", "--quiet", "--only-binary=:all:", "--dest", str(partial),
             *_target(machine_name(machine)), *pip_options, *own_wheels, *requirement_arguments],
            timeout_s,
            step=f"pip download of the wheels for {machine}",
        )  # fmt: skip
    write_manifest(partial)
    shutil.rmtree(wheelhouse, ignore_errors=True)
    partial.rename(wheelhouse)
    (wheelhouse / _COMPLETE_MARKER).touch()
    return wheelhouse


def remove_other_wheelhouses(keep: Path, pattern: str) -> list[Path]:
    """Delete the complete wheelhouses beside `keep` whose names match the regular expression `pattern`.

    Each source change gives a new wheelhouse (≈150 MB): the cache keeps only the current one.
    Partial ones are left alone (another build may be filling them).
    """
    removed = []
    for sibling in keep.parent.iterdir():
        if sibling != keep and re.fullmatch(pattern, sibling.name) and (sibling / _COMPLETE_MARKER).exists():
            shutil.rmtree(sibling, ignore_errors=True)
            removed.append(sibling)
    return removed


def check_offline_install(
    wheelhouse: Path, requirements: Sequence[Path], *, machine: str, timeout_s: float = 600.0
) -> list[str]:
    """The ``name==version``s that ``pip install --no-index`` from `wheelhouse` would install for `machine`.

    It resolves `requirements` exactly as the image's install step does (no index, wheels only,
    bookworm's CPython on `machine`) without installing: `ImageBuildError` when something is missing.
    """
    with tempfile.TemporaryDirectory(prefix="raas-dry-run-") as scratch:
        report = Path(scratch) / "report.json"
        run_step(
            [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "install", "--dry-run",
             "--quiet", "--ignore-installed", "--no-index", "--find-links", str(wheelhouse), "--only-binary=:all:",
             "--target", str(Path(scratch) / "target"), *_target(machine_name(machine)), "--report", str(report),
             *[argument for file in requirements for argument in ("--requirement", str(file))]],
            timeout_s,
            step=f"offline install check for {machine}",
        )  # fmt: skip
        installs = json.loads(report.read_text())["install"]
    return sorted(f"{item['metadata']['name']}=={item['metadata']['version']}" for item in installs)


def tree_digest(folder: Path) -> str:
    """sha256 over the relative paths and contents of the source files under `folder`."""
    skipped = {"__pycache__", "build", "dist", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part in skipped or part.endswith(".egg-info") for part in relative.parts) or not path.is_file():
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def write_manifest(wheelhouse: Path) -> Path:
    """``SHA256SUMS`` of the wheels in `wheelhouse` (``sha256sum`` format, sorted by name)."""
    lines = [
        f"{hashlib.sha256(wheel.read_bytes()).hexdigest()}  {wheel.name}\n"
        for wheel in sorted(wheelhouse.glob("*.whl"))
    ]
    manifest = wheelhouse / WHEELHOUSE_MANIFEST
    manifest.write_text("".join(lines))
    return manifest


def build_image(
    tag: str,
    image_folder: Path,
    wheelhouse: Path,
    *,
    work_dir: Path,
    build_args: Mapping[str, str] | None = None,
    platforms: Sequence[str] = (),
    pull: bool = False,
    timeout_s: float = 1800.0,
) -> str:
    """``podman build`` of `image_folder`'s Containerfile with `wheelhouse` as ``wheels/``; returns `tag`.

    The context is assembled in a temporary folder under `work_dir` (wheels hard-linked where the
    file system allows). With several `platforms` (``linux/arm64``…; foreign ones need
    qemu-user-static) `tag` names a manifest list. `pull` lets podman pull a missing base image.
    """
    if not (wheelhouse / WHEELHOUSE_MANIFEST).exists():
        raise ImageBuildError(f"{wheelhouse} has no {WHEELHOUSE_MANIFEST}: build it with build_wheelhouse")
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="context-") as context:
        for entry in image_folder.resolve().iterdir():
            if entry.is_file():
                shutil.copy2(entry, Path(context) / entry.name)
        shutil.copytree(
            wheelhouse, Path(context) / "wheels", ignore=shutil.ignore_patterns(_COMPLETE_MARKER), copy_function=_link
        )
        command = [
            "podman",
            "build",
            "--quiet",
            "--runtime",
            PODMAN_RUNTIME,
            f"--pull={'missing' if pull else 'never'}",
        ]
        for name, value in (build_args or {}).items():
            command += ["--build-arg", f"{name}={value}"]
        if len(platforms) > 1:
            command += ["--platform", ",".join(platforms), "--manifest", tag]
        else:
            command += [*(["--platform", platforms[0]] if platforms else []), "--tag", tag]
        log.info("building %s from %s", tag, image_folder)
        run_step([*command, context], timeout_s, step="podman build")
    return tag


def save_archive(image: str, archive: Path, *, timeout_s: float = 900.0) -> Path:
    """Write podman's `image` to `archive` as a Docker archive that keeps its name: what an
    air-gapped node imports into containerd (``k3s ctr images import FILE`` on a k3s node,
    ``ctr -n k8s.io images import FILE`` elsewhere). Returns `archive` (replaced if it existed)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    command = ["podman", "save", "--quiet", "--format", "docker-archive", "--output", str(archive), image]
    run_step(command, timeout_s, step=f"podman save {image}")
    return archive


def push_image(image: str, destination: str, *, manifest_list: bool = False, timeout_s: float = 1800.0) -> str:
    """Push podman's `image` to `destination` (``registry[:port]/path/name:tag``; a manifest list
    with all its images when `manifest_list`), with podman's own credentials (``podman login``).
    Returns `destination`."""
    if "://" in destination or not re.fullmatch(r"[^\s/:]+(:[0-9]+)?(/[^\s:]+)+:[\w][\w.-]*", destination):
        raise ImageBuildError(
            f"cannot push to {destination!r}: give registry/name:tag, e.g. registry.lab:5000/raas/raas-api:0.1.0"
        )
    verb = ["manifest", "push", "--all"] if manifest_list else ["push"]
    run_step(
        ["podman", *verb, "--quiet", image, f"docker://{destination}"], timeout_s, step=f"podman push {destination}"
    )
    return destination


def run_step(
    command: Sequence[str],
    timeout_s: float,
    step: str = "",
    *,
    check: bool = True,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
) -> subprocess.CompletedProcess[str]:
    """Run one build step; `ImageBuildError` with its last line of output when it fails or times out."""
    try:
        result = subprocess.run(
            list(command), stdin=stdin, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise ImageBuildError(f"{step or command[0]} took longer than {timeout_s:.0f} s") from None
    if check and result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise ImageBuildError(f"{step or command[0]} failed: {lines[-1] if lines else f'status {result.returncode}'}")
    return result


def _target(machine: str) -> list[str]:
    """pip's options selecting wheels for bookworm's CPython on `machine`."""
    target = [
        "--python-version",
        TARGET_PYTHON,
        "--implementation",
        "cp",
        "--abi",
        f"cp{TARGET_PYTHON.replace('.', '')}",
    ]
    for minor in range(17, _GLIBC_MINOR + 1):
        target += ["--platform", f"manylinux_2_{minor}_{machine}"]
    return target


def _link(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
