"""Fixtures of the operator's cluster tests: a `World` on the session's control plane with the
chart installed (tests/cluster_world.py), its S3 and git servers, and podman as the nodes' runtime.

Podman is a test dependency (scripts/install-system-deps, as root): without it these tests fail
with a message saying so; they do not skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_world import JOB_IMAGE, World, operator_environment, use_kubeconfig
from controlplane.cluster import ControlPlane
from git_server import GitServer, running_git_server
from kubelet.podman import PodmanRuntime, remove_leftover_containers
from s3_server import S3Server, running_s3_server


@pytest.fixture
def world_plane(raas_chart: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ControlPlane:
    """The session's control plane with the chart; kubectl and the operator speak as the operator."""
    use_kubeconfig(monkeypatch, tmp_path, raas_chart)
    return raas_chart


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


@pytest.fixture
def podman(runtime_image: str) -> Iterator[PodmanRuntime]:
    """The robot nodes' container runtime; no container of the stand-in kubelet may outlive a test."""
    yield PodmanRuntime({JOB_IMAGE: runtime_image})
    leftovers = remove_leftover_containers()
    assert leftovers == [], f"containers left behind: {leftovers}"


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitServer]:
    with running_git_server(tmp_path / "git") as server:
        yield server


@pytest.fixture
def world_factory(
    world_plane: ControlPlane, s3: S3Server, git_server: GitServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """``world_factory(robots, runtime)``: a `World` whose nodes run their pods with `runtime`."""
    operator_environment(monkeypatch, s3)
    with contextlib.ExitStack() as stack:
        yield lambda robots, runtime, **more: World(world_plane, s3, git_server, robots, stack, runtime, **more)
