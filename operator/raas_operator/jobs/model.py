"""The RaasJob model: what a user asks for (spec) and what happened (status).

One model serves every front door (kubectl, the web API, the CLI) and both engines (the local
platform and the Kubernetes operator). The CRD's ``openAPIV3Schema`` is derived from and tested
against these classes.

Phases run forward only::

    Pending → Fetching → Queued → Starting → Running → Uploading → Succeeded
                                                                  ↘ Failed | Cancelled | TimedOut

A job can end early from any non-terminal phase (Failed, Cancelled, TimedOut). A robot or
platform fault sends a job back to Queued once, on another robot (`retry_allowed`).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_TIME_LIMIT_S = 120
MAX_TIME_LIMIT_S = 3600
"""Upper bound of the schema; a platform may configure a lower maximum."""
DEFAULT_ENTRYPOINT = "run.py"
DEFAULT_CONTROL_HZ = 20.0
"""The control rate of a job that asks for none (the original service's)."""
MIN_CONTROL_HZ = 10.0
MAX_CONTROL_HZ = 1000.0
"""Bounds of a control rate: at 10 Hz a boundary still feeds the driver's dead-man (140 ms) in
time; above 1 kHz no robot's control loop keeps up."""

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
"""Kubernetes DNS label: robot names, owner names."""
GIT_REF_PATTERN = r"^[A-Za-z0-9._/@{}+-]{1,255}$"
ENTRYPOINT_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,254}\.py$"
LABEL_KEY_PATTERN = r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
"""Both as in Kubernetes' ``metav1.Condition``."""


class Phase(str, Enum):
    """Where a job is in its life."""

    PENDING = "Pending"
    FETCHING = "Fetching"
    QUEUED = "Queued"
    STARTING = "Starting"
    RUNNING = "Running"
    UPLOADING = "Uploading"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    TIMED_OUT = "TimedOut"

    @property
    def is_terminal(self) -> bool:
        """True for phases a job never leaves."""
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED, Phase.TIMED_OUT})
ON_ROBOT_PHASES = (Phase.STARTING, Phase.RUNNING, Phase.UPLOADING)
"""Phases in which a job holds its robot (and counts against its owner's running quota)."""
_FORWARD_ORDER = [Phase.PENDING, Phase.FETCHING, Phase.QUEUED, Phase.STARTING, Phase.RUNNING, Phase.UPLOADING]


class FailureClass(str, Enum):
    """Why a job did not succeed; decides whether it is retried."""

    USER_ERROR = "UserError"
    """Non-zero exit, exception, bad entrypoint, code that cannot be fetched: never retried."""
    TIME_LIMIT = "TimeLimit"
    RESOURCE_LIMIT = "ResourceLimit"
    """Memory, processes or output size over the limit."""
    ROBOT_FAULT = "RobotFault"
    """Safety trip, agent lost, reset failed: retried once on another robot."""
    PLATFORM_FAULT = "PlatformFault"
    """Store down, launcher crashed: retried once."""

    @property
    def retry_allowed(self) -> bool:
        """Robot and platform faults are retried once; the user's own failures never are."""
        return self in (FailureClass.ROBOT_FAULT, FailureClass.PLATFORM_FAULT)


