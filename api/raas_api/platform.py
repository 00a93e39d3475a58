"""What the web API needs of a platform: the local one (`raas_api.local.platform.LocalPlatform`,
one process with simulated robots) or a cluster (`raas_api.cluster.platform.ClusterPlatform`,
RaasJobs and Robots through the Kubernetes API). The routes speak only this interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from gym_raas.results.store import ResultStore
from raas_api.local.platform import RobotDetails
from raas_api.stores.base import JobRecord, JobStore
from raas_node.agent.agent import LiveReading
from raas_operator.jobs.model import JobSpec


class Platform(Protocol):
    """A place that runs jobs on robots."""

    @property
    def store(self) -> JobStore:
        """Every job (listing, counting)."""

    @property
    def results(self) -> ResultStore:
        """Where finished jobs' files are."""

    @property
    def running(self) -> bool:
        """Whether it takes and runs jobs now (readiness)."""

    def start(self) -> Any: ...

    def stop(self) -> None: ...

    def submit(self, spec: JobSpec) -> JobRecord:
        """Queue a job; `QuotaExceededError` or `SubmissionRefusedError` when refused."""

    def source_from_upload(self, archive: Path, entrypoint: str) -> dict[str, Any]:
        """The job source for an uploaded archive (the platform owns the file from now on);
        `SubmissionRefusedError` when the archive is not usable code."""

    def get(self, job_id: str) -> JobRecord: ...

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job (its motor stops); returns it as it is after the cancellation."""

    def read_log(self, job_id: str, stream: str) -> bytes:
        """What the job printed to ``stdout`` or ``stderr`` so far."""

    def steps_run(self, record: JobRecord) -> int | None:
        """Control steps the job (as just read) has run so far (None when unknown or not running)."""

    def live_state(self, record: JobRecord) -> LiveReading | None:
        """The running job's (as just read) latest robot reading (None when not available)."""

    def robot_details(self) -> list[RobotDetails]: ...

    def set_maintenance(self, robot: str, on: bool) -> None:
        """Take a robot out of scheduling or put it back; KeyError for an unknown robot."""
