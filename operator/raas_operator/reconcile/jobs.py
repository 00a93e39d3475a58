"""The operator's decisions for one RaasJob, as a pure function of what it observes.

`reconcile_job(facts)` looks at a job (spec, status, whether it is being deleted), its pods
(`PodView`), the robot it was given and whether its results were collected, and returns the
actions that move it one step along its phases. The kopf handlers only gather the facts and carry
the actions out, so every decision here is unit-tested without a cluster, and a restarted
operator that sees the same facts takes the same decisions (idempotent: pods are named by job and
attempt, statuses are written with optimistic concurrency).

Phases (the job model's): Pending → Fetching (a fetch pod resolves the ref, writes the commit or
its error as its termination message, stores ``code.tar.gz`` and the wheels of its
requirements.txt; uploaded code skips it unless it has a requirements.txt) → Queued (the scheduler, elsewhere,
picks a robot: Starting) → Starting (the run pod is created on the robot's node) → Running →
Uploading (logs and the bundle go to the result store) → Succeeded | Failed | TimedOut |
Cancelled. Deleting a RaasJob cancels it: its pods are deleted, then its finalizer released.
Robot and platform faults go back to Queued once (`fail`), user errors never.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from raas_operator.jobs.model import (
    ArchiveSource,
    FailureClass,
    JobSpec,
    JobStatus,
    JobSummary,
    Phase,
    PhaseChange,
    fail,
    transition,
    utc_now,
)
from raas_operator.pods.builder import fetch_pod_name, job_pod_name
from raas_operator.reconcile.pods import PodKind, PodOutcome, PodView
from raas_operator.robots.model import RobotPhase

WITH_WHEELS = "+wheels"
"""What the fetch pod appends to its report when it stored the wheels of a requirements.txt
(``raas_node.runner.fetch_pod.WITH_WHEELS``)."""

CANCEL_ANNOTATION = "raas.dev/cancel"
"""``"true"`` cancels a job without deleting it (the web API's cancel: the job stays listed as
Cancelled until its TTL). Deleting the RaasJob cancels it too."""


def cancel_requested(metadata: Mapping[str, Any]) -> bool:
    """Whether a RaasJob's metadata carries the cancel request (`CANCEL_ANNOTATION`)."""
    return (metadata.get("annotations") or {}).get(CANCEL_ANNOTATION) == "true"


_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_FETCH_ERROR = re.compile(r"^(?P<reason>[A-Z][A-Za-z]+): (?P<message>.+)$", re.DOTALL)


@dataclass(frozen=True)
class RobotFacts:
    """The robot a job was given, as its Robot object says (None in `JobFacts` if it is gone)."""

    name: str
    phase: RobotPhase
    current_job: str | None = None
    problem: str | None = None
    """What the cluster says is wrong with it beyond its phase (e.g. its Node is NotReady)."""


@dataclass(frozen=True)
class JobFacts:
    """Everything `reconcile_job` decides from."""

    name: str
    spec: JobSpec
    status: JobStatus
    pods: tuple[PodView, ...] = ()
    robot: RobotFacts | None = None
    deleting: bool = False
    """The RaasJob is being deleted (which cancels it)."""
    cancel_requested: bool = False
    """Cancelled on request without being deleted (it stays, Cancelled, until its TTL)."""
    results_collected: bool = False
    """The current attempt's logs and bundle are in the result store."""
    robot_fault: str | None = None
    """What the robot agent reported about the session, when it failed on the robot's side."""
    created_at: datetime | None = None
    """The RaasJob's creation time (the Pending entry of a job applied without a status)."""
    summary: JobSummary | None = None
    """Headline figures of the run, from the robot agent's record of the session."""
    upload_present: bool = False
    """For an archive source: the uploaded code is in the result store."""
    upload_has_requirements: bool = False
    """For an archive source: the uploaded code has a requirements.txt (whose wheels a fetch pod
    resolves: only it may reach a package index)."""


# -- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateFetchPod:
    pod: str


@dataclass(frozen=True)
class CreateRunPod:
    pod: str
    robot: str
    attempt: int


@dataclass(frozen=True)
class DeletePod:
    pod: str