MAX_ATTEMPTS = 2
"""A job runs at most twice: once, and once more after a robot or platform fault."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GitSource(_Model):
    """Code in a git repository, pinned to a commit once resolved."""

    kind: Literal["git"] = "git"
    url: Annotated[str, Field(min_length=1, max_length=2048, description="Repository URL (https, http, git or ssh).")]
    ref: Annotated[str, Field(pattern=GIT_REF_PATTERN, description="Branch, tag or commit to run.")] = "HEAD"

    @field_validator("url")
    @classmethod
    def _url_has_a_git_scheme(cls, url: str) -> str:
        if not re.match(r"^(https?|git|ssh)://[^\s]+$|^[\w.-]+@[\w.-]+:[^\s]+$", url):
            raise ValueError("url must be an https://, http://, git:// or ssh:// repository URL")
        return url

    @field_validator("ref")
    @classmethod
    def _ref_is_safe(cls, ref: str) -> str:
        if ref.startswith("-") or ".." in ref or ref.endswith((".lock", "/")) or "//" in ref:
            raise ValueError(f"ref {ref!r} is not a valid git ref")
        return ref


class LocalSource(_Model):
    """A folder or archive on the machine of the local platform (local mode only)."""

    kind: Literal["local"] = "local"
    path: Annotated[str, Field(min_length=1, max_length=4096, description="Folder or .tar.gz/.zip archive.")]


class ArchiveSource(_Model):
    """Code uploaded through the web API of a cluster: a normalised ``code.tar.gz`` that the API
    stored under ``uploads/<sha256>.tar.gz`` in the result store before creating the job."""

    kind: Literal["archive"] = "archive"
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the uploaded code.tar.gz.")]


Source = Annotated[GitSource | LocalSource | ArchiveSource, Field(discriminator="kind")]


class RobotRequest(_Model):
    """Which robots may run the job: a named robot, any robot of a type, or a label selector.

    All given conditions must hold; an empty request means any pendulum robot.
    """

    name: Annotated[str | None, Field(pattern=NAME_PATTERN, description="Exactly this robot.")] = None
    type: Annotated[str, Field(pattern=NAME_PATTERN, description="Robot type.")] = "pendulum"
    selector: Annotated[
        dict[str, str], Field(max_length=16, description="Labels the robot must carry (all of them).")
    ] = Field(default_factory=dict)

    @field_validator("selector")
    @classmethod
    def _selector_keys_are_label_keys(cls, selector: dict[str, str]) -> dict[str, str]:
        for key, value in selector.items():
            if not re.match(LABEL_KEY_PATTERN, key):
                raise ValueError(f"selector key {key!r} is not a valid label key")
            if len(value) > 63 or not re.match(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$", value):
                raise ValueError(f"selector value {value!r} is not a valid label value")
        return selector

    def matches(self, robot_name: str, robot_type: str, labels: dict[str, str]) -> bool:
        """True when a robot with these properties satisfies the request."""
        if self.name is not None and robot_name != self.name:
            return False
        if robot_type != self.type:
            return False
        return all(labels.get(key) == value for key, value in self.selector.items())


class JobSpec(_Model):
    """What the user asks for. Immutable once submitted."""

    owner: Annotated[str, Field(pattern=NAME_PATTERN, description="Who submitted the job.")]
    source: Source
    entrypoint: Annotated[str, Field(pattern=ENTRYPOINT_PATTERN, description="Python file to run.")] = (
        DEFAULT_ENTRYPOINT
    )
    robot: RobotRequest = Field(default_factory=RobotRequest)
    time_limit_s: Annotated[int, Field(ge=1, le=MAX_TIME_LIMIT_S, description="Wall-clock limit of the run.")] = (
        DEFAULT_TIME_LIMIT_S
    )
    priority: Annotated[int, Field(ge=-100, le=100, description="Higher runs first.")] = 0
    control_hz: Annotated[
        float,
        Field(
            strict=True,
            ge=MIN_CONTROL_HZ,
            le=MAX_CONTROL_HZ,
            allow_inf_nan=False,
            description="Control rate (Hz), one the robot supports (e.g. 20, 50, 100); the job runs only there.",
        ),
    ] = DEFAULT_CONTROL_HZ

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_stays_in_the_repository(cls, entrypoint: str) -> str:
        parts = entrypoint.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError("entrypoint must be a relative path inside the repository, without '..'")
        return entrypoint


class PhaseChange(_Model):
    """One entry of a job's phase history."""

    phase: Phase
    at: datetime
    reason: str = ""
    message: str = ""


class JobSummary(_Model):
    """Headline figures of a finished run."""

    steps: int = 0
    total_reward: float | None = None
    swing_up_time_s: float | None = None
    deadline_misses: int = 0
    sim_to_real_rmse_rad: float | None = None


class ConditionStatus(str, Enum):
    """Whether a condition holds."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Model):
    """A standard Kubernetes condition (``metav1.Condition``), e.g. ``Scheduled`` or ``ResultsStored``.

    Field names are camelCase on the wire (as every Kubernetes condition), snake_case in Python.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN, description="CamelCase kind.")]
    status: ConditionStatus
    observed_generation: Annotated[
        int | None, Field(ge=0, alias="observedGeneration", description="metadata.generation it was set for.")
    ] = None
    last_transition_time: Annotated[
        datetime, Field(alias="lastTransitionTime", description="When the status last changed.")
    ]
    reason: Annotated[
        str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN, description="CamelCase cause.")
    ]
    message: Annotated[str, Field(max_length=32768, description="Human-readable details.")] = ""


class JobStatus(_Model):
    """What happened so far. Written only by the platform."""

    phase: Phase = Phase.PENDING
    reason: str = ""
    message: str = ""
    failure_class: FailureClass | None = None
    robot: str | None = None
    commit: Annotated[str | None, Field(pattern=r"^[0-9a-f]{40}$")] = None
    requirements: bool = False
    """The code has a requirements.txt, whose wheels were stored while fetching (a cluster's job
    pod installs them before the controller starts)."""
    attempts: Annotated[int, Field(ge=0)] = 0
    excluded_robots: tuple[str, ...] = ()
    """Robots a retry must avoid (where the fault happened)."""
    queue_position: Annotated[int | None, Field(ge=1)] = None
    estimated_start: datetime | None = None
    results_prefix: str | None = None
    results_pending: Annotated[int, Field(ge=0)] = 0
    """Result files kept in the platform's spool because the result store was unreachable; they are
    uploaded when it returns (then this drops to 0). Nothing is lost meanwhile."""
    summary: JobSummary | None = None
    history: tuple[PhaseChange, ...] = ()
    conditions: tuple[Condition, ...] = ()
    """Standard conditions, one per type (``kubectl wait --for=condition=...``)."""

    @model_validator(mode="after")
    def _failure_class_only_when_not_succeeded(self) -> JobStatus:
        if self.failure_class is not None and self.phase in (Phase.SUCCEEDED, *_FORWARD_ORDER):
            raise ValueError(f"a {self.phase.value} job has no failure class")
        return self


