"""The job image, built here for the container isolation level: ``localhost/raas-runtime:<hash>``.

`ensure_runtime_image` builds the project's job image (``raas-job``) from its one recipe, the
package data folder ``raas_node/runner/job_image/`` (``Containerfile``, ``requirements.txt``;
``images/job`` in the repository is a link to it), so that code run in a local container meets
exactly what it meets in a cluster's job pod: ``/opt/raas/bin/python3`` with gym_raas, raas_node
and the default learning libraries. It builds only when no image has the tag; the hash covers that
folder, the gym_raas and node_runtime source trees, the target Python and this machine's
architecture, so a change to any of them gives a new tag and an unchanged machine never rebuilds.
Steps (`raas_node.runner.image_build`), each cached under the cache folder
(``$RAAS_IMAGE_CACHE``, else ``~/.cache/raas/images``):

1. ``rootfs/bookworm``: ``debootstrap --variant=minbase`` (≈30 s, ≈200 MB, once per machine),
   imported with ``podman import`` as ``localhost/raas-debian-min:bookworm``, the build's
   ``BASE_IMAGE``;
2. ``wheels/runtime-<hash>``: a wheelhouse built on the host (pip cannot reach an index from
   inside a build): gym_raas's and raas_node's own wheels, then every dependency as binary wheels
   for bookworm's CPython 3.11 on this machine's architecture, whatever the host's Python is;
3. ``podman build --runtime runc`` of the job image folder with that wheelhouse.

Needs root, podman, runc and debootstrap (``scripts/install-system-deps``), the Debian mirror and
PyPI; the first build takes one to two minutes beyond debootstrap. Builds in one cache folder are
serialised by a lock file; older ``raas-runtime`` tags are removed after a build (an image still
used by a container stays).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from raas_node.runner.image_build import (
    BASE_IMAGE,
    DEBIAN_MIRROR,
    DEBIAN_SUITE,
    PODMAN_RUNTIME,
    TARGET_PYTHON,
    ImageBuildError,
    build_image,
    build_wheelhouse,
    ensure_base_image,
    host_machine,
    image_exists,
    remove_other_wheelhouses,
    require_tools,
    run_step,
    tree_digest,
)

__all__ = [
    "BASE_IMAGE",
    "CACHE_DIR_VARIABLE",
    "DEBIAN_MIRROR",
    "DEBIAN_SUITE",
    "IMAGE_PYTHON",
    "JOB_IMAGE_FOLDER",
    "PODMAN_RUNTIME",
    "RUNTIME_IMAGE_REPOSITORY",
    "ImageBuildError",
    "default_cache_dir",
    "ensure_runtime_image",
    "image_exists",
    "runtime_image_tag",
]

RUNTIME_IMAGE_REPOSITORY = "localhost/raas-runtime"
CACHE_DIR_VARIABLE = "RAAS_IMAGE_CACHE"
IMAGE_PYTHON = "/opt/raas/bin/python3"
"""The interpreter inside the image: a venv on bookworm's python3 holding gym_raas and raas_node."""
JOB_IMAGE_FOLDER = Path(__file__).resolve().with_name("job_image")
"""The job image's recipe: ``Containerfile``, ``requirements.txt`` and optional ``requirements-<set>.txt``."""


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
    """The tag of the runtime (job) image for this source, built first if missing.

    `gym_raas_source` is the folder holding gym_raas's ``pyproject.toml`` (default: the source
    of the installed, editable gym_raas); raas_node's comes from the installed, editable
    raas_node. Raises `ImageBuildError`.
    """
    cache = (cache_dir or default_cache_dir()).expanduser().resolve()
    projects = [(gym_raas_source or _source_checkout("gym_raas")).resolve(), _source_checkout("raas_node")]
    tag = runtime_image_tag(projects)
    if image_exists(tag):
        return tag
    require_tools("podman", PODMAN_RUNTIME, "debootstrap")
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        if image_exists(tag):  # built by another process while we waited
            return tag
        base = ensure_base_image(cache / "rootfs" / DEBIAN_SUITE, mirror=mirror, timeout_s=timeout_s)
        wheels = build_wheelhouse(
            cache / "wheels" / f"runtime-{tag.rsplit(':', 1)[1]}",
            projects=projects,
            requirements=[JOB_IMAGE_FOLDER / "requirements.txt"],
            timeout_s=timeout_s,
        )
        build_image(tag, JOB_IMAGE_FOLDER, wheels, work_dir=cache, build_args={"BASE_IMAGE": base}, timeout_s=timeout_s)
        _remove_older_runtime_images(keep=tag)
        remove_other_wheelhouses(wheels, r"runtime-[0-9a-f]{16}|[0-9a-f]{16}")  # the bare hex: earlier versions
    return tag


def runtime_image_tag(projects: list[Path]) -> str:
    """``localhost/raas-runtime:<16 hex>``: a hash of the recipe folder, the projects' sources and the target."""
    recipe = [f"{path.name}\n{path.read_text()}" for path in sorted(JOB_IMAGE_FOLDER.iterdir()) if path.is_file()]
    recipe += [tree_digest(project) for project in projects]
    recipe += [TARGET_PYTHON, host_machine()]
    return f"{RUNTIME_IMAGE_REPOSITORY}:{hashlib.sha256(chr(0).join(recipe).encode()).hexdigest()[:16]}"


def _source_checkout(package: str) -> Path:
    """The folder holding the ``pyproject.toml`` of an installed, editable `package`."""
    module = importlib.import_module(package)
    source = Path(str(module.__file__)).resolve().parent.parent
    if not (source / "pyproject.toml").exists():
        raise ImageBuildError(f"{package} at {source} is not a source checkout: install it editable (pip install -e)")
    return source


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_older_runtime_images(keep: str) -> None:
    listing = run_step(
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
            run_step(["podman", "rmi", image], timeout_s=120, check=False)  # fails harmlessly while in use


def main() -> int:
    """``python -m raas_node.runner.image``: build the job image if missing and print its name (set-up step)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if os.geteuid() != 0 or shutil.which("podman") is None:
        print("raas: no rootful podman here: the container isolation level is not available", file=sys.stderr)
        return 0
    try:
        print(ensure_runtime_image())
    except ImageBuildError as error:
        print(f"raas: the job image cannot be built here: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
