"""The API's cluster platform lists Robots as the emulator serves them, over real HTTP.

The API server is meant to refuse Robot objects its CRD's schema forbids, but one written before
a schema change (or by a tool that bypassed it) must not make the whole robot listing fail: it is
listed as a fault that never takes jobs, saying what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from k8s_fixtures import Emulator, running_emulator

from gym_raas.results.store import FilesystemResultStore
from raas_api.cluster.platform import ClusterPlatform

GROUP, VERSION = "raas.dev", "v1alpha1"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with running_emulator("raas-jobs") as running:
        yield running


def create_robot(emulator: Emulator, name: str, spec: dict[str, object], status: dict[str, object]) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(emulator.api_client())
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Robot", "metadata": {"name": name}, "spec": spec}
    custom.create_cluster_custom_object(GROUP, VERSION, "robots", body)
    custom.patch_cluster_custom_object_status(GROUP, VERSION, "robots", name, {"status": status})


def test_an_unreadable_robot_is_listed_as_a_fault_and_the_others_as_they_are(
    emulator: Emulator, tmp_path: Path
) -> None:
    now = datetime.now(timezone.utc).isoformat()
    create_robot(emulator, "pendulum-1", {"node_name": "pi-1"}, {"phase": "Ready", "last_heartbeat": now})
    create_robot(
        emulator,
        "pendulum-2",
        {"node_name": "pi-2", "robot_type": "pendulum"},
        {"phase": "Dancing", "last_heartbeat": 7},
    )
    platform = ClusterPlatform("raas-jobs", FilesystemResultStore(tmp_path), api_client=emulator.api_client())
    good, bad = platform.robot_details()
    assert (good.name, good.state, good.ready) == ("pendulum-1", "idle", True)
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