class InvalidTransitionError(ValueError):
    """A phase change that the state machine does not allow."""


def utc_now() -> datetime:
    """Timezone-aware now (all timestamps of the model are UTC)."""
    return datetime.now(timezone.utc)


def can_transition(current: Phase, target: Phase) -> bool:
    """Whether the state machine allows `current` → `target`."""
    if current.is_terminal:
        return False
    if target.is_terminal:
        return True
    if target is Phase.QUEUED and current in ON_ROBOT_PHASES:
        return True  # retry after a robot or platform fault
    return _FORWARD_ORDER.index(target) > _FORWARD_ORDER.index(current)


def transition(
    status: JobStatus,
    target: Phase,
    *,
    reason: str = "",
    message: str = "",
    at: datetime | None = None,
    **changes: object,
) -> JobStatus:
    """A new status in phase `target`, with the change appended to the history.

    Raises `InvalidTransitionError` for a change the state machine forbids.
    """
    if not can_transition(status.phase, target):
        raise InvalidTransitionError(f"a job cannot go from {status.phase.value} to {target.value}")
    when = at or utc_now()
    history = (*status.history, PhaseChange(phase=target, at=when, reason=reason, message=message))
    update: dict[str, object] = {"phase": target, "reason": reason, "message": message, "history": history}
    update["conditions"] = _conditions_after(status, target, reason, message, when)
    if target is not Phase.QUEUED:
        update.update(queue_position=None, estimated_start=None)
    update.update(changes)
    return status.model_copy(update=update)


FETCHED, SCHEDULED, FINISHED, SUCCEEDED = "Fetched", "Scheduled", "Finished", "Succeeded"
"""The RaasJob's conditions (``kubectl wait --for=condition=Finished rj/NAME``): its code is fetched;
it holds a robot (False again while a retry waits); it has ended (reason: the final phase); and
whether it succeeded (set when it ends)."""


def _conditions_after(
    status: JobStatus, target: Phase, reason: str, message: str, at: datetime
) -> tuple[Condition, ...]:
    """`status`'s conditions once it moves to `target` (a condition keeps its transition time
    while its status stays the same)."""
    cause = reason if re.fullmatch(CONDITION_REASON_PATTERN, reason or "") else target.value
    changes: list[tuple[str, ConditionStatus, str]] = []
    if target is Phase.QUEUED and status.phase in (Phase.PENDING, Phase.FETCHING):
        changes.append((FETCHED, ConditionStatus.TRUE, cause))
    elif target is Phase.QUEUED:  # back from a robot for its retry
        changes.append((SCHEDULED, ConditionStatus.FALSE, cause))
    elif target is Phase.STARTING:
        changes.append((SCHEDULED, ConditionStatus.TRUE, cause))
    elif target.is_terminal:
        if status.phase in (Phase.PENDING, Phase.FETCHING):
            changes.append((FETCHED, ConditionStatus.FALSE, cause))
        changes.append((FINISHED, ConditionStatus.TRUE, target.value))
        succeeded = ConditionStatus.TRUE if target is Phase.SUCCEEDED else ConditionStatus.FALSE
        changes.append((SUCCEEDED, succeeded, target.value if target is not Phase.FAILED else cause))
    conditions = {condition.type: condition for condition in status.conditions}
    for kind, state, why in changes:
        previous = conditions.get(kind)
        since = previous.last_transition_time if previous is not None and previous.status is state else at
        conditions[kind] = Condition(
            type=kind, status=state, reason=why, message=message[:32768], last_transition_time=since
        )
    return tuple(conditions.values())


def fail(
    status: JobStatus, failure: FailureClass, reason: str, message: str, *, at: datetime | None = None
) -> JobStatus:
    """End a job (or queue its one retry) after a failure of class `failure`.

    Robot and platform faults send the job back to Queued while attempts remain (a robot fault
    excludes the robot where it happened); everything else ends the job: TimedOut for the time
    limit, Failed otherwise.
    """
    if failure.retry_allowed and status.attempts < MAX_ATTEMPTS:
        at_fault = failure is FailureClass.ROBOT_FAULT and status.robot
        excluded = status.excluded_robots + ((status.robot,) if at_fault else ())
        # Only a robot fault excludes the robot: a platform fault's retry may well run on the same one.
        where = " on another robot" if at_fault else ""
        return transition(
            status,
            Phase.QUEUED,
            reason=reason,
            message=f"{message} (retrying once{where})",
            at=at,
            robot=None,
            excluded_robots=excluded,
        )
    target = Phase.TIMED_OUT if failure is FailureClass.TIME_LIMIT else Phase.FAILED
    return transition(status, target, reason=reason, message=message, at=at, failure_class=failure)
