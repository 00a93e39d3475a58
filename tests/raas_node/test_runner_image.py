"""Building images without a registry (`raas_node.runner.image_build`, `raas_node.runner.image`).

The wheelhouse and offline-resolution tests use hand-built wheels and need no index. The layer
cache test builds tiny images with real podman on the debootstrapped base (skipped without root
and podman); ``tests/raas_node/test_runner_container.py`` and ``tests/deploy/test_images.py``
build and run the real job image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from wheels import make_wheel

from raas_node.runner.image import (
    IMAGE_PYTHON,
    JOB_IMAGE_FOLDER,
    RUNTIME_IMAGE_REPOSITORY,
    default_cache_dir,
    runtime_image_tag,
)
from raas_node.runner.image_build import (
    WHEELHOUSE_MANIFEST,
    ImageBuildError,
    build_image,
    build_wheelhouse,
    check_offline_install,
    ensure_base_image,
    machine_name,
    remove_other_wheelhouses,
    write_manifest,
)

ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def _project(folder: Path, name: str = "tinyproject") -> Path:
    """A pure-Python project without dependencies (pyproject.toml + one module)."""
    (folder / name).mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\n'
    )
    (folder / name / "__init__.py").write_text("ANSWER = 42\n")
    return folder


def test_architectures_map_to_wheel_machines_and_unknown_ones_are_refused() -> None:
    assert [machine_name(name) for name in ("amd64", "x86_64", "arm64", "aarch64", "ARM64")] == [
        "x86_64",
        "x86_64",
        "aarch64",
        "aarch64",
        "aarch64",
    ]
    with pytest.raises(ImageBuildError, match="riscv64"):
        machine_name("riscv64")


def test_the_runtime_image_is_built_from_the_job_image_recipe() -> None:
    assert (JOB_IMAGE_FOLDER / "Containerfile").is_file()
    assert (JOB_IMAGE_FOLDER / "requirements.txt").read_text().splitlines().count("raas-node") == 1
    assert IMAGE_PYTHON == "/opt/raas/bin/python3"


def test_the_runtime_tag_follows_the_sources_and_nothing_else(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    first = runtime_image_tag([project])
    assert first == runtime_image_tag([project])
    assert first.startswith(f"{RUNTIME_IMAGE_REPOSITORY}:")
    assert len(first.rsplit(":", 1)[1]) == 16
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert runtime_image_tag([project]) == first  # caches are not sources
    (project / "tinyproject" / "__init__.py").write_text("ANSWER = 43\n")
    assert runtime_image_tag([project]) != first


def test_the_default_cache_folder_can_be_moved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAAS_IMAGE_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("RAAS_IMAGE_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "raas" / "images"


def test_a_wheelhouse_holds_the_projects_wheels_and_a_manifest_of_them(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    wheelhouse = build_wheelhouse(tmp_path / "wheels" / "w1", projects=[project], machines=["arm64", "amd64"])
    wheels = sorted(path.name for path in wheelhouse.glob("*.whl"))
    assert wheels == ["tinyproject-1.0-py3-none-any.whl"]
    digest = hashlib.sha256((wheelhouse / wheels[0]).read_bytes()).hexdigest()
    assert (wheelhouse / WHEELHOUSE_MANIFEST).read_text() == f"{digest}  {wheels[0]}\n"
    assert not (project / "build").exists()  # built from a copy: the source tree stays clean
    assert not list(project.glob("*.egg-info"))
    # Complete: reused as it is, even when asked for something else.
    assert build_wheelhouse(wheelhouse, projects=[], requirements=[tmp_path / "missing.txt"]) == wheelhouse


def test_a_failing_wheelhouse_step_says_which_step_and_leaves_no_wheelhouse(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text("this is not toml [")
    with pytest.raises(ImageBuildError, match="pip wheel failed"):
        build_wheelhouse(tmp_path / "wheels" / "w2", projects=[broken])
    assert not (tmp_path / "wheels" / "w2").exists()


def test_the_offline_check_resolves_what_the_install_step_would_install(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheels"
    make_wheel(wheelhouse, "tinypkg", "1.0")
    make_wheel(wheelhouse, "tinypkg", "2.0")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tinypkg<2\n")
    assert check_offline_install(wheelhouse, [requirements], machine="arm64") == ["tinypkg==1.0"]
    requirements.write_text("tinypkg\nnot-in-the-wheelhouse\n")
    with pytest.raises(ImageBuildError, match="offline install check for amd64 failed"):
        check_offline_install(wheelhouse, [requirements], machine="amd64")


def test_only_complete_wheelhouses_of_the_same_kind_are_removed(tmp_path: Path) -> None:
    names = ["job-0123456789abcdef", "job-fedcba9876543210", "api-0123456789abcdef", "job-1111111111111111.partial"]
    for name in names:
        (tmp_path / name).mkdir()
        if not name.endswith(".partial"):
            (tmp_path / name / ".complete").touch()
    removed = remove_other_wheelhouses(tmp_path / names[0], r"job-[0-9a-f]{16}")
    assert removed == [tmp_path / "job-fedcba9876543210"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(set(names) - {"job-fedcba9876543210"})


def test_an_image_build_needs_a_wheelhouse_with_its_manifest(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    with pytest.raises(ImageBuildError, match=WHEELHOUSE_MANIFEST):
        build_image("localhost/raas-test:never", JOB_IMAGE_FOLDER, tmp_path / "wheels", work_dir=tmp_path)


def _podman_unusable() -> str | None:
    if os.geteuid() != 0:
        return "rootful podman needs root"
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        return "podman or debootstrap is not installed: run scripts/install-system-deps as root"
    return None


def _image_id(tag: str) -> str:
    inspect = ["podman", "image", "inspect", "--format", "{{.Id}}", tag]
    return subprocess.run(inspect, capture_output=True, text=True, timeout=60, check=True).stdout.strip()


CACHE_PROBE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY wheels/SHA256SUMS /opt/wheelhouse.sha256
RUN --mount=type=bind,target=/tmp/context cat /tmp/context/wheels/*.whl > /opt/installed
"""


def test_a_changed_wheelhouse_is_never_hidden_by_podmans_layer_cache(tmp_path: Path) -> None:
    """Regression: a RUN that only bind-mounts the wheels was reused from the layer cache after the
    wheels changed (the image then held a stale gym_raas). The manifest COPY makes the change show."""
    reason = _podman_unusable()
    if reason is not None:
        pytest.skip(reason)
    base = ensure_base_image(default_cache_dir() / "rootfs" / "bookworm")
    folder = tmp_path / "image"
    folder.mkdir()
    (folder / "Containerfile").write_text(CACHE_PROBE)
    tag = "localhost/raas-test-cache-probe:latest"
    contents, built = [], []
    try:
        for version in ("one", "two"):
            wheels = tmp_path / f"wheels-{version}"
            wheels.mkdir()
            (wheels / "probe-1.0-py3-none-any.whl").write_text(f"wheel {version}\n")
            write_manifest(wheels)
            build_image(tag, folder, wheels, work_dir=tmp_path, build_args={"BASE_IMAGE": base})
            built.append(_image_id(tag))
            shown = subprocess.run(
                ["podman", "run", "--rm", "--runtime", "runc", *ULIMITS, "--network", "none", tag,
                 "cat", "/opt/installed"],
                capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
            contents.append(shown.stdout)
    finally:
        subprocess.run(["podman", "rmi", "--force", *built], capture_output=True, check=False)
    assert contents == ["wheel one\n", "wheel two\n"]
