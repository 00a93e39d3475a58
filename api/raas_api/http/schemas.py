"""The HTTP contract of ``/api/v1``: request and response bodies.

Every error is ``{"detail": "<one clear sentence>"}`` with a 4xx status (5xx only for a bug).
Times are ISO 8601 UTC. A job's id is a DNS label (``job-<10 hex>``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from raas_operator.jobs.model import (
    DEFAULT_CONTROL_HZ,
    ENTRYPOINT_PATTERN,
    MAX_CONTROL_HZ,
    MIN_CONTROL_HZ,
    ArchiveSource,
    FailureClass,
    GitSource,
    JobSummary,
    LocalSource,
    Phase,
    PhaseChange,
    RobotRequest,
)


def _source_kind(value: Any) -> str:
    """A source's ``kind``; a source without one is git, as `GitSource`'s default says."""
    kind = value.get("kind", "git") if isinstance(value, dict) else getattr(value, "kind", "git")
    return str(kind)


SubmittedSource = Annotated[
    Annotated[GitSource, Tag("git")] | Annotated[LocalSource, Tag("local")] | Annotated[ArchiveSource, Tag("archive")],
    Discriminator(
        _source_kind,
        custom_error_type="source_kind",
        custom_error_message="source.kind must be 'git' (the default), 'local' or 'archive'",
    ),
]
"""A job's source as submitted: ``kind`` picks the type, and may be left out for git."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobSubmission(_Body):
    """``POST /api/v1/jobs``: run code from a git repository (or, in local mode, a local folder)."""

    source: SubmittedSource
    entrypoint: Annotated[
        str, Field(pattern=ENTRYPOINT_PATTERN, description="Python file to run, in the repository.")
    ] = "run.py"
    robot: RobotRequest = Field(default_factory=RobotRequest)
    time_limit_s: Annotated[
        int | None, Field(ge=1, description="Wall-clock limit; the server's default if omitted.")
    ] = None
    priority: Annotated[int, Field(ge=-100, le=100)] = 0
    control_hz: Annotated[
        float,
        Field(
            strict=True,
            ge=MIN_CONTROL_HZ,
            le=MAX_CONTROL_HZ,
            allow_inf_nan=False,
            description="Control rate (Hz), one the robots run at (see each robot's supported_control_hz).",
        ),
    ] = DEFAULT_CONTROL_HZ


class SourceCheck(_Body):
    """``POST /api/v1/jobs/check``: can this source be fetched, and does it have the entrypoint?"""

    source: GitSource
    entrypoint: Annotated[str, Field(pattern=ENTRYPOINT_PATTERN)] = "run.py"


class SourceCheckResult(BaseModel):
    ok: bool
    commit: str | None = None
    """The resolved commit when ``ok``."""
    message: str


class JobView(BaseModel):
    """A job as clients see it."""

    id: str
    owner: str
    phase: Phase
    reason: str
    message: str
    failure_class: FailureClass | None
    created_at: datetime
    source: dict[str, Any]
    entrypoint: str
    time_limit_s: int
    priority: int
    control_hz: float
    """The job's control rate (Hz)."""
    robot_request: RobotRequest
    robot: str | None
    commit: str | None
    attempts: int
    queue_position: int | None
    estimated_start: datetime | None
    steps: int | None
    """Control steps run so far (while Running), else None."""
    summary: JobSummary | None
    results_pending: int
    history: tuple[PhaseChange, ...]


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; null on the last page."""


class ResultFileView(BaseModel):
    name: str
    content_type: str
    size: int | None
    url: str
    """Download link: a presigned S3 URL, or this API's ``/api/v1/jobs/{id}/results/{name}``."""


class ResultManifest(BaseModel):
    job: str
    phase: Phase
    results_pending: int
    files: list[ResultFileView]


class TrajectoryView(BaseModel):
    """The recorded run at the controller's steps, as columns of equal length."""

    job: str
    time_s: list[float]
    theta_rad: list[float]
    """Angle from upright (0 = up, ±π = hanging)."""
    theta_dot_rad_per_s: list[float]
    command: list[float]
    reward: list[float]
    simulated_theta_rad: list[float] | None
    """The sim-to-real replay at the same instants (the robot's calibrated simulator)."""
    summary: dict[str, Any]


class LiveState(BaseModel):
    """One ``state`` event of ``GET /api/v1/jobs/{id}/live`` (Server-Sent Events)."""

    job: str
    phase: Phase
    queue_position: int | None
    steps: int | None
    time_s: float | None
    theta_rad: float | None
    theta_dot_rad_per_s: float | None
    command: float | None


class RobotViewOut(BaseModel):
    """A robot as clients see it."""

    name: str
    type: str
    state: str
    ready: bool
    schedulable: bool
    reasons: list[str]
    """Why it is not Ready, if it is not."""
    current_job: str | None
    temperature_celsius: float | None
    last_reset: dict[str, Any] | None
    calibration: dict[str, Any]
    labels: dict[str, str]
    supported_control_hz: list[float]
    """Control rates (Hz) the robot runs jobs at."""


class MaintenanceRequest(_Body):
    on: bool


class Identity(BaseModel):
    owner: str
    role: Literal["user", "admin"]
