"""Faults a real cluster has, met by the real operator on the real control plane (issue 13 §7).

Each test runs a job through the end-to-end world (tests/cluster_world.py: the chart installed,
the operator as its ServiceAccount, a real agent per robot, the stand-in kubelet's Nodes with
podman containers) and breaks the cluster while the job runs:

- the API server restarts: every watch and connection breaks, the watch cache starts afresh;
- etcd is compacted and the API server restarts: a watch resumed from an old resourceVersion is
  answered 410 Gone (shown directly), so kopf must list again;
- the active operator replica is killed (SIGKILL: no goodbye in the KopfPeering); the standby
  takes over once the dead peer's presence lapses;
- a robot's Node stops renewing its Lease: the node lifecycle controller marks it NotReady; for
  less than the operator's toleration the job runs on, for longer it is retried elsewhere.

In every case the job ends as it should and its program ran exactly as often as it should: once,
or (for the robot fault) once more on another robot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cluster_world import FINAL, NAMESPACE, assert_retried_once_elsewhere, wait_for
from controllers import steady_controller
from controlplane.cluster import ControlPlane
from git_server import GitServer
from kubelet.podman import PodmanRuntime
from kubernetes import client

pytestmark = pytest.mark.slow


def publish(git_server: GitServer, name: str, steps: int) -> str:
    git_server.publish(name, {"swingup/run.py": steady_controller(steps)})
    return git_server.url(name)


def run_pods(world: Any, job: str) -> list[str]:
    """The job's run pods the kubelet started, in order (its fetch pod left out)."""
    return [name for name in world.kubelet.started if name.startswith(f"{job}-") and name != f"{job}-fetch"]


def test_an_api_server_restart_mid_run_loses_nothing_and_runs_nothing_twice(
    world_factory: Any, world_plane: ControlPlane, git_server: GitServer, podman: PodmanRuntime
) -> None:
    world = world_factory(["pendulum-1"], podman)
    with world.operator():
        world.submit("restart", publish(git_server, "restart", 120))
        world.wait_phase("restart", ("Running",))
        world.restart_api_server()
        status = world.wait_phase("restart", FINAL)
        world.submit("after", publish(git_server, "after", 20))  # the operator's watches are alive again
        after = world.wait_phase("after", FINAL)
    world.check_clean()
    assert status["phase"] == "Succeeded", status
    assert status["attempts"] == 1, world.events("restart")
    assert run_pods(world, "restart") == ["restart-1"]
    assert after["phase"] == "Succeeded", after


def watch_from(plane: ControlPlane, resource_version: str) -> dict[str, Any]:
    """The first event of a RaasJob watch resumed from `resource_version`, as the admin."""
    with plane.api_client() as admin:
        response = client.CustomObjectsApi(admin).list_namespaced_custom_object(
            "raas.dev", "v1alpha1", NAMESPACE, "raasjobs", watch=True, resource_version=resource_version,
            timeout_seconds=5, _preload_content=False,
        )  # fmt: skip
        try:
            line = next(line for line in response.stream() if line.strip())
        finally:
            response.release_conn()
    return dict(json.loads(line))


def test_a_watch_from_before_an_etcd_compaction_gets_410_gone_and_the_operator_lists_again(
    world_factory: Any, world_plane: ControlPlane, git_server: GitServer, podman: PodmanRuntime
) -> None:
    world = world_factory(["pendulum-1"], podman)
    with world.operator():
        world.submit("compacted", publish(git_server, "compacted", 120))
        world.wait_phase("compacted", ("Running",))
        listing = world.custom.list_namespaced_custom_object("raas.dev", "v1alpha1", NAMESPACE, "raasjobs")
        old_version = listing["metadata"]["resourceVersion"]
        world.submit("filler", publish(git_server, "filler", 20))  # history past the old version
        wait_for(lambda: world.status("filler").get("phase") not in (None, "Pending"), 60, "filler to move")
        world_plane.compact_etcd()
        world.restart_api_server()
        gone = watch_from(world_plane, old_version)
        assert gone["type"] == "ERROR", gone
        assert gone["object"]["code"] == 410, gone
        status = world.wait_phase("compacted", FINAL)
        filler = world.wait_phase("filler", FINAL)
    world.check_clean()
    assert status["phase"] == "Succeeded", status
    assert status["attempts"] == 1, world.events("compacted")
    assert run_pods(world, "compacted") == ["compacted-1"]
    assert filler["phase"] == "Succeeded", filler
    assert run_pods(world, "filler") == ["filler-1"]


