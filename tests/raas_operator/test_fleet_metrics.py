"""The fleet metrics (raas_operator.metrics): what the dashboards and alerts read about queue, jobs and robots."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prometheus_client import CollectorRegistry, generate_latest

from raas_operator.jobs.model import FailureClass, JobStatus, Phase, PhaseChange, fail, transition
from raas_operator.metrics import NO_FAILURE, FleetMetrics, FleetState, RobotSample, queued_since
from raas_operator.robots.model import RobotPhase

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def queued_job() -> JobStatus:
    """A job submitted at T0, fetched, Queued at T0 + 10 s."""
    status = JobStatus(history=(PhaseChange(phase=Phase.PENDING, at=at(0)),))
    status = transition(status, Phase.FETCHING, at=at(1))
    return transition(status, Phase.QUEUED, at=at(10))


def started(status: JobStatus, seconds: float, robot: str = "pi-1") -> JobStatus:
    status = transition(status, Phase.STARTING, at=at(seconds), robot=robot, attempts=status.attempts + 1)
    return transition(status, Phase.RUNNING, at=at(seconds + 1))


def step(metrics: FleetMetrics, before: JobStatus, after: JobStatus) -> JobStatus:
    metrics.observe_transition(before, after)
    return after


def finished(metrics: FleetMetrics, phase: str, failure_class: str = NO_FAILURE) -> float | None:
    labels = {"phase": phase, "failure_class": failure_class}
    return metrics.registry.get_sample_value("raas_jobs_finished_total", labels)


def test_every_outcome_and_failure_class_starts_at_zero() -> None:
    metrics = FleetMetrics(CollectorRegistry())
    assert finished(metrics, "Succeeded") == 0.0
    assert finished(metrics, "TimedOut", "TimeLimit") == 0.0
    for failure in ("UserError", "ResourceLimit", "RobotFault", "PlatformFault"):
        assert finished(metrics, "Failed", failure) == 0.0
    assert metrics.registry.get_sample_value("raas_job_retries_total", {"failure_class": "RobotFault"}) == 0.0
    assert metrics.registry.get_sample_value("raas_queue_wait_seconds_count") == 0.0


def test_a_scheduled_job_observes_how_long_it_waited_in_the_queue() -> None:
    metrics = FleetMetrics(CollectorRegistry())
    queued = queued_job()
    step(metrics, queued, started(queued, 40.0))
    assert metrics.registry.get_sample_value("raas_queue_wait_seconds_count") == 1.0
    assert metrics.registry.get_sample_value("raas_queue_wait_seconds_sum") == 30.0
    assert metrics.registry.get_sample_value("raas_queue_wait_seconds_bucket", {"le": "15.0"}) == 0.0
    assert metrics.registry.get_sample_value("raas_queue_wait_seconds_bucket", {"le": "30.0"}) == 1.0


def test_status_updates_without_a_phase_change_count_nothing() -> None:
    metrics = FleetMetrics(CollectorRegistry())
    running = started(queued_job(), 40.0)
    metrics.observe_transition(running, running.model_copy(update={"queue_position": None, "results_pending": 3}))
    metrics.observe_transition(running, running)
    assert metrics.registry.get_sample_value("raas_queue_wait_seconds_count") == 0.0
    assert sum(finished(metrics, phase) or 0.0 for phase in ("Succeeded", "Cancelled")) == 0.0


def test_finished_jobs_count_by_phase_and_failure_class() -> None:
    metrics = FleetMetrics(CollectorRegistry())
    running = started(queued_job(), 40.0)
    uploading = transition(running, Phase.UPLOADING, at=at(60))
    step(metrics, uploading, transition(uploading, Phase.SUCCEEDED, at=at(61)))
    step(metrics, running, fail(running, FailureClass.USER_ERROR, "NonZeroExit", "exit 1", at=at(62)))
    step(metrics, running, fail(running, FailureClass.TIME_LIMIT, "TimeLimit", "over", at=at(63)))
    step(metrics, running, transition(running, Phase.CANCELLED, at=at(64)))
    assert finished(metrics, "Succeeded") == 1.0
    assert finished(metrics, "Failed", "UserError") == 1.0
    assert finished(metrics, "TimedOut", "TimeLimit") == 1.0
    assert finished(metrics, "Cancelled") == 1.0
    assert finished(metrics, "Failed", "RobotFault") == 0.0


def test_a_robot_fault_is_a_retry_first_and_a_failed_job_the_second_time() -> None:
    metrics = FleetMetrics(CollectorRegistry())
    first = started(queued_job(), 40.0, robot="pi-1")
    retried = step(metrics, first, fail(first, FailureClass.ROBOT_FAULT, "RobotFault", "reset failed", at=at(50)))
    assert retried.phase is Phase.QUEUED
    assert metrics.registry.get_sample_value("raas_job_retries_total", {"failure_class": "RobotFault"}) == 1.0
    assert finished(metrics, "Failed", "RobotFault") == 0.0
    second = step(metrics, retried, started(retried, 80.0, robot="pi-2"))
    assert metrics.registry.get_sample_value("raas_queue_wait_seconds_sum") == 30.0  # since the retry's Queued
    step(metrics, second, fail(second, FailureClass.ROBOT_FAULT, "RobotFault", "agent lost", at=at(90)))
    assert finished(metrics, "Failed", "RobotFault") == 1.0
    assert metrics.registry.get_sample_value("raas_job_retries_total", {"failure_class": "RobotFault"}) == 1.0


def test_a_platform_fault_retry_is_counted_as_one() -> None:
    metrics = FleetMetrics(CollectorRegistry())
    running = started(queued_job(), 40.0)
    step(metrics, running, fail(running, FailureClass.PLATFORM_FAULT, "PlatformRestarted", "restart", at=at(50)))
    assert metrics.registry.get_sample_value("raas_job_retries_total", {"failure_class": "PlatformFault"}) == 1.0
    assert metrics.registry.get_sample_value("raas_job_retries_total", {"failure_class": "RobotFault"}) == 0.0


def test_queued_since_is_the_last_time_the_job_entered_queued() -> None:
    queued = queued_job()
    assert queued_since(queued, default_s=0.0) == at(10).timestamp()
    retried = fail(started(queued, 40.0), FailureClass.ROBOT_FAULT, "RobotFault", "x", at=at(50))
    assert queued_since(retried, default_s=0.0) == at(50).timestamp()
    assert queued_since(JobStatus(), default_s=7.0) == 7.0


def test_state_metrics_are_computed_from_the_source_at_each_scrape() -> None:
    now = [at(100).timestamp()]
    state = FleetState(
        queued_since_s=(at(40).timestamp(), at(70).timestamp()),
        robots=(
            RobotSample("pi-1", RobotPhase.READY, at(99).timestamp()),
            RobotSample("pi-2", RobotPhase.BUSY, at(95).timestamp()),
            RobotSample("pi-3", RobotPhase.OFFLINE, None),
        ),
        results_pending_files=4,
    )
    metrics = FleetMetrics(CollectorRegistry(), state=lambda: state, clock=lambda: now[0])
    sample = metrics.registry.get_sample_value
    assert sample("raas_queue_length") == 2.0
    assert sample("raas_queue_oldest_wait_seconds") == 60.0
    assert sample("raas_robots", {"phase": "Ready"}) == 1.0
    assert sample("raas_robots", {"phase": "Offline"}) == 1.0
    assert sample("raas_robots", {"phase": "Maintenance"}) == 0.0
    assert sample("raas_robot_heartbeat_age_seconds", {"robot": "pi-2"}) == 5.0
    assert sample("raas_robot_heartbeat_age_seconds", {"robot": "pi-3"}) is None  # never heard from
    assert sample("raas_results_pending_files") == 4.0
    now[0] += 30
    assert sample("raas_queue_oldest_wait_seconds") == 90.0
    assert sample("raas_robot_heartbeat_age_seconds", {"robot": "pi-1"}) == 31.0


def test_an_empty_queue_has_no_waiting_time() -> None:
    metrics = FleetMetrics(CollectorRegistry(), state=FleetState)
    assert metrics.registry.get_sample_value("raas_queue_length") == 0.0
    assert metrics.registry.get_sample_value("raas_queue_oldest_wait_seconds") == 0.0


def test_state_metrics_are_absent_until_a_state_is_pushed() -> None:
    metrics = FleetMetrics(CollectorRegistry(), clock=lambda: at(100).timestamp())
    assert metrics.registry.get_sample_value("raas_queue_length") is None
    assert metrics.registry.get_sample_value("raas_robots", {"phase": "Ready"}) is None
    metrics.observe_state(FleetState(queued_since_s=(at(90).timestamp(),)))
    assert metrics.registry.get_sample_value("raas_queue_length") == 1.0
    assert metrics.registry.get_sample_value("raas_queue_oldest_wait_seconds") == 10.0


def test_a_failing_state_source_leaves_the_state_out_but_not_the_scrape() -> None:
    def broken() -> FleetState:
        raise OSError("database is locked")

    metrics = FleetMetrics(CollectorRegistry(), state=broken)
    text = generate_latest(metrics.registry).decode()
    assert "raas_jobs_finished_total" in text
    assert "raas_queue_length" not in text
