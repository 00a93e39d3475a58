"""The operator's scheduler: the whole queue in one round, run when something it depends on changes.

Each round reads the queued RaasJobs and the Robots from the operator's cache (`runtime.cache`,
fed by the watch streams: a round costs no read of the API server), asks the scheduler core for
a decision, and acts on it: a rejected job fails at once with the reason; an assigned one books
its robot (a patch guarded by the Robot's resourceVersion) and only then moves to Starting (a
status patch guarded by the job's resourceVersion; if that fails the booking is undone). Two
operators running rounds at once (a peering hand-over) cannot double-book a robot: the loser of
either patch backs off, and the newer versions the watch brings trigger the next round.

A freed robot's next job is the round's first business: the assignments of a round are written
at once (`DISPATCHERS` threads; each books a robot no other assignment books and starts a job no
other one starts, so they cannot race each other), before rejections and queue positions, and
the round's Events are posted by a recorder thread afterwards (an Event is best effort; it must
not hold up the next robot).

Queue positions and start estimates are written back so that ``kubectl get rj`` shows them, but
not at every shift of the queue (with a thousand jobs waiting, every start would rewrite every
job behind it): a job's position is written when it reaches the head (`EXACT_POSITIONS`), when it
moved by at least a tenth, or when it was last written `POSITION_REFRESH_S` ago; and a round
stops writing positions as soon as something asks for the next round, so that writing them
never delays a robot's next job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

from raas_operator.jobs.model import ON_ROBOT_PHASES, FailureClass, JobStatus, Phase, transition
from raas_operator.reconcile.jobs import cancel_requested
from raas_operator.reconcile.schedule import QueuedJob, plan
from raas_operator.runtime.cache import ClusterCache
from raas_operator.runtime.cluster import Cluster, ConflictError, EventRecorder
from raas_operator.scheduling.core import Quotas

log = logging.getLogger(__name__)


EXACT_POSITIONS = 10
"""Positions up to this one are always written exactly."""
POSITION_REFRESH_S = 30.0
"""Any stale position is written at least this often."""
DISPATCHERS = 8
"""Assignments of one round written at once (each books its robot, then starts its job)."""


def position_worth_writing(old: int | None, new: int, age_s: float) -> bool:
    """Whether a queued job's position `new` (written `age_s` ago as `old`) should be written now."""
    if old == new:
        return False
    if old is None or new <= EXACT_POSITIONS or age_s >= POSITION_REFRESH_S:
        return True
    return abs(new - old) * 10 >= old


