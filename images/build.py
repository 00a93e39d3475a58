"""Build a RaaS container image (job, api, operator, agent) with podman, without a registry for pip.

Usage (as root, from the repository, with the development venv)::

    .venv/bin/python images/build.py job                       # base: the Containerfile's debian:12.12-slim
    .venv/bin/python images/build.py job --base debootstrap    # base: localhost/raas-debian-min:bookworm
    .venv/bin/python images/build.py job --base debootstrap --arch arm64   # for the Pis, under qemu-user-static
    .venv/bin/python images/build.py job --libraries rl        # plus torch and stable-baselines3
    .venv/bin/python images/build.py api --arch amd64 --arch arm64 --push registry.lab:5000/raas  # the lab's
    .venv/bin/python images/build.py operator --archive raas-operator.tar   # for `k3s ctr images import` on each node
    .venv/bin/python images/build.py agent --wheelhouse-only   # print the wheelhouse folder, build nothing
    .venv/bin/python images/build.py operator --check-offline  # resolve the install step offline, build nothing

Steps: the image's wheelhouse (its local projects built to wheels, then every dependency and the
image's requirement files as binary wheels for bookworm's CPython 3.11 on each ``--arch``),
cached under ``$RAAS_IMAGE_CACHE`` (else ``~/.cache/raas/images``) ``/wheels/<name>-<arch>-<digest>``;
then ``podman build --runtime runc`` of ``images/<name>/`` with the wheelhouse as ``wheels/``.
The image is tagged ``localhost/raas-<name>:<version>`` unless ``--tag`` says otherwise; ``--push
REGISTRY`` then pushes it as ``REGISTRY/raas-<name>:<version>`` (the chart's ``images.registry``),
``--archive FILE`` writes it as a Docker archive to import on each node (``images.registry:
localhost``). No public registry publishes the images. Prints the tag (or the wheelhouse folder,
or the resolved packages). See images/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from raas_node.runner.image import default_cache_dir
from raas_node.runner.image_build import (
    DEBIAN_MIRROR,
    PODMAN_RUNTIME,
    ImageBuildError,
    build_image,
    build_wheelhouse,
    check_offline_install,
    debian_architecture,
    ensure_base_image,
    host_machine,
    machine_name,
    push_image,
    remove_other_wheelhouses,
    require_emulation,
    require_tools,
    save_archive,
    tree_digest,
)

IMAGES_DIR = Path(__file__).resolve().parent
REPOSITORY = IMAGES_DIR.parent
LOCAL_REGISTRY = "localhost"
"""podman's prefix of local images, and the chart's ``images.registry`` for images imported into each node."""
VERSION = "0.1.0"


@dataclass(frozen=True)
class ImageRecipe:
    """What goes into one image besides its folder: the repository's projects it installs."""

    name: str
    projects: tuple[str, ...]
    """Folders of the repository built to wheels (dependencies first, for readability only)."""

    @property
    def folder(self) -> Path:
        return IMAGES_DIR / self.name

    def requirement_files(self, library_sets: Sequence[str]) -> list[Path]:
        files = [self.folder / "requirements.txt"]
        for library_set in library_sets:
            file = self.folder / f"requirements-{library_set}.txt"
            if not file.is_file():
                raise ImageBuildError(f"{self.name} has no library set {library_set!r} ({file.name} is missing)")
            files.append(file)
        return files


RECIPES = {
    recipe.name: recipe
    for recipe in (
        ImageRecipe("job", ("gym_raas", "node_runtime")),
        ImageRecipe("agent", ("gym_raas", "node_runtime")),
        ImageRecipe("operator", ("gym_raas", "operator")),
        ImageRecipe("api", ("gym_raas", "node_runtime", "operator", "api")),
    )
}