@dataclass(frozen=True)
class CollectResults:
    """Copy the pod's logs into the result store and write the bundle (then `results_collected`)."""

    pod: str


@dataclass(frozen=True)
class UpdateStatus:
    status: JobStatus


@dataclass(frozen=True)
class RecordEvent:
    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class AdoptUpload:
    """Make the uploaded code (`sha256`) the job's ``code.tar.gz``."""

    sha256: str


@dataclass(frozen=True)
class ReleaseFinalizer:
    """Nothing of the job is left in the cluster: let the API server delete it."""


Action = (
    CreateFetchPod
    | CreateRunPod
    | DeletePod
    | CollectResults
    | UpdateStatus
    | RecordEvent
    | AdoptUpload
    | ReleaseFinalizer
)


# -- the decision ------------------------------------------------------------------------------


def reconcile_job(facts: JobFacts) -> list[Action]:
    """The next actions for one job (empty when there is nothing to do until something changes)."""
    if facts.deleting or facts.cancel_requested:
        return _cancel(facts)
    phase = facts.status.phase
    if phase.is_terminal:
        return [DeletePod(pod.name) for pod in facts.pods if pod.outcome is not PodOutcome.GONE]
    handlers = {
        Phase.PENDING: _pending,
        Phase.FETCHING: _fetching,
        Phase.QUEUED: _queued,
        Phase.STARTING: _starting_or_running,
        Phase.RUNNING: _starting_or_running,
        Phase.UPLOADING: _uploading,
    }
    return handlers[phase](facts)


def _pending(facts: JobFacts) -> list[Action]:
    status = facts.status
    if not status.history:  # applied with kubectl: no status yet
        submitted = PhaseChange(phase=Phase.PENDING, at=facts.created_at or utc_now(), reason="Submitted")
        status = status.model_copy(update={"reason": "Submitted", "history": (submitted,)})
    source = facts.spec.source
    if isinstance(source, ArchiveSource):  # uploaded: nothing to fetch
        if not facts.upload_present:
            message = f"the uploaded code {source.sha256[:12]} is not in the result store"
            failed = transition(
                status, Phase.FAILED, reason="UploadMissing", message=message, failure_class=FailureClass.USER_ERROR
            )
            return [UpdateStatus(failed), RecordEvent("UploadMissing", message, warning=True)]
        if facts.upload_has_requirements:
            resolving = transition(
                status, Phase.FETCHING, reason="Fetching", message="resolving the requirements of the uploaded code"
            )
            pod: list[Action] = [] if _fetch_pod(facts) is not None else [CreateFetchPod(fetch_pod_name(facts.name))]
            event = RecordEvent("Fetching", "resolving the requirements of the uploaded code")
            return [AdoptUpload(source.sha256), *pod, UpdateStatus(resolving), event]
        received = transition(status, Phase.FETCHING, reason="Fetching", message="taking the uploaded code")
        queued = transition(received, Phase.QUEUED, reason="Fetched", message=f"uploaded code {source.sha256[:12]}")
        return [AdoptUpload(source.sha256), UpdateStatus(queued), RecordEvent("Queued", "uploaded code received")]
    actions: list[Action] = []
    if _fetch_pod(facts) is None:
        actions.append(CreateFetchPod(fetch_pod_name(facts.name)))
    status = transition(status, Phase.FETCHING, reason="Fetching", message="resolving the ref and fetching")
    return [*actions, UpdateStatus(status), RecordEvent("Fetching", f"fetching {_source(facts.spec)}")]


def _fetching(facts: JobFacts) -> list[Action]:
    pod = _fetch_pod(facts)
    if pod is None:  # lost (e.g. deleted while the operator was down): fetch again
        return [CreateFetchPod(fetch_pod_name(facts.name))]
    if not pod.ended:
        return []
    fetched, _, extra = pod.message.partition(" ")
    commit = fetched if _COMMIT.match(fetched) else None
    if pod.outcome is PodOutcome.SUCCEEDED and (commit or facts.spec.source.kind != "git"):
        requirements = extra.strip() == WITH_WHEELS
        status = transition(facts.status, Phase.QUEUED, reason="Fetched", commit=commit, requirements=requirements)
        note = f"code fetched at {commit[:12]}" if commit else "code fetched"
        if requirements:
            note += ", with the wheels of its requirements.txt"
        return [UpdateStatus(status), DeletePod(pod.name), RecordEvent("Queued", note)]
    reason, message = _fetch_failure(pod)
    status = transition(
        facts.status, Phase.FAILED, reason=reason, message=message, failure_class=FailureClass.USER_ERROR
    )
    return [UpdateStatus(status), DeletePod(pod.name), RecordEvent(reason, message, warning=True)]


