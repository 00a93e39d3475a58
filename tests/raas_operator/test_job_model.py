"""The RaasJob model: validation of what users send, and the phase state machine."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from raas_operator.jobs.model import (
    FailureClass,
    GitSource,
    InvalidTransitionError,
    JobSpec,
    JobStatus,
    LocalSource,
    Phase,
    RobotRequest,
    fail,
    transition,
)


def spec(**changes: object) -> JobSpec:
    values: dict[str, object] = {"owner": "ada", "source": {"kind": "git", "url": "https://git.example/ada/ctl.git"}}
    values.update(changes)
    return JobSpec.model_validate(values)


def test_defaults_are_run_py_any_pendulum_and_two_minutes() -> None:
    job = spec()
    assert job.entrypoint == "run.py"
    assert job.robot == RobotRequest()
    assert job.time_limit_s == 120
    assert isinstance(job.source, GitSource)
    assert job.source.ref == "HEAD"


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"entrypoint": "ctl/../../escape.py"}, "inside the repository"),
        ({"entrypoint": "/etc/passwd.py"}, "entrypoint"),
        ({"entrypoint": "run.sh"}, "entrypoint"),
        ({"time_limit_s": 0}, "greater than or equal to 1"),
        ({"time_limit_s": 99999}, "less than or equal to 3600"),
        ({"owner": "Not A Name"}, "owner"),
        ({"source": {"kind": "git", "url": "file:///etc"}}, "repository URL"),
        ({"source": {"kind": "git", "url": "https://x/y.git", "ref": "--upload-pack=evil"}}, "ref"),
        ({"source": {"kind": "git", "url": "https://x/y.git", "ref": "a..b"}}, "not a valid git ref"),
        ({"robot": {"selector": {"bad key!": "x"}}}, "label key"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_specs_are_refused_with_a_message_naming_the_problem(changes: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        spec(**changes)


def test_local_sources_and_label_selectors_are_accepted() -> None:
    job = spec(source={"kind": "local", "path": "/home/ada/ctl"}, robot={"selector": {"raas.dev/lab": "north"}})
    assert isinstance(job.source, LocalSource)
    assert job.robot.matches("p1", "pendulum", {"raas.dev/lab": "north"})
    assert not job.robot.matches("p1", "pendulum", {"raas.dev/lab": "south"})


def test_phases_only_move_forward_and_record_history() -> None:
    status = JobStatus()
    for phase in (Phase.FETCHING, Phase.QUEUED, Phase.STARTING, Phase.RUNNING, Phase.UPLOADING, Phase.SUCCEEDED):
        status = transition(status, phase, reason=f"to-{phase.value}")
    assert [change.phase for change in status.history][-1] is Phase.SUCCEEDED
    assert len(status.history) == 6
    with pytest.raises(InvalidTransitionError, match="Succeeded to Running"):
        transition(status, Phase.RUNNING)
    with pytest.raises(InvalidTransitionError):
        transition(JobStatus(phase=Phase.RUNNING), Phase.FETCHING)


def test_robot_faults_are_retried_once_on_another_robot_and_user_errors_never() -> None:
    running = JobStatus(phase=Phase.RUNNING, robot="pendulum-1", attempts=1)
    retried = fail(running, FailureClass.ROBOT_FAULT, "AgentLost", "the robot agent stopped answering")
    assert retried.phase is Phase.QUEUED
    assert retried.excluded_robots == ("pendulum-1",)
    assert retried.robot is None
    second = retried.model_copy(update={"phase": Phase.RUNNING, "robot": "pendulum-2", "attempts": 2})
    final = fail(second, FailureClass.ROBOT_FAULT, "AgentLost", "again")
    assert final.phase is Phase.FAILED
    assert final.failure_class is FailureClass.ROBOT_FAULT
    user = fail(running, FailureClass.USER_ERROR, "NonZeroExit", "run.py exited with status 1")
    assert user.phase is Phase.FAILED
    timed_out = fail(running, FailureClass.TIME_LIMIT, "TimeLimit", "ran for 120 s")
    assert timed_out.phase is Phase.TIMED_OUT


def conditions(status: JobStatus) -> dict[str, tuple[str, str]]:
    return {condition.type: (condition.status.value, condition.reason) for condition in status.conditions}


def test_conditions_follow_the_phases_for_kubectl_wait() -> None:
    status = transition(JobStatus(), Phase.FETCHING, reason="Fetching")
    assert status.conditions == ()
    queued = transition(status, Phase.QUEUED, reason="Fetched")
    assert conditions(queued) == {"Fetched": ("True", "Fetched")}
    starting = transition(queued, Phase.STARTING, reason="Scheduled", robot="pendulum-1", attempts=1)
    running = transition(starting, Phase.RUNNING, reason="Running")
    retried = fail(running, FailureClass.ROBOT_FAULT, "RobotOffline", "the robot went offline")
    assert conditions(retried)["Scheduled"] == ("False", "RobotOffline")
    again = transition(retried, Phase.STARTING, reason="Scheduled", robot="pendulum-2", attempts=2)
    done = transition(transition(again, Phase.UPLOADING, reason="Uploading"), Phase.SUCCEEDED, reason="Completed")
    assert conditions(done) == {
        "Fetched": ("True", "Fetched"),
        "Scheduled": ("True", "Scheduled"),
        "Finished": ("True", "Succeeded"),
        "Succeeded": ("True", "Succeeded"),
    }
    fetched_at = next(c.last_transition_time for c in done.conditions if c.type == "Fetched")
    assert fetched_at == queued.history[-1].at  # unchanged status keeps its transition time


def test_a_failed_fetch_says_so_in_its_conditions() -> None:
    fetching = transition(JobStatus(), Phase.FETCHING)
    failed = transition(fetching, Phase.FAILED, reason="RefNotFound", failure_class=FailureClass.USER_ERROR)
    assert conditions(failed) == {
        "Fetched": ("False", "RefNotFound"),
        "Finished": ("True", "Failed"),
        "Succeeded": ("False", "RefNotFound"),
    }
    cancelled = transition(transition(JobStatus(), Phase.FETCHING), Phase.CANCELLED, reason="the user's wish")
    assert conditions(cancelled)["Succeeded"] == ("False", "Cancelled")  # a reason must be CamelCase
