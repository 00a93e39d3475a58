"""Turning platform records into the API's bodies."""

from __future__ import annotations

from raas_api.http.schemas import JobView, RobotViewOut
from raas_api.local.platform import RobotDetails
from raas_api.platform import Platform
from raas_api.stores.base import JobRecord


def job_view(record: JobRecord, platform: Platform) -> JobView:
    """The job as clients see it, with the steps it has run if it is still going."""
    return view_at(record, steps_now(record, platform))


def steps_now(record: JobRecord, platform: Platform) -> int | None:
    """The control steps the job has run so far (None once it has ended, or before it runs)."""
    return platform.steps_run(record) if not record.status.phase.is_terminal else None


def view_at(record: JobRecord, steps: int | None) -> JobView:
    """The job as clients see it, having run `steps` control steps (None when not running)."""
    spec, status = record.spec, record.status
    return JobView(
        id=record.job_id,
        owner=spec.owner,
        phase=status.phase,
        reason=status.reason,
        message=status.message,
        failure_class=status.failure_class,
        created_at=record.created_at,
        source=spec.source.model_dump(),
        entrypoint=spec.entrypoint,
        time_limit_s=spec.time_limit_s,
        priority=spec.priority,
        control_hz=spec.control_hz,
        robot_request=spec.robot,
        robot=status.robot,
        commit=status.commit,
        attempts=status.attempts,
        queue_position=status.queue_position,
        estimated_start=status.estimated_start,
        steps=steps,
        summary=status.summary,
        results_pending=status.results_pending,
        history=status.history,
    )


def robot_view(robot: RobotDetails) -> RobotViewOut:
    last_reset = (
        None if robot.last_reset_ok is None else {"ok": robot.last_reset_ok, "duration_s": robot.last_reset_duration_s}
    )
    return RobotViewOut(
        name=robot.name,
        type=robot.type,
        state=robot.state,
        ready=robot.ready,
        schedulable=robot.schedulable,
        reasons=list(robot.reasons),
        current_job=robot.current_job,
        temperature_celsius=robot.temperature_celsius,
        last_reset=last_reset,
        calibration=robot.calibration,
        labels=robot.labels,
        supported_control_hz=list(robot.supported_control_hz),
    )
