"""The operator's cache reads a robot whose Node is not Ready as Offline (runtime.cache)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from raas_operator.robots.model import RobotPhase
from raas_operator.runtime.cache import ClusterCache, node_problem


def node(name: str, ready: str = "True", taints: tuple[str, ...] = (), message: str = "") -> dict[str, Any]:
    condition = {"type": "Ready", "status": ready, "reason": "KubeletReady", "message": message}
    return {
        "metadata": {"name": name, "labels": {"raas.dev/robot": "pendulum-1"}},
        "spec": {"taints": [{"key": key, "effect": "NoSchedule"} for key in taints]},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, condition]},
    }


def robot(name: str = "pendulum-1", node_name: str = "pi-1") -> dict[str, Any]:
    beat = datetime.now(timezone.utc).isoformat()
    return {
        "metadata": {"name": name, "resourceVersion": "7"},
        "spec": {"node_name": node_name},
        "status": {"phase": "Ready", "last_heartbeat": beat},
    }


def test_a_ready_node_has_no_problem_and_a_not_ready_or_tainted_one_says_why() -> None:
    assert node_problem(node("pi-1")) is None
    assert node_problem(node("pi-1", "Unknown", message="Kubelet stopped posting node status.")) == (
        "its node pi-1 is NotReady (Kubelet stopped posting node status.)"
    )
    assert node_problem(node("pi-1", taints=("node.kubernetes.io/unreachable",))) == (
        "its node pi-1 is tainted node.kubernetes.io/unreachable"
    )
    assert node_problem({"metadata": {"name": "pi-9"}}) is None  # no status yet: nothing known against it


def test_a_robot_reads_offline_while_its_node_is_not_ready_and_as_it_is_again_after() -> None:
    cache = ClusterCache()
    cache.put_robot(robot())
    cache.put_robot(robot("pendulum-2", "pi-2"))
    assert cache.put_node(node("pi-1")) is False  # ready, as assumed: no change
    assert cache.put_node(node("pi-1", "Unknown")) is True
    served = cache.robot("pendulum-1")
    assert served is not None
    assert served.entry.robot.status.phase is RobotPhase.OFFLINE
    assert served.resource_version == "7"  # booking still guards the stored version
    trouble = cache.node_trouble(served)
    assert trouble is not None
    assert trouble.message == "its node pi-1 is NotReady (KubeletReady)"
    reported = cache.robot("pendulum-1", as_reported=True)
    assert reported is not None
    assert reported.entry.robot.status.phase is RobotPhase.READY  # as its agent wrote it
    assert {cached.entry.robot.name: cached.entry.robot.status.phase for cached in cache.robots()} == {
        "pendulum-1": RobotPhase.OFFLINE,
        "pendulum-2": RobotPhase.READY,
    }
    assert cache.robots_on("pi-1") == ["pendulum-1"]
    assert cache.put_node(node("pi-1", "Unknown")) is False
    assert cache.put_node(node("pi-1", "Unknown", taints=("node.kubernetes.io/unreachable",))) is False
    assert cache.put_node(node("pi-1", "False", message="PLEG is not healthy")) is True  # new words...
    still = cache.node_trouble(served)
    assert still is not None
    assert still.since == trouble.since  # ...the same trouble: the toleration is not restarted
    assert still.message == "its node pi-1 is NotReady (PLEG is not healthy)"
    assert cache.put_node(node("pi-1")) is True
    assert cache.node_trouble(served) is None
    again = cache.robot("pendulum-1")
    assert again is not None
    assert again.entry.robot.status.phase is RobotPhase.READY
    cache.put_node(node("pi-1", "False"))
    assert cache.put_node(node("pi-1", "False"), deleted=True) is True  # a deleted Node holds nothing against it