def wheelhouse_for(
    recipe: ImageRecipe,
    library_sets: Sequence[str],
    architectures: Sequence[str],
    pip_options: Sequence[str],
    cache: Path,
) -> Path:
    """The recipe's wheelhouse, built unless the cache holds one for the same inputs."""
    requirements = recipe.requirement_files(library_sets)
    machines = sorted({machine_name(architecture) for architecture in architectures} or {host_machine()})
    projects = [REPOSITORY / project for project in recipe.projects]
    inputs = [*(tree_digest(project) for project in projects), *(file.read_text() for file in requirements)]
    inputs += [*machines, *pip_options]
    digest = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:16]
    kind = "-".join([recipe.name, *library_sets, *machines])  # one cached wheelhouse per kind
    wheels = build_wheelhouse(
        cache / "wheels" / f"{kind}-{digest}",
        projects=projects,
        requirements=requirements,
        machines=machines,
        pip_options=pip_options,
    )
    remove_other_wheelhouses(wheels, rf"{re.escape(kind)}-[0-9a-f]{{16}}")
    return wheels


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", choices=sorted(RECIPES))
    parser.add_argument("--tag", help=f"default: {LOCAL_REGISTRY}/raas-<image>:{VERSION}")
    parser.add_argument(
        "--push", metavar="REGISTRY", help="then push it as REGISTRY/raas-<image>:<version> (podman login first)"
    )
    parser.add_argument("--archive", metavar="FILE", type=Path, help="then save it to FILE for `k3s ctr images import`")
    parser.add_argument(
        "--base", help="base image reference, or 'debootstrap' for a local Debian (default: the Containerfile's)"
    )
    parser.add_argument("--arch", action="append", default=[], help="amd64 or arm64; repeat for a manifest list")
    parser.add_argument("--libraries", action="append", default=[], help="job image: extra library set, e.g. rl")
    parser.add_argument(
        "--pip-option", action="append", default=[], help="passed to pip download, e.g. --extra-index-url=URL"
    )
    parser.add_argument("--revision", default="unknown", help="git commit, for the image's labels")
    parser.add_argument("--mirror", default=DEBIAN_MIRROR, help="Debian mirror for --base debootstrap")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--wheelhouse-only", action="store_true", help="build the wheelhouse, print its folder")
    mode.add_argument("--check-offline", action="store_true", help="resolve the install step from the wheelhouse")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    arguments = parse_arguments(argv)
    recipe = RECIPES[arguments.image]
    cache = default_cache_dir().expanduser().resolve()
    try:
        if arguments.libraries and recipe.name != "job":
            raise ImageBuildError("--libraries applies to the job image only")
        wheels = wheelhouse_for(recipe, arguments.libraries, arguments.arch, arguments.pip_option, cache)
        if arguments.wheelhouse_only:
            print(wheels)
            return 0
        if arguments.check_offline:
            requirements = recipe.requirement_files(arguments.libraries)
            for architecture in arguments.arch or [host_machine()]:
                print("\n".join(check_offline_install(wheels, requirements, machine=architecture)))
            return 0
        require_tools("podman", PODMAN_RUNTIME)
        build_args = {"VERSION": VERSION, "REVISION": arguments.revision}
        if arguments.libraries:
            build_args["LIBRARY_SETS"] = " ".join(arguments.libraries)
        for architecture in arguments.arch:
            require_emulation(architecture)
        if arguments.base == "debootstrap":
            require_tools("debootstrap")
            if len(arguments.arch) > 1:
                raise ImageBuildError("--base debootstrap builds one --arch at a time (each has its own base)")
            build_args["BASE_IMAGE"] = ensure_base_image(
                cache / "rootfs" / "bookworm", mirror=arguments.mirror, architecture=next(iter(arguments.arch), None)
            )
        elif arguments.base:
            build_args["BASE_IMAGE"] = arguments.base
        platforms = [f"linux/{debian_architecture(architecture)}" for architecture in arguments.arch]
        tag = arguments.tag or f"{LOCAL_REGISTRY}/raas-{recipe.name}:{VERSION}"
        if arguments.archive is not None and len(platforms) > 1:
            raise ImageBuildError("--archive saves one architecture: build each --arch into its own archive")
        pull = not build_args.get("BASE_IMAGE", "").startswith("localhost/")
        build_image(tag, recipe.folder, wheels, work_dir=cache, build_args=build_args, platforms=platforms, pull=pull)
        if arguments.push:
            destination = f"{arguments.push.rstrip('/')}/raas-{recipe.name}:{VERSION}"
            push_image(tag, destination, manifest_list=len(platforms) > 1)
            logging.info("pushed %s: install the chart with --set images.registry=%s", destination, arguments.push)
        if arguments.archive is not None:
            save_archive(tag, arguments.archive)
            logging.info(
                "saved %s to %s: on each node, `sudo k3s ctr images import %s`, then install the chart with "
                "--set images.registry=%s",
                tag, arguments.archive, arguments.archive.name, LOCAL_REGISTRY,
            )  # fmt: skip
        print(tag)
    except ImageBuildError as error:
        print(f"images/build.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
