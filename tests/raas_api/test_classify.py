"""Local platform policy: runner verdicts and robot faults become failure classes."""

from __future__ import annotations

import pytest

from raas_api.local.classify import classify_run
from raas_node.runner.launch import RunOutcome, RunVerdict
from raas_operator.jobs.model import FailureClass


def outcome(verdict: RunVerdict, message: str = "details") -> RunOutcome:
    return RunOutcome(verdict, 1, 1.0, message, 0, 0)


@pytest.mark.parametrize(
    ("verdict", "failure"),
    [
        (RunVerdict.COMPLETED, None),
        (RunVerdict.CANCELLED, None),
        (RunVerdict.NONZERO_EXIT, FailureClass.USER_ERROR),
        (RunVerdict.KILLED_BY_SIGNAL, FailureClass.USER_ERROR),
        (RunVerdict.TIME_LIMIT, FailureClass.TIME_LIMIT),
        (RunVerdict.MEMORY_LIMIT, FailureClass.RESOURCE_LIMIT),
        (RunVerdict.PROCESS_LIMIT, FailureClass.RESOURCE_LIMIT),
        (RunVerdict.OUTPUT_LIMIT, FailureClass.RESOURCE_LIMIT),
        (RunVerdict.LAUNCH_FAILED, FailureClass.PLATFORM_FAULT),
    ],
)
def test_every_runner_verdict_has_a_failure_class(verdict: RunVerdict, failure: FailureClass | None) -> None:
    result = classify_run(outcome(verdict, "run.py exited with status 1"))
    assert result.failure is failure
    assert result.message == "run.py exited with status 1"


def test_a_robot_fault_outranks_what_the_user_program_did() -> None:
    result = classify_run(outcome(RunVerdict.NONZERO_EXIT), robot_fault="velocity limit tripped the safety layer")
    assert result.failure is FailureClass.ROBOT_FAULT
    assert "velocity limit" in result.message