def test_killing_the_active_operator_hands_its_running_job_to_the_standby(
    world_factory: Any, git_server: GitServer, podman: PodmanRuntime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAAS_OPERATOR_PEERING_LIFETIME_S", "10")  # (a lab keeps kopf's 60 s)
    world = world_factory(["pendulum-1"], podman)
    log = tmp_path / "active-operator.log"
    with log.open("wb") as sink:
        active = subprocess.Popen(
            [sys.executable, "-m", "raas_operator.runtime.main", "--peering", "raas-operator", "--priority", "100"],
            env={**os.environ, "POD_ID": "raas-operator-active"}, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def active_is_peered() -> bool:
            peering = world.custom.get_namespaced_custom_object(
                "kopf.dev", "v1", NAMESPACE, "kopfpeerings", "raas-operator"
            )
            return "raas-operator-active" in (peering.get("status") or {})

        wait_for(active_is_peered, 60, "the active operator to join the peering")
        monkeypatch.setenv("POD_ID", "raas-operator-standby")
        with world.operator(priority=50):
            world.submit("handover", publish(git_server, "handover", 200))
            world.wait_phase("handover", ("Running",))
            active.send_signal(signal.SIGKILL)  # no goodbye: its presence lapses after the lifetime
            active.wait(timeout=30)
            status = world.wait_phase("handover", FINAL, timeout_s=180)
    finally:
        if active.poll() is None:
            active.kill()
            active.wait()
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output
    world.check_clean()
    assert status["phase"] == "Succeeded", status
    assert status["attempts"] == 1
    assert run_pods(world, "handover") == ["handover-1"]  # run once, never twice


def node_ready(world: Any, node: str) -> str:
    """The status of Node `node`'s Ready condition ("True", "False" or "Unknown")."""
    conditions = world.core.read_node(node).status.conditions or []
    return next((condition.status for condition in conditions if condition.type == "Ready"), "Unknown")


def test_a_robot_node_not_ready_for_less_than_the_toleration_leaves_its_running_job_alone(
    world_factory: Any, git_server: GitServer, podman: PodmanRuntime
) -> None:
    # What a control plane back from an outage does to every Node for a moment, here to one.
    world = world_factory(["pendulum-1", "pendulum-2"], podman)
    with world.operator():
        world.submit("blip", publish(git_server, "blip", 600))
        robot = world.wait_phase("blip", ("Running",))["robot"]
        node = world.custom.get_cluster_custom_object("raas.dev", "v1alpha1", "robots", robot)["spec"]["node_name"]
        world.kubelet.go_not_ready(node)
        wait_for(lambda: node_ready(world, node) != "True", 60, f"{node} to be marked NotReady")
        world.kubelet.go_ready(node)
        wait_for(lambda: node_ready(world, node) == "True", 30, f"{node} to be Ready again")
        status = world.wait_phase("blip", FINAL, timeout_s=120)
    world.check_clean()
    assert status["phase"] == "Succeeded", status
    assert status["attempts"] == 1, world.events("blip")
    assert status["robot"] == robot
    assert run_pods(world, "blip") == ["blip-1"]


def test_a_robot_node_gone_not_ready_mid_job_ends_the_attempt_as_a_robot_fault_retried_elsewhere(
    world_factory: Any, git_server: GitServer, podman: PodmanRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAAS_OPERATOR_NODE_NOT_READY_TOLERATION_S", "3")
    world = world_factory(["pendulum-1", "pendulum-2"], podman)
    with world.operator():
        # (Long enough to be still running when the Node is marked NotReady and the toleration ends.)
        world.submit("stranded", publish(git_server, "stranded", 600))
        first = world.wait_phase("stranded", ("Running",))["robot"]
        node = world.custom.get_cluster_custom_object("raas.dev", "v1alpha1", "robots", first)["spec"]["node_name"]
        world.kubelet.go_not_ready(node)  # the agent still heartbeats: only the Node says it is gone
        status = world.wait_phase("stranded", FINAL, timeout_s=180)
    world.check_clean()
    assert_retried_once_elsewhere(status, first)
    faults = [change for change in status["history"] if change.get("reason") == "RobotFault"]
    assert faults, status["history"]
    assert f"its node {node} is" in faults[0]["message"], faults