def _queued(facts: JobFacts) -> list[Action]:
    # Waiting for the scheduler; pods of an earlier attempt (a retry) are cleaned up.
    return [DeletePod(pod.name) for pod in facts.pods if pod.outcome is not PodOutcome.GONE]


def _starting_or_running(facts: JobFacts) -> list[Action]:
    status = facts.status
    robot = status.robot or ""
    attempt = max(1, status.attempts)
    pod = _run_pod(facts, attempt)
    problem = _robot_problem(facts)
    if problem is not None:
        actions: list[Action] = [DeletePod(pod.name)] if pod is not None else []
        failed = fail(status, FailureClass.ROBOT_FAULT, "RobotFault", problem)
        return [*actions, UpdateStatus(failed), RecordEvent("RobotFault", problem, warning=True)]
    if pod is None:
        if status.phase is Phase.RUNNING:  # the pod vanished under a running job: not the user's doing
            message = "the job's pod disappeared while running"
            failed = fail(status, FailureClass.PLATFORM_FAULT, "PodLost", message)
            return [UpdateStatus(failed), RecordEvent("PodLost", message, warning=True)]
        return [CreateRunPod(job_pod_name(facts.name, attempt), robot, attempt)]
    if pod.ended:
        uploading = status
        if status.phase is Phase.STARTING:
            uploading = transition(uploading, Phase.RUNNING, reason="Running", robot=robot)
        uploading = transition(uploading, Phase.UPLOADING, reason="Uploading")
        return [UpdateStatus(uploading), CollectResults(pod.name)]
    if pod.outcome is PodOutcome.RUNNING and status.phase is Phase.STARTING:
        running = transition(status, Phase.RUNNING, reason="Running", message=f"on {robot}", robot=robot)
        return [UpdateStatus(running), RecordEvent("Running", f"running on {robot}")]
    return []


def _uploading(facts: JobFacts) -> list[Action]:
    attempt = max(1, facts.status.attempts)
    pod = _run_pod(facts, attempt)
    if not facts.results_collected:  # (a pod already gone leaves no log, but the job still ends)
        return [CollectResults(pod.name if pod is not None else job_pod_name(facts.name, attempt))]
    failure, reason, message = classify_run_pod(pod, facts.robot_fault, facts.spec.time_limit_s)
    status = facts.status.model_copy(update={"summary": facts.summary}) if facts.summary else facts.status
    if failure is None:
        final = transition(status, Phase.SUCCEEDED, reason=reason, message=message)
    else:
        final = fail(status, failure, reason, message)
    actions: list[Action] = [UpdateStatus(final), RecordEvent(final.reason, message, warning=failure is not None)]
    if pod is not None:
        actions.append(DeletePod(pod.name))
    return actions


def _cancel(facts: JobFacts) -> list[Action]:
    actions: list[Action] = [DeletePod(pod.name) for pod in facts.pods if pod.outcome is not PodOutcome.GONE]
    if not facts.status.phase.is_terminal:
        why = "the RaasJob was deleted" if facts.deleting else "cancelled on request"
        cancelled = transition(facts.status, Phase.CANCELLED, reason="Cancelled", message=why)
        actions += [UpdateStatus(cancelled), RecordEvent("Cancelled", why)]
    if facts.deleting and not facts.pods:
        actions.append(ReleaseFinalizer())
    return actions


# -- reading facts -----------------------------------------------------------------------------


