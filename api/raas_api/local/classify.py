"""How the local platform classifies the end of a run (the cluster reads pod status instead)."""

from __future__ import annotations

from dataclasses import dataclass

from raas_node.runner.launch import RunOutcome, RunVerdict
from raas_operator.jobs.model import FailureClass

_BY_VERDICT: dict[RunVerdict, tuple[FailureClass, str]] = {
    RunVerdict.NONZERO_EXIT: (FailureClass.USER_ERROR, "NonZeroExit"),
    RunVerdict.KILLED_BY_SIGNAL: (FailureClass.USER_ERROR, "KilledBySignal"),
    RunVerdict.TIME_LIMIT: (FailureClass.TIME_LIMIT, "TimeLimit"),
    RunVerdict.MEMORY_LIMIT: (FailureClass.RESOURCE_LIMIT, "MemoryLimit"),
    RunVerdict.PROCESS_LIMIT: (FailureClass.RESOURCE_LIMIT, "ProcessLimit"),
    RunVerdict.OUTPUT_LIMIT: (FailureClass.RESOURCE_LIMIT, "OutputLimit"),
    RunVerdict.LAUNCH_FAILED: (FailureClass.PLATFORM_FAULT, "LaunchFailed"),
}


@dataclass(frozen=True)
class Classification:
    """The failure class of a run, or None when it succeeded (or was cancelled)."""

    failure: FailureClass | None
    reason: str
    message: str


def classify_run(outcome: RunOutcome, robot_fault: str | None = None) -> Classification:
    """Failure class of a finished run; a fault reported by the robot agent takes precedence.

    A robot fault (safety trip, agent lost, reset failed) is never the user's fault in the
    accounting: it is retried once on another robot.
    """
    if robot_fault:
        return Classification(FailureClass.ROBOT_FAULT, "RobotFault", robot_fault)
    if outcome.verdict in (RunVerdict.COMPLETED, RunVerdict.CANCELLED):
        return Classification(None, outcome.verdict.value, outcome.message)
    failure, reason = _BY_VERDICT[outcome.verdict]
    return Classification(failure, reason, outcome.message)
