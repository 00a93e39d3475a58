"""The operator's engine, driven by what the watch streams report (kopf's handlers only feed it).

* **Events, not timers.** A change of a RaasJob, of one of its pods or of a Robot puts the jobs it
  concerns on the work queue (`runtime.workqueue`); a worker looks at each one: facts from the
  cache (`runtime.cache`), decisions from the pure reconciler (`reconcile.jobs`), actions through
  `runtime.cluster`. A Queued job is the scheduler's, not a worker's.
* **The scheduler** (`runtime.scheduler`) runs a round when something it depends on changes (a
  job became Queued, a robot was freed or changed) and at least every `reconcile_interval_s`.
* **Synced first.** kopf's watches of jobs, pods and Robots list independently, so at start the
  jobs can arrive before the robots or pods they depend on: a scheduler seeing no robot would
  reject every waiting job, and a look missing a running job's pod would call it lost. So the
  clock first lists the Robots and the operator's pods into the cache (`sync`); until then the
  scheduler does not run and looks read their facts afresh. The Robots are listed again every
  `RESYNC_ALL_S`, which also drops any a missed deletion left behind.
* **Time** is the only thing no event reports: every `reconcile_interval_s` the jobs whose next
  step depends on the clock (on a robot, whose heartbeat may go stale; Uploading, which waits for
  the agent's session record) are looked at again, every other unfinished job every
  `RESYNC_ALL_S` (a safety net for a failed action), and finished jobs past their TTL are deleted.
  These looks read the job and its pods afresh from the API server rather than from the cache:
  a standby operator's watches may be paused by kopf's peering while its clock runs on, and a
  look from a stale cache could, say, start a pod for a job that has long finished.

* **Nearest a robot first.** Looks at jobs on a robot, and at jobs whose fetch pod changed (the
  next step is the queue, where a freed robot may wait), go ahead of routine looks; the look
  that creates a just-started job's pod goes ahead of them all. Events are posted by a thread of
  their own (`EventRecorder`): best effort, they hold up no look and no round.

The cost of a look is memory reads plus the writes it decides on, so the operator's load on the
API server grows with what happens, not with how many jobs wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from gym_raas.results.store import StoreUnavailableError
from raas_operator.jobs.model import ON_ROBOT_PHASES, ArchiveSource, JobSpec, JobStatus, Phase
from raas_operator.metrics import FleetMetrics, FleetState, RobotSample, queued_since
from raas_operator.reconcile.jobs import (
    Action,
    AdoptUpload,
    CollectResults,
    CreateFetchPod,
    CreateRunPod,
    DeletePod,
    JobFacts,
    RecordEvent,
    RobotFacts,
    UpdateStatus,
    cancel_requested,
    expired,
    reconcile_job,
    session_facts,
    session_record_of,
)
from raas_operator.reconcile.schedule import effective_phase
from raas_operator.runtime.cache import ClusterCache
from raas_operator.runtime.cluster import Cluster, ConflictError, EventRecorder
from raas_operator.runtime.scheduler import SchedulerLoop, created_at
from raas_operator.runtime.workqueue import WorkQueue

log = logging.getLogger(__name__)

RESYNC_ALL_S = 30.0
"""Every unfinished job is looked at least this often, whatever the events said."""

CLOCK_PHASES = frozenset({*ON_ROBOT_PHASES, Phase.UPLOADING})
"""Phases whose next step can depend on the clock alone."""


URGENT_POD_PHASES = frozenset({*ON_ROBOT_PHASES, Phase.FETCHING})
"""Phases in which a change of a job's pod is looked at ahead of routine looks: its robot waits,
or (its fetch pod ended) it is about to join the queue, where a freed robot may be waiting for
it; a thousand new jobs' first looks must not hold it up."""


def _phase(body: dict[str, Any]) -> Phase:
    return Phase((body.get("status") or {}).get("phase") or Phase.PENDING.value)


