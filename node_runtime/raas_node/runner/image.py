"""The container image user code runs in: Debian bookworm's python3 with gym_raas, built without a registry.

`ensure_runtime_image` returns ``localhost/raas-runtime:<hash>``, building it only when no image
has that tag. The hash covers the gym_raas source tree, the Containerfile and the target Python,
so a change to any of them gives a new tag and an unchanged machine never rebuilds. Steps, each
cached under the cache folder (``$RAAS_IMAGE_CACHE``, else ``~/.cache/raas/images``):

1. ``rootfs/bookworm``: ``debootstrap --variant=minbase`` (≈30 s, ≈200 MB, once per machine),
   imported with ``podman import`` as ``localhost/raas-debian-min:bookworm``;
2. ``wheels/<hash>``: a wheelhouse built on the host (pip cannot reach an index from inside a
   build): gym_raas's own wheel, then its dependencies as binary wheels for bookworm's CPython
   3.11 on this machine's architecture, whatever the host's Python is;
3. ``podman build --runtime runc`` (crun fails on hybrid cgroups): python3 and python3-venv from
   apt inside the build, then a venv in ``/opt/raas`` installed ``--no-index`` from the wheelhouse
   (bind-mounted into the build, so the wheels are not a layer).

Needs root, podman, runc and debootstrap (``scripts/install-system-deps``) and the Debian mirror.
Builds in one cache folder are serialised by a lock file; older ``raas-runtime`` tags are removed
after a build (an image still used by a container stays).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

PODMAN_RUNTIME = "runc"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_IMAGE = f"localhost/raas-debian-min:{DEBIAN_SUITE}"
RUNTIME_IMAGE_REPOSITORY = "localhost/raas-runtime"
CACHE_DIR_VARIABLE = "RAAS_IMAGE_CACHE"
IMAGE_PYTHON = "/opt/raas/bin/python3"
"""The interpreter inside the image: a venv on bookworm's python3 holding gym_raas."""

_PYTHON_VERSION = "3.11"  # bookworm's python3
_GLIBC_MINOR = 36  # bookworm's glibc 2.36: manylinux_2_17 … manylinux_2_36 wheels run on it
_COMPLETE_MARKER = ".complete"

CONTAINERFILE = f"""\
FROM {BASE_IMAGE}
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
RUN --mount=type=bind,source=wheels,target=/tmp/wheels python3 -m venv /opt/raas \\
 && /opt/raas/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --no-index \\
    --find-links /tmp/wheels gym_raas
ENV PATH=/opt/raas/bin:/usr/local/bin:/usr/bin:/bin
"""


class ImageBuildError(RuntimeError):
    """The runtime image cannot be built; the message says which step failed and why."""


def default_cache_dir() -> Path:
    """``$RAAS_IMAGE_CACHE`` when set, else ``~/.cache/raas/images``."""
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "raas" / "images"


def ensure_runtime_image(
    *,
    cache_dir: Path | None = None,
    gym_raas_source: Path | None = None,
    mirror: str = DEBIAN_MIRROR,
    timeout_s: float = 1800.0,
) -> str:
    """The tag of the runtime image for this gym_raas source, built first if missing.

    `gym_raas_source` is the folder holding gym_raas's ``pyproject.toml`` (default: the source
    of the installed, editable gym_raas). Raises `ImageBuildError`.
    """
    cache = (cache_dir or default_cache_dir()).expanduser().resolve()
    source = (gym_raas_source or _installed_gym_raas_source()).resolve()
    source_digest = _tree_digest(source)
    recipe = "\n".join([CONTAINERFILE, source_digest, _PYTHON_VERSION, _machine()])
    tag = f"{RUNTIME_IMAGE_REPOSITORY}:{hashlib.sha256(recipe.encode()).hexdigest()[:16]}"
    if image_exists(tag):
        return tag
    _require_tools()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        if image_exists(tag):  # built by another process while we waited
            return tag
        _ensure_base_image(cache / "rootfs" / DEBIAN_SUITE, mirror, timeout_s)
        wheels = _ensure_wheelhouse(cache / "wheels" / source_digest[:16], source, timeout_s)
        _build(tag, wheels, cache, timeout_s)
        _remove_older_runtime_images(keep=tag)
    return tag


def image_exists(image: str) -> bool:
    """Whether podman's local storage holds `image` (False when podman is missing)."""
    if shutil.which("podman") is None:
        return False
    return _run(["podman", "image", "exists", image], timeout_s=60, check=False).returncode == 0


