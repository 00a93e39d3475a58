"""The operator's scheduling loop: the whole queue, every `OperatorSettings.reconcile_interval_s`.

Each round lists the namespace's RaasJobs and the Robots once, asks the scheduler core for a
decision, and acts on it: a rejected job fails at once with the reason; an assigned one books
its robot (a patch guarded by the Robot's resourceVersion) and only then moves to Starting (a
status patch guarded by the job's resourceVersion; if that fails the booking is undone). Queue
positions and start estimates are written when they change. Two operators running this loop
at once (peering hand-over) cannot double-book a robot: the loser of either patch backs off.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

from raas_operator.jobs.model import ON_ROBOT_PHASES, FailureClass, JobSpec, JobStatus, Phase, transition
from raas_operator.reconcile.schedule import QueuedJob, plan
from raas_operator.runtime.cluster import Cluster, ConflictError
from raas_operator.scheduling.core import Quotas

log = logging.getLogger(__name__)


class SchedulerLoop:
    """Schedules queued RaasJobs in a daemon thread (`start`/`stop`), or one round at a time."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raas-scheduler", daemon=True)

    def start(self) -> SchedulerLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.cluster.settings.reconcile_interval_s):
            try:
                self.run_once()
                failing = False
            except Exception:
                if not failing:
                    log.exception("scheduling round failed; retrying")
                failing = True

    def run_once(self, now: datetime | None = None) -> int:
        """One round; returns how many jobs were started."""
        now = now or datetime.now(timezone.utc)
        settings = self.cluster.settings
        documents: dict[str, dict[str, Any]] = {}
        queued: list[QueuedJob] = []
        running: Counter[str] = Counter()
        for job in self.cluster.jobs():
            if job["metadata"].get("deletionTimestamp"):
                continue
            status = JobStatus.model_validate(job.get("status") or {})
            spec = JobSpec.model_validate(job["spec"])
            if status.phase is Phase.QUEUED:
                name = job["metadata"]["name"]
                documents[name] = job
                queued.append(QueuedJob(name, spec, status, created_at(job["metadata"], now)))
            elif status.phase in ON_ROBOT_PHASES:
                running[spec.owner] += 1
        self.rounds += 1
        if not queued:
            return 0
        robots = self.cluster.robots()
        quotas = Quotas(settings.max_running_per_owner, settings.max_queued_per_owner)
        timeout = timedelta(seconds=settings.heartbeat_timeout_s)
        decision = plan(queued, [entry for entry, _ in robots], running, quotas, now, timeout)
        statuses = {job.name: job.status for job in queued}
        for rejection in decision.rejections:
            failed = transition(
                statuses[rejection.job_id], Phase.FAILED, reason=rejection.reason, message=rejection.message,
                failure_class=FailureClass.USER_ERROR,
            )  # fmt: skip
            if self._patch(documents[rejection.job_id], failed):
                self.cluster.event(documents[rejection.job_id], rejection.reason, rejection.message, warning=True)
        versions = {entry.robot.name: version for entry, version in robots}
        started = 0
        for assignment in decision.assignments:
            job = documents[assignment.job_id]
            try:
                self.cluster.book(assignment.robot, assignment.job_id, versions[assignment.robot])
            except ConflictError:
                continue  # someone else booked it first: next round
            status = statuses[assignment.job_id]
            starting = transition(
                status, Phase.STARTING, reason="Scheduled", message=f"on {assignment.robot}",
                robot=assignment.robot, attempts=status.attempts + 1, queue_position=None, estimated_start=None,
            )  # fmt: skip
            if not self._patch(job, starting):
                self.cluster.book(assignment.robot, None)
                continue
            self.cluster.event(job, "Scheduled", f"on robot {assignment.robot}")
            started += 1
        for entry in decision.queue:
            status = statuses[entry.job_id]
            estimate = (
                None
                if entry.estimated_start_s is None
                else datetime.fromtimestamp(entry.estimated_start_s, timezone.utc)
            )
            if entry.position != status.queue_position:
                update = {"queue_position": entry.position, "estimated_start": estimate}
                self._patch(documents[entry.job_id], status.model_copy(update=update))
        return started

    def _patch(self, job: dict[str, Any], status: JobStatus) -> bool:
        try:
            self.cluster.patch_status(job["metadata"]["name"], status, job["metadata"]["resourceVersion"])
        except ConflictError:
            return False
        return True


def created_at(metadata: dict[str, Any], default: datetime) -> datetime:
    """A Kubernetes object's creation time (`default` when it has none)."""
    created = metadata.get("creationTimestamp")
    return datetime.fromisoformat(str(created).replace("Z", "+00:00")) if created else default