class JobController:
    """Reconciles the RaasJobs of `cluster`'s namespace from `cache`; `start`, then feed it events."""

    def __init__(self, cluster: Cluster, cache: ClusterCache | None = None, *, workers: int = 4) -> None:
        self.cluster = cluster
        self.cache = cache or ClusterCache()
        self.queue = WorkQueue(self._look, workers=workers)
        self.events = EventRecorder(cluster)
        """Posts the Events of every look and round, off their paths (Events are best effort)."""
        self.fleet = FleetMetrics(state=self.fleet_state)
        """The fleet metrics (`raas_operator.metrics`): every status this operator writes, and the
        queue and robots as the cache has them at each scrape."""
        self.scheduler = SchedulerLoop(
            cluster,
            self.cache,
            on_started=lambda job: self.queue.add(job, first=True),  # its pod: a robot waits for it
            on_transition=self.fleet.observe_transition,
            events=self.events,
        )
        self._last_full_resync = time.monotonic()
        self._fresh: set[str] = set()
        self._fresh_lock = threading.Lock()
        self._stop = threading.Event()
        self.synced = threading.Event()
        """Set once the Robots and the operator's pods have been listed into the cache (`sync`)."""
        self._clock = threading.Thread(target=self.run, args=(self._stop.is_set,), name="raas-clock", daemon=True)

    def start(self) -> JobController:
        self.queue.start()
        self._clock.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._clock.join(timeout=10)
        self.scheduler.stop()
        self.queue.stop()
        self.events.stop()

    # -- what the watch streams report -------------------------------------------------------------

    def job_changed(self, body: dict[str, Any], *, deleted: bool = False) -> None:
        name = body["metadata"]["name"]
        if deleted:
            self.cache.drop_job(name)
            self.scheduler.wake()
            return
        previous = self.cache.job(name)
        self.cache.put_job(body)
        phase = _phase(body)
        if previous is None or _phase(previous) is not phase:
            self.scheduler.wake()  # a job joined or left the queue, or an owner's running count changed
        metadata = body["metadata"]
        cancelling = cancel_requested(metadata)
        if (
            metadata.get("deletionTimestamp")
            or (cancelling and not phase.is_terminal)
            or not (phase is Phase.QUEUED or phase.is_terminal)
        ):
            self.queue.add(name, urgent=phase in ON_ROBOT_PHASES)

    def pod_changed(self, body: dict[str, Any], *, deleted: bool = False) -> None:
        job = self.cache.drop_pod(body) if deleted else self.cache.put_pod(body)
        if job is not None:  # on a robot, or fetched (its next step is the queue): ahead of new jobs
            cached = self.cache.job(job)
            self.queue.add(job, urgent=cached is not None and _phase(cached) in URGENT_POD_PHASES)

    def robot_changed(self, body: dict[str, Any], *, deleted: bool = False) -> None:
        name = body["metadata"]["name"]
        previous = self.cache.robot(name)
        if deleted:
            self.cache.drop_robot(name)
            changed = True
        else:
            kept = self.cache.put_robot(body)  # (None: unreadable, so gone)
            phase = None if kept is None else kept.entry.robot.status.phase
            changed = previous is None or phase is None or previous.entry.robot.status.phase != phase
        self.scheduler.wake()
        if changed:  # a job on a robot that went Offline or Unhealthy fails over at once
            for job in self.cache.jobs_on(name):
                self.queue.add(job)

    def node_changed(self, body: dict[str, Any], *, deleted: bool = False) -> None:
        """A robot Node's readiness: when it changes, its robots' jobs are looked at (a job on a
        node gone NotReady fails over) and the scheduler runs (its robots left or joined service)."""
        if self.cache.put_node(body, deleted=deleted):
            self.scheduler.wake()
            for robot in self.cache.robots_on(body["metadata"]["name"]):
                for job in self.cache.jobs_on(robot):
                    self.queue.add(job, urgent=True)

    # -- the clock -----------------------------------------------------------------------------------

    def sync(self) -> None:
        """List the Robots and the operator's pods into the cache (the watches keep them fresh)."""
        for pod in self.cluster.managed_pods():
            self.cache.put_pod(pod)
        self.cache.replace_robots(*self.cluster.list_robots())
        if not self.synced.is_set():
            self.synced.set()
            log.info("the operator's cache is synced; scheduling starts")

    def run(self, stopped: Callable[[], bool]) -> None:
        """Schedule and keep time until `stopped()` (`start` runs this in a thread)."""
        interval = self.cluster.settings.reconcile_interval_s
        next_tick = 0.0
        while not stopped():
            if not self.synced.is_set():
                try:
                    self.sync()
                except Exception:  # the API server is down or refused: the clock goes on
                    log.exception("the operator cannot list Robots and pods yet; retrying")
                    self._stop.wait(min(interval, 1.0))
                    continue
            woken = self.scheduler.wait(timeout_s=min(interval, 0.25))
            now_s = time.monotonic()
            due = now_s >= next_tick
            if woken or due:
                self.scheduler.run_safely()
            if due:
                try:
                    self.tick(datetime.now(timezone.utc))
                except Exception:  # the API server is down or refused: the clock goes on
                    log.exception("the operator's clock could not look at every job; next tick")
                next_tick = now_s + interval

    def tick(self, now: datetime) -> None:
        """Look again at jobs that wait on the clock; delete finished jobs past their TTL."""
        ttl = timedelta(seconds=self.cluster.settings.finished_ttl_s)
        everything = time.monotonic() - self._last_full_resync >= RESYNC_ALL_S
        if everything:
            self._last_full_resync = time.monotonic()
            self.cache.replace_robots(*self.cluster.list_robots())
        for body in self.cache.jobs():
            name = body["metadata"]["name"]
            _, status = self.cache.parsed(body)  # (parsed once per version: a tick reads every job)
            if status.phase.is_terminal:
                if expired(status, now, ttl):
                    self.cluster.delete_job(name)
            elif status.phase in CLOCK_PHASES or (everything and status.phase is not Phase.QUEUED):
                with self._fresh_lock:
                    self._fresh.add(name)
                self.queue.add(name)

    # -- one look at one job ---------------------------------------------------------------------------

    def _look(self, name: str) -> None:
        with self._fresh_lock:
            fresh = name in self._fresh or not self.synced.is_set()
            self._fresh.discard(name)
        job = self.cluster.job(name) if fresh else self.cache.job(name)
        if job is not None:
            self.reconcile(job, fresh=fresh)

    def reconcile(self, job: dict[str, Any], *, deleting: bool = False, fresh: bool = True) -> list[Action]:
        """One look at one job: facts → decisions → actions (`fresh`: its pods read from the API
        server, else from the cache)."""
        handle = self.cluster
        metadata = job["metadata"]
        name = metadata["name"]
        spec = JobSpec.model_validate(job["spec"])
        cancelling = cancel_requested(metadata)
        status = JobStatus.model_validate(job.get("status") or {})
        now = datetime.now(timezone.utc)
        if not deleting and expired(status, now, timedelta(seconds=handle.settings.finished_ttl_s)):
            handle.delete_job(name)
            return []
        record = (
            session_record_of(handle.agent_session(name), status.robot) if status.phase is Phase.UPLOADING else None
        )
        summary, robot_fault = session_facts(record)
        collected = status.phase is Phase.UPLOADING and handle.results_collected(name, status.attempts)
        if collected and record is None:  # the agent uploads its record a heartbeat after the session
            waited = now - status.history[-1].at if status.history else timedelta(0)
            collected = waited.total_seconds() >= handle.settings.session_upload_wait_s
        upload_present = (
            status.phase is Phase.PENDING
            and isinstance(spec.source, ArchiveSource)
            and handle.upload_present(spec.source.sha256)
        )
        upload_requirements = (
            upload_present
            and isinstance(spec.source, ArchiveSource)
            and handle.upload_has_requirements(spec.source.sha256)
        )
        facts = JobFacts(
            name=name,
            spec=spec,
            status=status,
            pods=handle.pods_of(name) if fresh else self.cache.pods_of(name),
            robot=self._robot_facts(status.robot, now) if status.phase in ON_ROBOT_PHASES else None,
            deleting=deleting or bool(metadata.get("deletionTimestamp")),
            cancel_requested=cancelling,
            results_collected=collected,
            created_at=created_at(metadata, now),
            summary=summary,
            robot_fault=robot_fault,
            upload_present=upload_present,
            upload_has_requirements=upload_requirements,
        )
        actions = reconcile_job(facts)
        if record is not None:
            final = next(
                (a.status for a in actions if isinstance(a, UpdateStatus) and a.status.phase.is_terminal), None
            )
            if final is not None:  # before the job shows its end: its metadata is complete by then
                handle.complete_metadata(name, record, final)
        self._apply(job, actions)
        return actions

    def _apply(self, job: dict[str, Any], actions: list[Action]) -> None:
        handle = self.cluster
        name = job["metadata"]["name"]
        for action in actions:
            if isinstance(action, CreateFetchPod):
                handle.create_fetch_pod(job)
            elif isinstance(action, CreateRunPod):
                handle.create_run_pod(job, action.robot, action.attempt)
            elif isinstance(action, DeletePod):
                handle.delete_pod(action.pod)
            elif isinstance(action, CollectResults):
                handle.collect_results(job, action.pod)
            elif isinstance(action, AdoptUpload):
                handle.adopt_upload(name, action.sha256)
            elif isinstance(action, UpdateStatus):
                before = JobStatus.model_validate(job.get("status") or {})
                try:
                    job = {**job, **handle.patch_status(name, action.status, job["metadata"]["resourceVersion"])}
                except ConflictError:
                    return  # changed meanwhile: its newer version is on its way through the watch
                self.cache.put_job(job)
                self.fleet.observe_transition(before, action.status)
                if action.status.phase.is_terminal or action.status.phase is Phase.QUEUED:
                    self._free_robot(name, action.status.attempts)
                if action.status.phase is Phase.QUEUED and before.phase in CLOCK_PHASES:
                    self._discard_session_record(name)
            elif isinstance(action, RecordEvent):
                self.events.record(job, action.reason, action.message, warning=action.warning)

    def fleet_state(self) -> FleetState:
        """The queue, the robots and the results waiting for upload, as the cache has them."""
        now = datetime.now(timezone.utc)
        timeout = timedelta(seconds=self.cluster.settings.heartbeat_timeout_s)
        waiting: list[float] = []
        pending = 0
        for body in self.cache.jobs():
            _, status = self.cache.parsed(body)
            pending += status.results_pending
            if status.phase is Phase.QUEUED:
                waiting.append(queued_since(status, created_at(body["metadata"], now).timestamp()))
        robots = []
        for cached in self.cache.robots():
            robot, heard_at = cached.entry.robot, cached.entry.heard_at
            heartbeat = heard_at if heard_at is not None else robot.status.last_heartbeat
            robots.append(
                RobotSample(
                    robot.name,
                    effective_phase(robot, now, timeout, heard_at),
                    heartbeat.timestamp() if heartbeat is not None else None,
                )
            )
        return FleetState(queued_since_s=waiting, robots=robots, results_pending_files=pending)

    def _robot_facts(self, robot: str | None, now: datetime) -> RobotFacts | None:
        """The job's robot as the reconciler judges it: its Node's trouble counts against it once
        it has lasted `node_not_ready_toleration_s` (until then the robot is taken at its agent's
        word; the clock's looks at the job come back to it)."""
        cached = self.cache.robot(robot, as_reported=True) if robot else None
        entry = cached.entry if cached is not None else (self.cluster.robot(robot) if robot else None)
        if entry is None:
            return None
        settings = self.cluster.settings
        phase = effective_phase(entry.robot, now, timedelta(seconds=settings.heartbeat_timeout_s), entry.heard_at)
        trouble = self.cache.node_trouble(cached) if cached is not None else None
        problem = None
        if trouble is not None:
            if now - trouble.since >= timedelta(seconds=settings.node_not_ready_toleration_s):
                problem = trouble.message
            else:
                log.debug("robot %s: %s; its job is left to run for now", entry.robot.name, trouble.message)
        return RobotFacts(entry.robot.name, phase, entry.robot.status.current_job, problem)

    def _discard_session_record(self, job: str) -> None:
        """A retry: its attempt's record is still to come (best effort: the record names its robot,
        so only a retry on the same robot could mistake the old one for its own)."""
        try:
            self.cluster.discard_session_record(job)
        except StoreUnavailableError as error:
            log.warning("could not remove the last session record of %s before its retry: %s", job, error)

    def _free_robot(self, job: str, attempt: int) -> None:
        """Free the robot booked for `attempt` of `job` (only that booking: `Cluster.unbook`)."""
        for cached in self.cache.robots():
            if cached.entry.booked_job == job:
                freed = self.cluster.unbook(cached.entry.robot.name, job, attempt)
                if freed is not None:
                    self.cache.put_robot(freed)
                self.scheduler.wake()
