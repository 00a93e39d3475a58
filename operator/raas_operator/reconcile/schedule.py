"""Scheduling in the cluster: queued RaasJobs over Robot objects, through the scheduler core.

A robot can take a job when its agent says Ready, it is not in maintenance, its heartbeat is
fresh, and no job is booked on it. Bookings are the operator's own record (the Robot's
``raas.dev/booked-job`` annotation, written with the object's resourceVersion, so two operators
can never book one robot twice); the agent's Ready alone is not enough, since between a booking
and the pod starting the agent is still idle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from raas_operator.jobs.model import JobSpec, JobStatus
from raas_operator.robots.model import DEFAULT_HEARTBEAT_TIMEOUT, Robot, RobotPhase
from raas_operator.scheduling.core import Decision, Quotas, RobotView, WaitingJob, schedule

BOOKING_ANNOTATION = "raas.dev/booked-job"
BOOKING_ATTEMPT_ANNOTATION = "raas.dev/booked-attempt"
"""The attempt of the booked job (the agent expects a retry on the same robot afresh)."""
BOOKING_RATE_ANNOTATION = "raas.dev/booked-control-hz"
"""The booked job's control rate (``spec.control_hz``): the agent expects its session at that rate
(without it, the rate the job's client asks for in its hello, from ``RAAS_CONTROL_HZ``)."""


@dataclass(frozen=True)
class QueuedJob:
    """A Queued RaasJob."""

    name: str
    spec: JobSpec
    status: JobStatus
    created_at: datetime


@dataclass(frozen=True)
class ClusterRobot:
    """A Robot object with what only its metadata holds."""

    robot: Robot
    labels: Mapping[str, str] = field(default_factory=dict)
    booked_job: str | None = None
    heard_at: datetime | None = None
    """When the operator saw the robot's last heartbeat, on its own clock (`runtime.cache`); None
    where the object was read directly: its agent's stamp counts then."""

    @classmethod
    def from_object(cls, item: Mapping[str, Any]) -> ClusterRobot:
        """A Robot object as the API server serves it (JSON)."""
        metadata = item["metadata"]
        robot = Robot.model_validate(
            {"name": metadata["name"], "spec": item.get("spec") or {}, "status": item.get("status") or {}}
        )
        booked = (metadata.get("annotations") or {}).get(BOOKING_ANNOTATION) or None
        return cls(robot, metadata.get("labels") or {}, booked)


def robot_view(
    entry: ClusterRobot, now: datetime, heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT
) -> RobotView:
    """How the scheduler core sees a Robot object."""
    robot = entry.robot
    stale = robot.heartbeat_is_stale(now, heartbeat_timeout, entry.heard_at)
    out_of_service = robot.spec.maintenance or robot.status.phase in (RobotPhase.UNHEALTHY, RobotPhase.OFFLINE)
    return RobotView(
        name=robot.name,
        type=robot.spec.robot_type,
        labels=dict(entry.labels),
        ready=robot.accepts_jobs(now, heartbeat_timeout, entry.heard_at) and entry.booked_job is None,
        schedulable=not (stale or out_of_service),
        free_at_s=now.timestamp() + (0.0 if entry.booked_job is None else 60.0),
        control_hz=robot.status.supported_control_hz,
    )


def effective_phase(
    robot: Robot,
    now: datetime,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
    heard_at: datetime | None = None,
) -> RobotPhase:
    """The robot's phase as the operator must treat it: Offline once its heartbeat is stale
    (`Robot.heartbeat_is_stale`; `heard_at` on the operator's clock where it has one)."""
    stale = robot.heartbeat_is_stale(now, heartbeat_timeout, heard_at)
    return RobotPhase.OFFLINE if stale else robot.status.phase


def plan(
    queued: Sequence[QueuedJob],
    robots: Sequence[ClusterRobot],
    running_by_owner: Mapping[str, int],
    quotas: Quotas,
    now: datetime,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
) -> Decision:
    """Assignments (job → robot), rejections (no robot could ever serve) and queue estimates."""
    waiting = [WaitingJob.of(job.name, job.spec, job.status, job.created_at.timestamp()) for job in queued]
    views = [robot_view(entry, now, heartbeat_timeout) for entry in robots]
    return schedule(waiting, views, running_by_owner, quotas, now_s=now.timestamp())