class SchedulerLoop:
    """Schedules the queued RaasJobs of `cache`; `wake` asks for a round, `run_safely` runs one."""

    def __init__(
        self,
        cluster: Cluster,
        cache: ClusterCache,
        *,
        on_started: Callable[[str], None] | None = None,
        on_transition: Callable[[JobStatus, JobStatus], None] | None = None,
        events: EventRecorder | None = None,
    ) -> None:
        self.cluster = cluster
        self.cache = cache
        self.on_started = on_started
        """Called with each job moved to Starting (the controller creates its pod at once)."""
        self.on_transition = on_transition
        """Called with (before, after) for every status this loop writes (the fleet metrics)."""
        self.rounds = 0
        self._own_events = events is None
        self.events = events or EventRecorder(cluster)
        """Where the round's Events go (posted after the dispatch, by the recorder's thread)."""
        self._wake = threading.Event()
        self._failing = False
        self._positions_written: dict[str, float] = {}
        self._dispatchers = ThreadPoolExecutor(max_workers=DISPATCHERS, thread_name_prefix="raas-dispatch")

    def wake(self) -> None:
        """Something a round depends on changed: run one soon."""
        self._wake.set()

    def wait(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for a `wake`; whether one came (and consume it)."""
        woken = self._wake.wait(timeout_s)
        self._wake.clear()
        return woken

    def run_safely(self) -> int:
        """`run_once`, logging (once per outage) instead of raising."""
        try:
            started = self.run_once()
        except Exception:
            if not self._failing:
                log.exception("scheduling round failed; retrying")
            self._failing = True
            return 0
        self._failing = False
        return started

    def run_once(self, now: datetime | None = None) -> int:
        """One round; returns how many jobs were started."""
        now = now or datetime.now(timezone.utc)
        settings = self.cluster.settings
        documents: dict[str, dict[str, Any]] = {}
        queued: list[QueuedJob] = []
        running: Counter[str] = Counter()
        for job in self.cache.jobs():
            metadata = job["metadata"]
            if metadata.get("deletionTimestamp") or cancel_requested(metadata):
                continue  # being cancelled
            spec, status = self.cache.parsed(job)
            if status.phase is Phase.QUEUED:
                name = job["metadata"]["name"]
                documents[name] = job
                queued.append(QueuedJob(name, spec, status, created_at(job["metadata"], now)))
            elif status.phase in ON_ROBOT_PHASES:
                running[spec.owner] += 1
        self.rounds += 1
        if not queued:
            return 0
        robots = [(cached.entry, cached.resource_version) for cached in self.cache.robots()]
        quotas = Quotas(settings.max_running_per_owner, settings.max_queued_per_owner)
        timeout = timedelta(seconds=settings.heartbeat_timeout_s)
        decision = plan(queued, [entry for entry, _ in robots], running, quotas, now, timeout)
        statuses = {job.name: job.status for job in queued}
        specs = {job.name: job.spec for job in queued}
        versions = {entry.robot.name: version for entry, version in robots}
        dispatches = [
            (documents[a.job_id], statuses[a.job_id], specs[a.job_id].control_hz, a.robot, versions[a.robot])
            for a in decision.assignments
        ]
        started = sum(self._dispatch_all(dispatches))
        for rejection in decision.rejections:
            failed = transition(
                statuses[rejection.job_id], Phase.FAILED, reason=rejection.reason, message=rejection.message,
                failure_class=FailureClass.USER_ERROR,
            )  # fmt: skip
            if self._patch(documents[rejection.job_id], failed):
                self.events.record(documents[rejection.job_id], rejection.reason, rejection.message, warning=True)
        for entry in decision.queue:
            if self._wake.is_set():
                break  # a robot or a job changed: dispatching comes first, the rest of the positions next round
            status = statuses[entry.job_id]
            estimate = (
                None
                if entry.estimated_start_s is None
                else datetime.fromtimestamp(entry.estimated_start_s, timezone.utc)
            )
            written = self._positions_written.get(entry.job_id, float("-inf"))
            if position_worth_writing(status.queue_position, entry.position, time.monotonic() - written):
                update = {"queue_position": entry.position, "estimated_start": estimate}
                if self._patch(documents[entry.job_id], status.model_copy(update=update)):
                    self._positions_written[entry.job_id] = time.monotonic()
        for name in set(self._positions_written) - set(statuses):
            del self._positions_written[name]
        return started

    def _dispatch_all(self, dispatches: list[tuple[dict[str, Any], JobStatus, float, str, str]]) -> list[bool]:
        """`_dispatch` each (job, status, control rate, robot, robot version), at once: each is
        two writes guarded by their own objects' versions, to a robot and a job no other one
        touches, so a robot freed with nine others waits for its own writes, not theirs."""
        if len(dispatches) <= 1:
            return [self._dispatch(*dispatch) for dispatch in dispatches]
        return list(self._dispatchers.map(lambda dispatch: self._dispatch(*dispatch), dispatches))

    def _dispatch(self, job: dict[str, Any], status: JobStatus, control_hz: float, robot: str, version: str) -> bool:
        """Book `robot` for `job`, then move the job to Starting (undoing the booking if that
        fails) and hand it on (`on_started`); whether it started."""
        name = job["metadata"]["name"]
        try:
            booked = self.cluster.book(robot, name, version, attempt=status.attempts + 1, control_hz=control_hz)
        except ConflictError:
            return False  # someone else booked it first: next round
        if booked is not None:
            self.cache.put_robot(booked)
        starting = transition(
            status, Phase.STARTING, reason="Scheduled", message=f"on {robot}",
            robot=robot, attempts=status.attempts + 1, queue_position=None, estimated_start=None,
        )  # fmt: skip
        if not self._patch(job, starting):
            self.cluster.unbook(robot, name, status.attempts + 1)
            return False
        if self.on_started is not None:
            self.on_started(name)
        self.events.record(job, "Scheduled", f"on robot {robot}")
        return True

    def stop(self) -> None:
        """End the dispatch threads; post the Events still waiting (unless `events` was given:
        then its owner stops it)."""
        self._dispatchers.shutdown(wait=True)
        if self._own_events:
            self.events.stop()

    def _patch(self, job: dict[str, Any], status: JobStatus) -> bool:
        before = self.cache.parsed(job)[1]
        try:
            patched = self.cluster.patch_status(job["metadata"]["name"], status, job["metadata"]["resourceVersion"])
        except ConflictError:
            return False
        self.cache.put_job(patched)
        if self.on_transition is not None:
            self.on_transition(before, status)
        return True


def created_at(metadata: dict[str, Any], default: datetime) -> datetime:
    """A Kubernetes object's creation time (`default` when it has none)."""
    created = metadata.get("creationTimestamp")
    return datetime.fromisoformat(str(created).replace("Z", "+00:00")) if created else default
