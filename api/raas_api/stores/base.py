"""The job store interface shared by the local platform (SQLite) and the cluster (RaasJobs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from raas_operator.jobs.model import JobSpec, JobStatus, Phase


class JobNotFoundError(KeyError):
    """No job with that id."""


class ConflictError(RuntimeError):
    """The job changed since it was read (optimistic concurrency); read it again and retry."""


@dataclass(frozen=True)
class JobRecord:
    """A stored job."""

    job_id: str
    spec: JobSpec
    status: JobStatus
    created_at: datetime
    version: int | str
    """The optimistic-concurrency token: changes with every status update (SQLite: a counter;
    Kubernetes: the object's resourceVersion, opaque)."""


@dataclass(frozen=True)
class JobPage:
    """One page of a listing, newest first."""

    jobs: tuple[JobRecord, ...]
    next_cursor: str | None
    """Pass to the next `list_jobs` call; None on the last page."""


class JobStore(Protocol):
    """Persistent jobs."""

    def create(self, spec: JobSpec, status: JobStatus | None = None) -> JobRecord:
        """Store a new job (Pending unless a status is given) under a fresh id."""
        ...

    def get(self, job_id: str) -> JobRecord:
        """The job, or `JobNotFoundError`."""
        ...

    def update_status(self, job_id: str, status: JobStatus, expected_version: int | str) -> JobRecord:
        """Replace the status if the job is still at `expected_version`, else `ConflictError`."""
        ...

    def list_jobs(
        self,
        *,
        owner: str | None = None,
        phases: Sequence[Phase] | None = None,
        robot: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """Jobs matching every given filter, newest first, `limit` at a time."""
        ...

    def count_by_owner(self, phases: Sequence[Phase]) -> dict[str, int]:
        """How many jobs each owner has in the given phases (for quotas)."""
        ...
