"""Scheduling RaasJobs over Robot objects: readiness, heartbeats, maintenance, bookings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from raas_operator.jobs.model import JobSpec, JobStatus
from raas_operator.reconcile.schedule import ClusterRobot, QueuedJob, effective_phase, plan, robot_view
from raas_operator.robots.model import Robot, RobotPhase, RobotSpec, RobotStatus
from raas_operator.scheduling.core import Quotas

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def robot(
    name: str, phase: RobotPhase = RobotPhase.READY, *, beat_s_ago: float = 1, maintenance: bool = False
) -> Robot:
    return Robot(
        name=name,
        spec=RobotSpec(node_name=f"node-{name}", maintenance=maintenance),
        status=RobotStatus(phase=phase, last_heartbeat=NOW - timedelta(seconds=beat_s_ago)),
    )


def job(name: str, owner: str = "ada", minutes_ago: int = 1, **spec: object) -> QueuedJob:
    body = {"owner": owner, "source": {"kind": "git", "url": "https://github.com/a/c.git"}, **spec}
    return QueuedJob(name, JobSpec.model_validate(body), JobStatus(), NOW - timedelta(minutes=minutes_ago))


def test_only_ready_fresh_unbooked_robots_in_service_take_jobs() -> None:
    fleet = [
        ClusterRobot(robot("ready")),
        ClusterRobot(robot("stale", beat_s_ago=120)),
        ClusterRobot(robot("maintained", maintenance=True)),
        ClusterRobot(robot("busy", RobotPhase.BUSY)),
        ClusterRobot(robot("booked"), booked_job="job-0"),
    ]
    views = {entry.robot.name: robot_view(entry, NOW) for entry in fleet}
    assert [name for name, view in views.items() if view.ready] == ["ready"]
    assert not views["stale"].schedulable
    assert not views["maintained"].schedulable
    assert views["busy"].schedulable
    assert views["booked"].schedulable
    decision = plan([job("job-1", minutes_ago=2), job("job-2")], fleet, {}, Quotas(), NOW)
    assert [(assignment.job_id, assignment.robot) for assignment in decision.assignments] == [("job-1", "ready")]
    assert [entry.job_id for entry in decision.queue] == ["job-2"]


def test_a_job_for_a_robot_that_does_not_exist_is_rejected_and_labels_select() -> None:
    fleet = [
        ClusterRobot(robot("north-1"), labels={"lab": "north"}),
        ClusterRobot(robot("south-1"), labels={"lab": "south"}),
    ]
    decision = plan(
        [job("ghost", robot={"name": "nobody"}), job("south", robot={"selector": {"lab": "south"}})],
        fleet,
        {},
        Quotas(),
        NOW,
    )
    assert [rejection.job_id for rejection in decision.rejections] == ["ghost"]
    assert [(assignment.job_id, assignment.robot) for assignment in decision.assignments] == [("south", "south-1")]


def test_a_stale_heartbeat_makes_a_robot_offline() -> None:
    assert effective_phase(robot("r", RobotPhase.BUSY, beat_s_ago=5), NOW) is RobotPhase.BUSY
    assert effective_phase(robot("r", RobotPhase.BUSY, beat_s_ago=300), NOW) is RobotPhase.OFFLINE
