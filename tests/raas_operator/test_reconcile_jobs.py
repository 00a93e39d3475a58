"""The operator's per-job decisions (pure): every phase, pod outcome and robot fate."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from raas_operator.jobs.model import FailureClass, JobSpec, JobStatus, Phase, transition
from raas_operator.reconcile.jobs import (
    AdoptUpload,
    CollectResults,
    CreateFetchPod,
    CreateRunPod,
    DeletePod,
    JobFacts,
    RecordEvent,
    ReleaseFinalizer,
    RobotFacts,
    UpdateStatus,
    expired,
    reconcile_job,
    session_facts,
    session_record_of,
)
from raas_operator.reconcile.pods import PodKind, PodOutcome, PodView
from raas_operator.robots.model import RobotPhase

COMMIT = "a" * 40
SPEC = JobSpec.model_validate({"owner": "ada", "source": {"kind": "git", "url": "https://github.com/a/c.git"}})
READY_ROBOT = RobotFacts("pendulum-1", RobotPhase.BUSY, "raas/job-1")


def status_at(phase: Phase, robot: str = "pendulum-1") -> JobStatus:
    status = JobStatus()
    path = [Phase.FETCHING, Phase.QUEUED, Phase.STARTING, Phase.RUNNING, Phase.UPLOADING]
    for step in path[: path.index(phase) + 1] if phase in path else []:
        changes: dict[str, object] = {}
        if step is Phase.QUEUED:
            changes["commit"] = COMMIT
        if step is Phase.STARTING:
            changes.update(robot=robot, attempts=status.attempts + 1)
        status = transition(status, step, reason=step.value, **changes)
    return status


def run_pod(outcome: PodOutcome, attempt: int = 1, **facts: object) -> PodView:
    return PodView(f"job-1-{attempt}", PodKind.RUN, attempt, "node-1", outcome, **facts)  # type: ignore[arg-type]


def fetch_pod(outcome: PodOutcome, message: str = "", reason: str = "") -> PodView:
    return PodView("job-1-fetch", PodKind.FETCH, 1, "node-x", outcome, 0, reason, message)


def facts(status: JobStatus, *pods: PodView, **more: object) -> JobFacts:
    return JobFacts("job-1", SPEC, status, tuple(pods), **more)  # type: ignore[arg-type]


def new_status(actions: list[object]) -> JobStatus:
    updates = [action for action in actions if isinstance(action, UpdateStatus)]
    assert len(updates) == 1, actions
    return updates[0].status


def test_a_new_job_gets_a_fetch_pod_and_is_fetching() -> None:
    actions = reconcile_job(facts(JobStatus()))
    assert CreateFetchPod("job-1-fetch") in actions
    assert new_status(actions).phase is Phase.FETCHING
    assert any(isinstance(action, RecordEvent) for action in actions)


def test_a_fetched_job_is_queued_at_its_commit_and_its_fetch_pod_removed() -> None:
    actions = reconcile_job(facts(status_at(Phase.FETCHING), fetch_pod(PodOutcome.SUCCEEDED, COMMIT)))
    status = new_status(actions)
    assert status.phase is Phase.QUEUED
    assert status.commit == COMMIT
    assert not status.requirements
    assert DeletePod("job-1-fetch") in actions
    with_wheels = fetch_pod(PodOutcome.SUCCEEDED, f"{COMMIT} +wheels")  # it stored a requirements.txt's wheels
    status = new_status(reconcile_job(facts(status_at(Phase.FETCHING), with_wheels)))
    assert (status.commit, status.requirements) == (COMMIT, True)
    nonsense = fetch_pod(PodOutcome.SUCCEEDED, "not-a-commit")
    assert new_status(reconcile_job(facts(status_at(Phase.FETCHING), nonsense))).reason == "FetchFailed"


def test_a_failed_fetch_fails_the_job_as_a_user_error_with_the_fetchers_reason() -> None:
    pod = fetch_pod(PodOutcome.FAILED, "RefNotFound: ref 'nope' is not in https://github.com/a/c.git")
    status = new_status(reconcile_job(facts(status_at(Phase.FETCHING), pod)))
    assert status.phase is Phase.FAILED
    assert status.failure_class is FailureClass.USER_ERROR
    assert status.reason == "RefNotFound"
    assert "nope" in status.message
    timed_out = new_status(
        reconcile_job(facts(status_at(Phase.FETCHING), fetch_pod(PodOutcome.FAILED, reason="DeadlineExceeded")))
    )
    assert timed_out.reason == "FetchTimeout"


def test_a_lost_fetch_pod_is_created_again_and_a_running_one_is_awaited() -> None:
    assert reconcile_job(facts(status_at(Phase.FETCHING))) == [CreateFetchPod("job-1-fetch")]
    assert reconcile_job(facts(status_at(Phase.FETCHING), fetch_pod(PodOutcome.RUNNING))) == []


def test_a_scheduled_job_gets_its_run_pod_then_runs() -> None:
    starting = status_at(Phase.STARTING)
    assert reconcile_job(facts(starting, robot=READY_ROBOT)) == [CreateRunPod("job-1-1", "pendulum-1", 1)]
    assert reconcile_job(facts(starting, run_pod(PodOutcome.WAITING), robot=READY_ROBOT)) == []
    running = new_status(reconcile_job(facts(starting, run_pod(PodOutcome.RUNNING), robot=READY_ROBOT)))
    assert running.phase is Phase.RUNNING
    assert running.robot == "pendulum-1"


def test_a_finished_pod_is_uploaded_then_the_job_ends_by_its_outcome() -> None:
    running = status_at(Phase.RUNNING)
    actions = reconcile_job(facts(running, run_pod(PodOutcome.SUCCEEDED, exit_code=0), robot=READY_ROBOT))
    assert new_status(actions).phase is Phase.UPLOADING
    assert CollectResults("job-1-1") in actions
    uploading = status_at(Phase.UPLOADING)
    pod = run_pod(PodOutcome.SUCCEEDED, exit_code=0)
    assert reconcile_job(facts(uploading, pod, robot=READY_ROBOT)) == [CollectResults("job-1-1")]
    done = reconcile_job(facts(uploading, pod, robot=READY_ROBOT, results_collected=True))
    assert new_status(done).phase is Phase.SUCCEEDED
    assert DeletePod("job-1-1") in done


@pytest.mark.parametrize(
    ("pod", "phase", "failure", "reason"),
    [
        (
            run_pod(PodOutcome.FAILED, exit_code=1, message="ValueError: boom"),
            Phase.FAILED,
            FailureClass.USER_ERROR,
            "NonZeroExit",
        ),
        (
            run_pod(PodOutcome.FAILED, exit_code=137, reason="OOMKilled"),
            Phase.FAILED,
            FailureClass.RESOURCE_LIMIT,
            "MemoryLimit",
        ),
        (run_pod(PodOutcome.FAILED, reason="DeadlineExceeded"), Phase.TIMED_OUT, FailureClass.TIME_LIMIT, "TimeLimit"),
    ],
)
def test_how_a_run_pod_ended_decides_the_final_phase(
    pod: PodView, phase: Phase, failure: FailureClass, reason: str
) -> None:
    status = new_status(
        reconcile_job(facts(status_at(Phase.UPLOADING), pod, robot=READY_ROBOT, results_collected=True))
    )
    assert status.phase is phase
    assert status.failure_class is failure
    assert status.reason == reason


def test_an_evicted_pod_or_an_agent_reported_fault_is_retried_once() -> None:
    evicted = run_pod(PodOutcome.FAILED, reason="Evicted")
    retried = new_status(
        reconcile_job(facts(status_at(Phase.UPLOADING), evicted, robot=READY_ROBOT, results_collected=True))
    )
    assert retried.phase is Phase.QUEUED
    assert retried.excluded_robots == ()  # a platform fault does not blame the robot
    faulted = reconcile_job(
        facts(status_at(Phase.UPLOADING), run_pod(PodOutcome.FAILED, exit_code=1), robot=READY_ROBOT,
              results_collected=True, robot_fault="the encoder stopped counting")
    )  # fmt: skip
    requeued = new_status(faulted)
    assert requeued.phase is Phase.QUEUED
    assert requeued.excluded_robots == ("pendulum-1",)


NODE_DOWN = RobotFacts("pendulum-1", RobotPhase.OFFLINE, problem="its node pi-1 is NotReady (Kubelet stopped posting)")


@pytest.mark.parametrize(
    "robot",
    [
        None,
        RobotFacts("pendulum-1", RobotPhase.OFFLINE),
        RobotFacts("pendulum-1", RobotPhase.UNHEALTHY),
        NODE_DOWN,
    ],
)
def test_a_robot_lost_mid_run_is_a_robot_fault_retried_elsewhere(robot: RobotFacts | None) -> None:
    actions = reconcile_job(facts(status_at(Phase.RUNNING), run_pod(PodOutcome.RUNNING), robot=robot))
    status = new_status(actions)
    assert status.phase is Phase.QUEUED
    assert status.excluded_robots == ("pendulum-1",)
    assert DeletePod("job-1-1") in actions
    second = status_at(Phase.RUNNING).model_copy(update={"attempts": 2})
    final = new_status(reconcile_job(facts(second, run_pod(PodOutcome.RUNNING, attempt=2), robot=robot)))
    assert final.phase is Phase.FAILED  # only one retry
    assert final.failure_class is FailureClass.ROBOT_FAULT


def test_a_robot_whose_node_is_not_ready_says_so_in_the_fault() -> None:
    status = new_status(reconcile_job(facts(status_at(Phase.RUNNING), run_pod(PodOutcome.RUNNING), robot=NODE_DOWN)))
    assert status.reason == "RobotFault"
    assert status.message.startswith(
        "robot pendulum-1 went out of service: its node pi-1 is NotReady (Kubelet stopped posting)"
    )


def test_a_pod_that_vanished_under_a_running_job_is_a_platform_fault() -> None:
    status = new_status(reconcile_job(facts(status_at(Phase.RUNNING), robot=READY_ROBOT)))
    assert status.phase is Phase.QUEUED
    assert status.reason == "PodLost"


def test_deleting_a_job_cancels_it_deletes_its_pods_and_then_releases_it() -> None:
    actions = reconcile_job(
        facts(status_at(Phase.RUNNING), run_pod(PodOutcome.RUNNING), robot=READY_ROBOT, deleting=True)
    )
    assert DeletePod("job-1-1") in actions
    assert new_status(actions).phase is Phase.CANCELLED
    assert ReleaseFinalizer() not in actions  # the pod is still there
    gone = reconcile_job(facts(new_status(actions), deleting=True))
    assert gone == [ReleaseFinalizer()]


def test_retries_clean_up_the_previous_attempts_pod_and_finished_jobs_their_pods() -> None:
    queued_again = status_at(Phase.QUEUED)
    assert reconcile_job(facts(queued_again, run_pod(PodOutcome.FAILED))) == [DeletePod("job-1-1")]
    done = transition(status_at(Phase.UPLOADING), Phase.SUCCEEDED, reason="Completed")
    assert reconcile_job(facts(done, run_pod(PodOutcome.SUCCEEDED))) == [DeletePod("job-1-1")]
    assert reconcile_job(facts(done)) == []


def test_finished_jobs_expire_after_their_ttl() -> None:
    done = transition(status_at(Phase.UPLOADING), Phase.SUCCEEDED, reason="Completed")
    finished_at = done.history[-1].at
    assert not expired(done, finished_at + timedelta(minutes=59), timedelta(hours=1))
    assert expired(done, finished_at + timedelta(hours=1), timedelta(hours=1))
    assert not expired(status_at(Phase.RUNNING), datetime.now(timezone.utc) + timedelta(days=9), timedelta(hours=1))


def test_pod_views_read_what_the_api_server_reports() -> None:
    pod = {
        "metadata": {
            "name": "job-1-2",
            "labels": {"app.kubernetes.io/component": "job"},
            "annotations": {"raas.dev/attempt": "2"},
        },
        "spec": {"nodeName": "pi-3"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "controller", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": ""}}}
            ],
        },
    }
    view = PodView.from_pod(pod)
    assert (view.kind, view.attempt, view.node, view.outcome, view.exit_code, view.reason) == (
        PodKind.RUN,
        2,
        "pi-3",
        PodOutcome.FAILED,
        137,
        "OOMKilled",
    )
    deadline = {"metadata": {"name": "x", "labels": {}}, "status": {"phase": "Failed", "reason": "DeadlineExceeded"}}
    assert PodView.from_pod(deadline).reason == "DeadlineExceeded"
    fetch = {
        "metadata": {"name": "job-1-fetch", "labels": {"app.kubernetes.io/component": "fetch"}},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {"name": "fetch", "state": {"terminated": {"exitCode": 0, "message": COMMIT + "\n"}}}
            ],
        },
    }
    assert PodView.from_pod(fetch).message == COMMIT
    assert (
        PodView.from_pod(
            {"metadata": {"name": "y", "deletionTimestamp": "now"}, "status": {"phase": "Running"}}
        ).outcome
        is PodOutcome.GONE
    )


ARCHIVE_SPEC = JobSpec.model_validate({"owner": "ada", "source": {"kind": "archive", "sha256": "c" * 64}})


def test_an_uploaded_job_takes_its_code_from_the_store_and_is_queued_without_a_fetch_pod() -> None:
    actions = reconcile_job(JobFacts("job-1", ARCHIVE_SPEC, JobStatus(), upload_present=True))
    assert AdoptUpload("c" * 64) in actions
    assert not any(isinstance(action, CreateFetchPod) for action in actions)
    status = new_status(actions)
    assert status.phase is Phase.QUEUED
    assert [change.phase for change in status.history] == [Phase.PENDING, Phase.FETCHING, Phase.QUEUED]
    assert actions.index(AdoptUpload("c" * 64)) < actions.index(UpdateStatus(status))  # code first, then Queued


def test_an_uploaded_job_with_requirements_has_them_resolved_by_a_fetch_pod_then_queues() -> None:
    pending = JobFacts("job-1", ARCHIVE_SPEC, JobStatus(), upload_present=True, upload_has_requirements=True)
    actions = reconcile_job(pending)
    assert actions[:2] == [AdoptUpload("c" * 64), CreateFetchPod("job-1-fetch")]  # stored before it is read
    fetching = new_status(actions)
    assert fetching.phase is Phase.FETCHING
    done = fetch_pod(PodOutcome.SUCCEEDED, message="uploaded +wheels")
    actions = reconcile_job(JobFacts("job-1", ARCHIVE_SPEC, fetching, (done,)))
    queued = new_status(actions)
    assert (queued.phase, queued.commit, queued.requirements) == (Phase.QUEUED, None, True)
    assert DeletePod("job-1-fetch") in actions
    failed = fetch_pod(PodOutcome.FAILED, message="RequirementsFailed: requirements.txt cannot be resolved: no x")
    status = new_status(reconcile_job(JobFacts("job-1", ARCHIVE_SPEC, fetching, (failed,))))
    assert (status.phase, status.reason, status.failure_class) == (
        Phase.FAILED,
        "RequirementsFailed",
        FailureClass.USER_ERROR,
    )


def test_an_uploaded_job_whose_code_is_missing_fails_as_a_user_error() -> None:
    actions = reconcile_job(JobFacts("job-1", ARCHIVE_SPEC, JobStatus(), upload_present=False))
    status = new_status(actions)
    assert (status.phase, status.reason, status.failure_class) == (
        Phase.FAILED,
        "UploadMissing",
        FailureClass.USER_ERROR,
    )
    assert not any(isinstance(action, AdoptUpload) for action in actions)


def test_a_cancel_request_cancels_the_job_but_keeps_the_raasjob() -> None:
    actions = reconcile_job(facts(status_at(Phase.RUNNING), run_pod(PodOutcome.RUNNING), cancel_requested=True))
    assert DeletePod("job-1-1") in actions
    status = new_status(actions)
    assert (status.phase, status.message) == (Phase.CANCELLED, "cancelled on request")
    assert not any(isinstance(action, ReleaseFinalizer) for action in actions)
    assert reconcile_job(facts(status, cancel_requested=True)) == []  # nothing left to do


def test_the_agents_session_record_gives_the_summary_and_a_robot_side_failure() -> None:
    completed = {"robot": "pendulum-1", "outcome": "completed", "steps": 250, "total_reward": -12.5}
    summary, fault = session_facts(completed)
    assert summary is not None
    assert (summary.steps, summary.total_reward, fault) == (250, -12.5, None)
    _, fault = session_facts({"robot": "pendulum-1", "outcome": "agent_error", "message": "encoder lost"})
    assert fault == "encoder lost"
    refused = {"robot": "pendulum-1", "outcome": "refused", "message": "the robot is in maintenance", "steps": 0}
    summary, fault = session_facts(refused)
    assert summary is None  # no session ran
    assert fault == "robot pendulum-1 refused the session: the robot is in maintenance"
    assert session_facts(None) == (None, None)


def test_only_the_current_attempts_session_record_counts() -> None:
    record: dict[str, object] = {"robot": "pendulum-1", "outcome": "agent_error", "message": "encoder lost"}
    assert session_record_of(record, "pendulum-1") is record
    assert session_record_of(record, "pendulum-2") is None  # the first attempt's, from the robot it left
    assert session_record_of({"outcome": "completed"}, "pendulum-2") is not None  # (an agent that names no robot)
    assert session_record_of(None, "pendulum-1") is None
