"""Fixtures of the operator's cluster tests: a `World` on the session's control plane with the
chart installed (tests/cluster_world.py), its S3 and git servers, and podman as the nodes' runtime;
for the tests that drive the operator's engine directly, its `Cluster` (`cluster`, speaking as the
chart's operator ServiceAccount; a module overrides `operator_overrides` to change its settings)
and clients as the agent's (`agent`) and the web API's (`api`) ServiceAccounts.

Podman is a test dependency (scripts/install-system-deps, as root): without it these tests fail
with a message saying so; they do not skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from cluster_world import JOB_IMAGE, World, operator_environment, use_kubeconfig
from controlplane.chart_install import AGENT, API, JOBS, OPERATOR, clear_chart_namespaces, token_for, token_kubeconfig
from controlplane.cluster import ControlPlane
from git_server import GitServer, running_git_server
from kubelet.podman import PodmanRuntime, remove_leftover_containers
from s3_server import S3Server, running_s3_server

from raas_operator.runtime.cluster import Cluster
from raas_operator.runtime.settings import OperatorSettings


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


@pytest.fixture
def operator_overrides() -> dict[str, str]:
    """Settings of the `cluster` fixture's operator beyond the defaults (``RAAS_OPERATOR_`` names)."""
    return {}


@pytest.fixture
def cluster(
    raas_chart: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operator_overrides: dict[str, str]
) -> Iterator[Cluster]:
    """The operator's `Cluster` in the chart's job namespace, logged in from a kubeconfig holding
    the operator's ServiceAccount token; the namespaces are cleared before and after."""
    clear_chart_namespaces(raas_chart)
    kubeconfig = token_kubeconfig(raas_chart, tmp_path / "kubeconfig", token_for(raas_chart, *OPERATOR), JOBS)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    with running_s3_server() as s3:
        for name, value in {
            "NAMESPACE": JOBS, "IMAGE": "localhost/raas-job:e2e", "SESSION_KEY": "test-session-key",
            "S3_ENDPOINT": s3.endpoint, "S3_ACCESS_KEY": "raas", "S3_SECRET_KEY": "raas-secret", "S3_SECURE": "false",
            **operator_overrides,
        }.items():  # fmt: skip
            monkeypatch.setenv(f"RAAS_OPERATOR_{name}", value)
        kubernetes.config.load_kube_config(str(kubeconfig))  # type: ignore[no-untyped-call]
        yield Cluster(OperatorSettings())  # type: ignore[call-arg]
    clear_chart_namespaces(raas_chart)


@pytest.fixture
def agent(raas_chart: ControlPlane) -> Iterator[kubernetes.client.CustomObjectsApi]:
    """Robots' writer: the robot agent's ServiceAccount."""
    with raas_chart.api_client(token_for(raas_chart, *AGENT)) as client:
        yield kubernetes.client.CustomObjectsApi(client)


@pytest.fixture
def api(raas_chart: ControlPlane) -> Iterator[kubernetes.client.CustomObjectsApi]:
    """RaasJobs' submitter: the web API's ServiceAccount (the operator may not create them)."""
    with raas_chart.api_client(token_for(raas_chart, *API)) as client:
        yield kubernetes.client.CustomObjectsApi(client)
