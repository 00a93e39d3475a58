"""The API's cluster platform lists Robots as the real API server serves them.

The API server refuses Robot objects its CRD's schema forbids, but one written before a schema
change (or by a newer agent) is served as it was stored, and must not make the whole robot listing
fail: it is listed as a fault that never takes jobs, saying what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from controlplane.chart_install import (
    AGENT,
    API,
    ServiceAccountClient,
    clear_chart_namespaces,
    robot_status_unchecked,
    write_robot_status,
)
from controlplane.cluster import ControlPlane
from kubernetes import client
from polling import wait_for

from gym_raas.results.store import FilesystemResultStore
from raas_api.cluster.platform import ClusterPlatform

GROUP, VERSION = "raas.dev", "v1alpha1"


@pytest.fixture
def agent(raas_chart: ControlPlane, service_account_client: ServiceAccountClient) -> Iterator[client.CustomObjectsApi]:
    """Robots' writer, the agent's ServiceAccount, on a cluster without Robots."""
    clear_chart_namespaces(raas_chart)
    yield client.CustomObjectsApi(service_account_client(AGENT))
    clear_chart_namespaces(raas_chart)


def create_robot(agent: client.CustomObjectsApi, name: str, spec: dict[str, object]) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Robot", "metadata": {"name": name}, "spec": spec}
    agent.create_cluster_custom_object(GROUP, VERSION, "robots", body)


def test_an_unreadable_robot_is_listed_as_a_fault_and_the_others_as_they_are(
    raas_chart: ControlPlane, agent: client.CustomObjectsApi, service_account_client: ServiceAccountClient,
    tmp_path: Path,
) -> None:  # fmt: skip
    now = datetime.now(timezone.utc).isoformat()
    create_robot(agent, "pendulum-1", {"node_name": "pi-1"})
    ready = {"phase": "Ready", "last_heartbeat": now, "supported_control_hz": [20, 50]}
    assert write_robot_status(agent, "pendulum-1", ready)
    create_robot(agent, "pendulum-2", {"node_name": "pi-2", "robot_type": "pendulum"})
    broken = {"phase": "Dancing", "last_heartbeat": 7}
    assert not write_robot_status(agent, "pendulum-2", broken)  # refused under the installed schema
    with robot_status_unchecked(raas_chart):
        wait_for(lambda: write_robot_status(agent, "pendulum-2", broken), 20, "the relaxed schema to take effect")
    platform = ClusterPlatform("raas-jobs", FilesystemResultStore(tmp_path), api_client=service_account_client(API))
    good, bad = platform.robot_details()
    assert (good.name, good.state, good.ready) == ("pendulum-1", "idle", True)
    assert good.supported_control_hz == (20.0, 50.0)
    assert (bad.name, bad.type, bad.state, bad.ready, bad.schedulable) == (
        "pendulum-2",
        "pendulum",
        "fault",
        False,
        False,
    )
    assert len(bad.reasons) == 1
    assert "cannot be read" in bad.reasons[0]
    assert "status.phase" in bad.reasons[0]
    assert bad.supported_control_hz == ()  # (it runs nothing)