def classify_run_pod(
    pod: PodView | None, robot_fault: str | None, time_limit_s: int
) -> tuple[FailureClass | None, str, str]:
    """(failure class or None, reason, message) of a finished run pod; the agent's word first."""
    if robot_fault:
        return FailureClass.ROBOT_FAULT, "RobotFault", robot_fault
    if pod is None:
        return FailureClass.PLATFORM_FAULT, "PodLost", "the job's pod is gone and its outcome unknown"
    if pod.outcome is PodOutcome.SUCCEEDED:
        return None, "Completed", "the controller finished"
    if pod.reason == "DeadlineExceeded":
        return (
            FailureClass.TIME_LIMIT,
            "TimeLimit",
            f"the controller ran longer than its time limit of {time_limit_s} s",
        )
    if pod.reason == "OOMKilled":
        return FailureClass.RESOURCE_LIMIT, "MemoryLimit", "the controller ran out of memory"
    if pod.reason in ("Evicted", "NodeLost", "Preempting", "Shutdown"):
        return FailureClass.PLATFORM_FAULT, pod.reason, f"the pod was stopped by the cluster ({pod.reason})"
    detail = f": {pod.message.splitlines()[-1]}" if pod.message else ""
    return FailureClass.USER_ERROR, "NonZeroExit", f"the controller exited with status {pod.exit_code}{detail}"


def _robot_problem(facts: JobFacts) -> str | None:
    robot = facts.robot
    if robot is None:
        return f"robot {facts.status.robot} is gone"
    if robot.problem is not None:
        return f"robot {robot.name} went out of service: {robot.problem}"
    if robot.phase is RobotPhase.OFFLINE:
        return f"robot {robot.name} went offline (no heartbeat)"
    if robot.phase is RobotPhase.UNHEALTHY:
        return f"robot {robot.name} became unhealthy"
    return None


def _fetch_pod(facts: JobFacts) -> PodView | None:
    return next((pod for pod in facts.pods if pod.kind is PodKind.FETCH and pod.outcome is not PodOutcome.GONE), None)


def _run_pod(facts: JobFacts, attempt: int) -> PodView | None:
    return next(
        (
            pod
            for pod in facts.pods
            if pod.kind is PodKind.RUN and pod.attempt == attempt and pod.outcome is not PodOutcome.GONE
        ),
        None,
    )


def _fetch_failure(pod: PodView) -> tuple[str, str]:
    if pod.reason == "DeadlineExceeded":
        return "FetchTimeout", "fetching the code took too long"
    matched = _FETCH_ERROR.match(pod.message)
    if matched:
        return matched["reason"], matched["message"].strip()
    return "FetchFailed", pod.message or f"the fetch pod failed ({pod.reason or 'no reason given'})"


def _source(spec: JobSpec) -> str:
    source = spec.source
    return f"{source.url}@{source.ref}" if source.kind == "git" else "an uploaded archive"


def session_record_of(record: dict[str, object] | None, robot: str | None) -> dict[str, object] | None:
    """The agent's session record if it is the current attempt's, i.e. from the robot the job is
    on now (an earlier attempt's, from the robot it left, is not); None otherwise."""
    if not record:
        return None
    recorded = record.get("robot")
    return record if recorded is None or recorded == robot else None


def session_facts(record: dict[str, object] | None) -> tuple[JobSummary | None, str | None]:
    """Summary and robot fault from the agent's record: the session failed on the robot's side
    (``agent_error``), or the robot turned the job away before it began (``refused``)."""
    if not record:
        return None, None
    if record.get("outcome") == "refused":
        message = str(record.get("message") or "no reason given")
        return None, f"robot {record.get('robot') or '?'} refused the session: {message}"

    def number(key: str) -> float:
        value = record.get(key)
        return float(value) if isinstance(value, (int, float)) else 0.0

    summary = JobSummary(
        steps=int(number("steps")), total_reward=number("total_reward"), deadline_misses=int(number("deadline_misses"))
    )
    fault = str(record.get("message") or "robot agent failure") if record.get("outcome") == "agent_error" else None
    return summary, fault


def expired(status: JobStatus, now: datetime, ttl: timedelta) -> bool:
    """Whether a finished job has outlived its TTL (its RaasJob may be deleted; results stay)."""
    if not status.phase.is_terminal or not status.history:
        return False
    return now - status.history[-1].at >= ttl