def _installed_gym_raas_source() -> Path:
    import gym_raas

    source = Path(gym_raas.__file__).resolve().parent.parent
    if not (source / "pyproject.toml").exists():
        raise ImageBuildError(f"gym_raas at {source} is not a source checkout: pass gym_raas_source=<folder>")
    return source


def _tree_digest(folder: Path) -> str:
    """sha256 over the relative paths and contents of the source files under `folder`."""
    skipped = {"__pycache__", "build", "dist", ".pytest_cache", ".mypy_cache"}
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part in skipped or part.endswith(".egg-info") for part in relative.parts) or not path.is_file():
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _machine() -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())


def _require_tools() -> None:
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        raise ImageBuildError(f"{', '.join(missing)} not installed: run scripts/install-system-deps as root")
    if os.geteuid() != 0:
        raise ImageBuildError("building the runtime image needs root (debootstrap and rootful podman)")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ensure_base_image(rootfs: Path, mirror: str, timeout_s: float) -> None:
    if image_exists(BASE_IMAGE):
        return
    if not (rootfs / _COMPLETE_MARKER).exists():
        partial = rootfs.with_name(rootfs.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(rootfs, ignore_errors=True)
        log.info("debootstrap %s into %s (once per machine)", DEBIAN_SUITE, rootfs)
        _run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(partial), mirror], timeout_s, step="debootstrap")
        partial.rename(rootfs)
        (rootfs / _COMPLETE_MARKER).touch()
    log.info("importing %s as %s", rootfs, BASE_IMAGE)
    # The marker must not end up in the image: tar everything but it.
    entries = sorted(entry.name for entry in rootfs.iterdir() if entry.name != _COMPLETE_MARKER)
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", *entries], stdout=subprocess.PIPE) as tar:
        _run(["podman", "import", "--quiet", "-", BASE_IMAGE], timeout_s, step="podman import", stdin=tar.stdout)
    if tar.returncode != 0:
        raise ImageBuildError(f"tar of {rootfs} failed with status {tar.returncode}")


def _ensure_wheelhouse(wheelhouse: Path, source: Path, timeout_s: float) -> Path:
    if (wheelhouse / _COMPLETE_MARKER).exists():
        return wheelhouse
    wheelhouse.parent.mkdir(parents=True, exist_ok=True)
    partial = wheelhouse.with_name(wheelhouse.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    with tempfile.TemporaryDirectory(dir=wheelhouse.parent, prefix="source-") as copy:
        # Building from a copy: setuptools would leave build/ and *.egg-info in the source tree.
        tree = Path(copy) / "gym_raas"
        shutil.copytree(source, tree, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
        _run(
            [*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(partial), str(tree)], timeout_s, step="pip wheel"
        )
    own_wheels = [str(path) for path in partial.glob("*.whl")]
    platforms = [f"manylinux_2_{minor}_{_machine()}" for minor in range(17, _GLIBC_MINOR + 1)]
    target = [
        "--python-version",
        _PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        f"cp{_PYTHON_VERSION.replace('.', '')}",
    ]
    target += [argument for name in platforms for argument in ("--platform", name)]
    _run(
        [*pip, "download", "--quiet", "--only-binary=:all:", "--dest", str(partial), *target, *own_wheels],
        timeout_s,
        step="pip download of gym_raas's dependencies",
    )
    shutil.rmtree(wheelhouse, ignore_errors=True)
    partial.rename(wheelhouse)
    (wheelhouse / _COMPLETE_MARKER).touch()
    return wheelhouse


def _build(tag: str, wheels: Path, cache: Path, timeout_s: float) -> None:
    with tempfile.TemporaryDirectory(dir=cache, prefix="context-") as context:
        (Path(context) / "Containerfile").write_text(CONTAINERFILE)
        shutil.copytree(wheels, Path(context) / "wheels", ignore=shutil.ignore_patterns(_COMPLETE_MARKER))
        log.info("building %s", tag)
        _run(
            ["podman", "build", "--quiet", "--runtime", PODMAN_RUNTIME, "--pull=never", "--tag", tag, context],
            timeout_s,
            step="podman build",
        )


def _remove_older_runtime_images(keep: str) -> None:
    listing = _run(
        [
            "podman",
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            f"reference={RUNTIME_IMAGE_REPOSITORY}",
        ],
        timeout_s=60,
        check=False,
    )
    for image in listing.stdout.split():
        if image != keep:
            _run(["podman", "rmi", image], timeout_s=120, check=False)  # fails harmlessly while in use


def _run(
    command: Sequence[str],
    timeout_s: float,
    *,
    step: str = "",
    check: bool = True,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
) -> subprocess.CompletedProcess[str]:
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
