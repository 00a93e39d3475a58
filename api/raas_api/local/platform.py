"""`LocalPlatform`: the whole of RaaS in one process, with simulated robots.

Jobs live in a SQLite store; a dispatcher thread moves them through their phases:

* Pending → Fetching: a worker fetches the code (local folder/archive or git), stores
  ``code.tar.gz`` with the results and queues the job (or fails it with the fetch error).
* Queued → Starting: the scheduler core assigns Ready robots (fair share, quotas).
* Starting → Running: the robot's agent is told to expect the job; the runner launches the
  entrypoint with the agent's socket and the session token, under the job's limits.
* Running → Uploading → Succeeded | Failed | TimedOut | Cancelled: the agent's recording, the
  outputs, plots and metadata go to the result store; failures are classified, robot and
  platform faults retried once on another robot.

Restarting the platform on the same data folder finds interrupted jobs: fetches are redone,
runs are failed as platform faults (and so retried once); queued jobs stay queued.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from gym_raas.backends.base import CONTROL_HZ_ENV
from gym_raas.params import PendulumParams
from gym_raas.results.layout import ResultFile, job_prefix, result_key
from gym_raas.results.store import ResultNotFoundError, ResultStore, StoreUnavailableError
from raas_api.local.bundle import write_bundle
from raas_api.local.classify import Classification, classify_run
from raas_api.local.fleet import fleet_state
from raas_api.local.results import S3Settings, SpoolFlusher, open_result_store, pending_results
from raas_api.local.robots import LocalRobot, RobotKind, calibration_cache_dir, make_robots
from raas_api.stores.base import ConflictError, JobNotFoundError, JobRecord
from raas_api.stores.sqlite import SqliteJobStore
from raas_node.agent.agent import SUPPORTED_CONTROL_HZ, AgentConfig, AgentState, LiveReading, RobotAgent
from raas_node.runner.container import instance_label, reap_containers, run_in_container
from raas_node.runner.fetch import FetchError, fetch_git, fetch_local, resolve_ref
from raas_node.runner.image import ensure_runtime_image
from raas_node.runner.launch import (
    RunLimits,
    RunOutcome,
    RunRequest,
    RunVerdict,
    check_process_isolation,
    run_entrypoint,
)
from raas_node.runner.requirements import build_wheelhouse, install_offline
from raas_node.runner.sandbox_uids import reap_sandbox_leftovers
from raas_node.runner.warm_pool import ContainerPool
from raas_operator.jobs.model import (
    DEFAULT_CONTROL_HZ,
    ON_ROBOT_PHASES,
    ArchiveSource,
    FailureClass,
    JobSpec,
    JobStatus,
    JobSummary,
    LocalSource,
    Phase,
    PhaseChange,
    fail,
    transition,
)
from raas_operator.metrics import FleetMetrics, FleetState
from raas_operator.scheduling.core import Quotas, RobotView, WaitingJob, admit, rate_key, schedule

log = logging.getLogger(__name__)

ACTIVE_PHASES = (Phase.PENDING, Phase.FETCHING, Phase.QUEUED, Phase.STARTING, Phase.RUNNING, Phase.UPLOADING)


class Isolation(str, Enum):
    """How users' programs are contained."""

    PROCESS = "process"
    """A subprocess with resource limits and its own uid (nothing to install)."""
    CONTAINER = "container"
    """A podman container: no network, read-only root, no capabilities, non-root, cgroup limits."""


class SubmissionRefusedError(ValueError):
    """A job the platform will not take; the message says why."""


class QuotaExceededError(SubmissionRefusedError):
    """The owner has as many jobs waiting as the quota allows."""


@dataclass(frozen=True)
class RobotDetails:
    """A robot as people see it."""

    name: str
    type: str
    labels: dict[str, str]
    state: str
    ready: bool
    schedulable: bool
    reasons: tuple[str, ...]
    current_job: str | None
    temperature_celsius: float | None
    last_reset_ok: bool | None
    last_reset_duration_s: float | None
    calibration: dict[str, Any]
    supported_control_hz: tuple[float, ...] = (DEFAULT_CONTROL_HZ,)
    """Control rates the robot runs jobs at."""


@dataclass(frozen=True)
class PlatformConfig:
    data_dir: Path
    robots: int = 3
    robot_params: PendulumParams = field(default_factory=PendulumParams)
    robot_kind: RobotKind = RobotKind.SIM
    """``sim`` drivers, or a pigpio driver on a virtual rig per robot."""
    supported_control_hz: tuple[float, ...] = SUPPORTED_CONTROL_HZ
    """Control rates every robot offers (a job's ``control_hz`` must be one of them)."""
    quotas: Quotas = field(default_factory=lambda: Quotas(max_running_per_owner=2, max_queued_per_owner=100))
    max_time_limit_s: int = 600
    run_limits: RunLimits = field(default_factory=RunLimits)
    python_executable: str = sys.executable
    tick_s: float = 0.05
    """How often the dispatcher looks for Pending jobs to fetch (and is woken at once by a submission)."""
    reschedule_s: float = 1.0
    """How often the queue is scheduled again without a reason (robot health changing on its own,
    queue positions): a robot freed, a job fetched, a cancel or a maintenance change schedules at once."""
    s3: S3Settings | None = None
    """Keep results in S3/MinIO (spooled in ``data_dir/spool`` while it is down); None: ``data_dir/results``."""
    spool_flush_interval_s: float = 2.0
    isolation: Isolation = Isolation.PROCESS
    container_image: str | None = None
    """Image for ``isolation=container``; built (once per machine, cached) at start when None."""
    warm_containers: bool = True
    """With ``isolation=container``: keep a started container waiting per robot (`ContainerPool`),
    so a free robot's next controller starts in tens of milliseconds; False: a ``podman run`` per job."""
    max_concurrent_fetches: int = 4
    """Fetch workers at a time (a burst of submissions waits as Pending, not as a thread each)."""
    pip_index_arguments: tuple[str, ...] = ()
    """Extra pip arguments for resolving users' requirements.txt (e.g. ``--index-url``); pip's own config otherwise."""


class LocalPlatform:
    """Submit, list, get, cancel and wait for jobs on simulated robots."""

    def __init__(self, config: PlatformConfig, results: ResultStore | None = None) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.data_dir.chmod(0o700)  # jobs, tokens, uploads, recordings, results: never readable by jobs
        if config.isolation is Isolation.PROCESS:  # refuse now, in one sentence, rather than fail every job
            check_process_isolation(config.python_executable, ("gym_raas",), hidden_paths=(config.data_dir,))
        self.store = SqliteJobStore(config.data_dir / "jobs.db")
        self.results = results or open_result_store(config.data_dir, config.s3)
        self._flusher = SpoolFlusher(self.results, self._results_uploaded, interval_s=config.spool_flush_interval_s)
        self.agents: dict[str, RobotAgent] = {}
        self.robot_parts: dict[str, LocalRobot] = {}
        self._busy: dict[str, str] = {}
        self._image = config.container_image
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._schedule_due = threading.Event()
        """Something changed what can run (a robot freed, a job queued, a maintenance change): the
        next dispatcher round schedules (`_wake` alone, a submission, only starts fetches)."""
        self._scheduled_at = 0.0
        self._dispatcher: threading.Thread | None = None
        self._sockets: Path | None = None
        self._pool: ContainerPool | None = None
        self._owner_label: str | None = None
        self.fleet = FleetMetrics(state=self.fleet_state)
        """Queue, finished jobs, robots, spooled results (`raas_operator.metrics`); each status change feeds it."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalPlatform:
        if self.config.isolation is Isolation.CONTAINER and self._image is None:
            self._image = ensure_runtime_image()
        sockets = self._sockets = private_socket_folder()
        # Distinct robots: a rig of its own per robot, whose fitted calibration (cached for the
        # machine) is what its driver reports; all are fitted before the first agent starts.
        prefix = "sim" if self.config.robot_kind is RobotKind.SIM else "rig"
        names = [f"{prefix}-{index}" for index in range(1, self.config.robots + 1)]
        robots = make_robots(names, self.config.robot_kind, self.config.robot_params, cache_dir=calibration_cache_dir())
        for name, robot in robots.items():
            config = AgentConfig(
                name,
                sockets / f"{name}.sock",
                self.config.data_dir / "recordings" / name,
                supported_control_hz=self.config.supported_control_hz,
            )
            self.robot_parts[name] = robot
            agent = RobotAgent(robot.driver, config)
            agent.on_idle = self._reschedule  # a robot free again is scheduled at once, not at the next tick
            self.agents[name] = agent.start()
        # What a previous server on this data folder left running dies before its jobs are retried.
        reaped = reap_sandbox_leftovers()
        if self._image is not None:
            label = self._owner_label = instance_label(self.config.data_dir)
            reaped += reap_containers(label)
        if self._image is not None and self.config.warm_containers:
            self._pool = ContainerPool(self._image, owner=label, max_job_s=self.config.max_time_limit_s)
            for name, agent in self.agents.items():
                self._pool.prepare(name, limits=self.config.run_limits, agent_socket=agent.config.socket_path)
        if reaped:
            log.warning("killed %d processes or containers a previous run of the platform left behind", reaped)
        self._recover()
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="raas-dispatcher", daemon=True)
        self._dispatcher.start()
        self._flusher.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for worker in list(self._workers.values()):
            worker.cancel.set()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=10)
        for worker in list(self._workers.values()):
            worker.thread.join(timeout=30)
        self._flusher.stop()
        if self._pool is not None:
            self._pool.close()
        for agent in self.agents.values():
            agent.stop()
        for robot in self.robot_parts.values():
            robot.close()
        if self._sockets is not None:
            shutil.rmtree(self._sockets, ignore_errors=True)
        self.store.close()

    @property
    def running(self) -> bool:
        """Whether the dispatcher is moving jobs along."""
        return self._dispatcher is not None and self._dispatcher.is_alive() and not self._stop.is_set()

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the Python API ----------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobRecord:
        """Queue a job (Pending); refused over quota, beyond the maximum time limit, or at a control
        rate no robot of the platform runs at."""
        if spec.time_limit_s > self.config.max_time_limit_s:
            raise SubmissionRefusedError(
                f"time_limit_s {spec.time_limit_s} is above this platform's maximum of {self.config.max_time_limit_s}"
            )
        offered = sorted({rate_key(hz) for hz in self.config.supported_control_hz})
        if rate_key(spec.control_hz) not in offered:
            raise SubmissionRefusedError(
                f"control_hz {spec.control_hz:g} is not a rate this platform's robots run at; "
                f"ask for one of {', '.join(f'{hz:g}' for hz in offered)} Hz"
            )
        queued = self.store.count_by_owner([Phase.PENDING, Phase.FETCHING, Phase.QUEUED])
        admission = admit(spec.owner, queued, self.config.quotas)
        if not admission.admitted:
            raise QuotaExceededError(admission.message)
        submitted = PhaseChange(phase=Phase.PENDING, at=datetime.now(timezone.utc), reason="Submitted")
        record = self.store.create(spec, JobStatus(reason="Submitted", history=(submitted,)))
        self._wake.set()
        return record

    def source_from_upload(self, archive: Path, entrypoint: str) -> dict[str, Any]:
        """An uploaded archive is a local source: the fetch step unpacks and checks it."""
        return LocalSource(path=str(archive)).model_dump()

    def get(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job; a running one has its controller and the motor stopped at once."""
        record = self.store.get(job_id)
        if record.status.phase.is_terminal:
            return record
        with self._lock:
            worker = self._workers.get(job_id)
            event = None if worker is None else worker.cancel
            robot = self._busy_robot(job_id)
        if event is not None:
            event.set()
            if robot is not None:
                self.agents[robot].cancel(job_id)
            return self.wait(job_id, timeout_s=60)
        return self._update(job_id, lambda status: transition(status, Phase.CANCELLED, reason="Cancelled"))

    def wait(self, job_id: str, timeout_s: float | None = None) -> JobRecord:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            record = self.store.get(job_id)
            if record.status.phase.is_terminal or (deadline is not None and time.monotonic() > deadline):
                return record
            time.sleep(0.1)

    def steps_run(self, record: JobRecord) -> int | None:
        """Control steps the job has run so far on its robot (None when not running)."""
        with self._lock:
            robot = self._busy_robot(record.job_id)
        return None if robot is None else self.agents[robot].session_steps(record.job_id)

    def live_state(self, record: JobRecord) -> LiveReading | None:
        """The latest reading of a running job's robot session (None when not running)."""
        with self._lock:
            robot = self._busy_robot(record.job_id)
        return None if robot is None else self.agents[robot].live_state(record.job_id)

    def read_log(self, job_id: str, stream: str) -> bytes:
        """What the job wrote to ``stdout`` or ``stderr`` so far (the stored file once finished)."""
        if stream not in ("stdout", "stderr"):
            raise ValueError("stream must be stdout or stderr")
        record = self.store.get(job_id)
        stored = result_key(job_id, ResultFile.STDOUT if stream == "stdout" else ResultFile.STDERR)
        if record.status.phase.is_terminal or record.status.phase is Phase.UPLOADING:
            with contextlib.suppress(ResultNotFoundError, StoreUnavailableError):
                return self.results.get_bytes(stored)
        live = self._workdir(job_id) / f"{stream}.txt"
        try:
            return live.read_bytes()
        except FileNotFoundError:
            return b""

    def robot_details(self) -> list[RobotDetails]:
        """Every robot's state, health, current job and calibration (for people, not the scheduler)."""
        with self._lock:
            busy = dict(self._busy)
        details = []
        for name, agent in self.agents.items():
            health = agent.health()
            details.append(
                RobotDetails(
                    name=name,
                    type="pendulum",
                    labels={"raas.dev/robot-kind": self.config.robot_kind.value},
                    state=agent.state.value,
                    ready=health.ready and name not in busy,
                    schedulable=agent.state not in (AgentState.FAULT, AgentState.MAINTENANCE),
                    reasons=tuple(health.reasons),
                    current_job=busy.get(name),
                    temperature_celsius=health.motor_temperature_celsius,
                    last_reset_ok=health.last_reset_ok,
                    last_reset_duration_s=health.last_reset_duration_s,
                    calibration=agent.params.to_dict(),
                    supported_control_hz=agent.supported_control_hz,
                )
            )
        return details

    def set_maintenance(self, robot: str, on: bool) -> None:
        """Take a robot out of scheduling (its running job finishes), or put it back (after a reset)."""
        if robot not in self.agents:
            raise KeyError(robot)
        self.agents[robot].set_maintenance(on)
        self._reschedule()

    def fleet_state(self) -> FleetState:
        """The queue, the robots and the spooled results now (read by the fleet metrics at each scrape)."""
        with self._lock:
            booked = list(self._busy)
        return fleet_state(self.store, self.agents, booked, self.results, time.time())

    def robots(self) -> list[RobotView]:
        views = []
        for name, agent in self.agents.items():
            health = agent.health()
            busy = name in self._busy
            views.append(
                RobotView(
                    name=name,
                    ready=health.ready and not busy,
                    schedulable=agent.state not in (AgentState.FAULT, AgentState.MAINTENANCE),
                    free_at_s=time.time() + (60.0 if busy else 0.0),
                    control_hz=agent.supported_control_hz,
                )
            )
        return views

    # -- dispatching -------------------------------------------------------------------------

    def _reschedule(self) -> None:
        """Have the dispatcher schedule the queue now (something changed what can run)."""
        self._schedule_due.set()
        self._wake.set()

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._dispatch_once()
            except Exception:
                log.exception("dispatcher failure")
            self._wake.wait(timeout=self.config.tick_s)
            self._wake.clear()

    def _dispatch_once(self) -> None:
        """Start fetches for Pending jobs; schedule the queue when something changed what can run
        or `reschedule_s` has passed (a round over thousands of queued jobs is not free, and a
        submission changes neither the robots nor what is Queued)."""
        self._start_fetches()
        now = time.monotonic()
        if self._schedule_due.is_set() or now - self._scheduled_at >= self.config.reschedule_s:
            self._schedule_due.clear()
            self._scheduled_at = now
            self._schedule_queue()

    def _start_fetches(self) -> None:
        with self._lock:
            fetching = sum(1 for worker in self._workers.values() if worker.robot is None)
        room = self.config.max_concurrent_fetches - fetching
        if room > 0:
            pending = self.store.list_jobs(phases=[Phase.PENDING, Phase.FETCHING], limit=500).jobs
            for record in sorted(pending, key=lambda record: record.created_at)[:room]:
                if record.job_id not in self._workers:
                    self._spawn(record.job_id, lambda job_id, _cancel: self._fetch(job_id))

    def _schedule_queue(self) -> None:
        queued = self.store.list_jobs(phases=[Phase.QUEUED], limit=500).jobs
        if not queued:
            return
        running = self.store.count_by_owner(ON_ROBOT_PHASES)
        waiting = [
            WaitingJob.of(record.job_id, record.spec, record.status, record.created_at.timestamp()) for record in queued
        ]
        decision = schedule(waiting, self.robots(), running, self.config.quotas, now_s=time.time())
        for rejection in decision.rejections:
            self._end_as_user_error(rejection.job_id, rejection.reason, rejection.message)
        for assignment in decision.assignments:
            self._start(assignment.job_id, assignment.robot)
        estimates = {entry.job_id: entry for entry in decision.queue}
        stranded = None
        for record in queued:
            entry = estimates.get(record.job_id)
            if entry is None:
                continue
            start = entry.estimated_start_s
            message = record.status.message
            if start is None:  # no robot that could run it is in service: say so, not just "Queued"
                stranded = stranded or self._out_of_service()
                message = f"{WAITING_FOR_SERVICE} ({stranded}); it starts when one is back"
            elif message.startswith(WAITING_FOR_SERVICE):
                message = ""
            if record.status.queue_position != entry.position or record.status.message != message:
                update = {
                    "queue_position": entry.position,
                    "estimated_start": None if start is None else datetime.fromtimestamp(start, timezone.utc),
                    "message": message,
                }
                with contextlib.suppress(ConflictError):  # changed meanwhile: next round
                    self.store.update_status(record.job_id, record.status.model_copy(update=update), record.version)

    def _out_of_service(self) -> str:
        """Each robot and its state (``sim-1 fault, sim-2 maintenance``), for a job none of them takes."""
        return ", ".join(f"{name} {agent.state.value}" for name, agent in self.agents.items()) or "no robots"

    def _start(self, job_id: str, robot: str) -> None:
        with self._lock:
            self._busy[robot] = job_id

        def starting(status: JobStatus) -> JobStatus:
            return transition(
                status, Phase.STARTING, reason="Scheduled", message=f"on {robot}", robot=robot,
                attempts=status.attempts + 1,
            )  # fmt: skip

        self._update(job_id, starting)
        self._spawn(job_id, lambda job, cancel: self._run(job, robot, cancel), robot=robot)

    def _end_as_user_error(self, job_id: str, reason: str, message: str) -> None:
        def failed(status: JobStatus) -> JobStatus:
            return transition(
                status, Phase.FAILED, reason=reason, message=message, failure_class=FailureClass.USER_ERROR
            )

        self._update(job_id, failed)

    def _spawn(self, job_id: str, work: Callable[[str, threading.Event], None], robot: str | None = None) -> None:
        """Run `work(job_id, cancel)` in a thread of its own: a fetch (`robot` None) or a run on `robot`.

        A worker cleans up only what is its own: a job's fetch worker may still be finishing when
        the dispatcher has already started the job's run, whose cancel event and robot booking
        must survive the fetch worker's exit.
        """
        worker = _Worker(robot=robot)

        def run() -> None:
            try:
                work(job_id, worker.cancel)
            except Exception as error:
                message = f"platform failure: {error}"

                cancelled = worker.cancel.is_set()

                def platform_fault(status: JobStatus) -> JobStatus:
                    if status.phase.is_terminal:  # ended meanwhile (cancelled, say): that end stands
                        return status
                    if cancelled:  # the user asked for its end: no retry of a broken way out
                        return transition(status, Phase.CANCELLED, reason="Cancelled")
                    return fail(status, FailureClass.PLATFORM_FAULT, "PlatformFault", message)

                if cancelled:
                    log.warning("job %s: its work broke while being cancelled: %s", job_id, error)
                else:
                    log.exception("job %s: platform failure", job_id)
                with contextlib.suppress(JobNotFoundError):
                    self._update(job_id, platform_fault)
            finally:
                with self._lock:
                    if self._workers.get(job_id) is worker:
                        del self._workers[job_id]
                    if robot is not None and self._busy.get(robot) == job_id:
                        del self._busy[robot]
                self._reschedule()  # a job fetched (now Queued) or a robot freed

        worker.thread = threading.Thread(target=run, name=f"job-{job_id}", daemon=True)
        with self._lock:
            self._workers[job_id] = worker
        worker.thread.start()

    def _fetch(self, job_id: str) -> None:
        record = self.store.get(job_id)
        if record.status.phase not in (Phase.PENDING, Phase.FETCHING):
            return  # fetched meanwhile: the dispatcher saw it before its worker finished
        if record.status.phase is Phase.PENDING:
            record = self._update(job_id, lambda status: transition(status, Phase.FETCHING, reason="Fetching"))
        workdir = self._workdir(job_id)
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        spec = record.spec
        try:
            if isinstance(spec.source, LocalSource):
                snapshot = fetch_local(Path(spec.source.path), spec.entrypoint, workdir)
            elif isinstance(spec.source, ArchiveSource):
                raise FetchError("SourceNotSupported", "archive sources are for a cluster; submit the folder instead")
            else:
                commit = resolve_ref(spec.source.url, spec.source.ref)
                snapshot = fetch_git(spec.source.url, commit, spec.entrypoint, workdir)
            if snapshot.requirements_sha256 is not None:
                build_wheelhouse(
                    snapshot.directory / "requirements.txt",
                    snapshot.requirements_sha256,
                    self._requirements_cache,
                    index_arguments=self.config.pip_index_arguments,
                )
        except FetchError as error:
            self._end_as_user_error(job_id, error.reason, str(error))
            return
        self.results.put_file(result_key(job_id, ResultFile.CODE), snapshot.archive, ResultFile.CODE.content_type)
        requirements = snapshot.requirements_sha256 is not None
        self._update(
            job_id,
            lambda status: transition(
                status, Phase.QUEUED, reason="Fetched", commit=snapshot.commit, requirements=requirements
            ),
        )

    def _run(self, job_id: str, robot: str, cancel: threading.Event) -> None:
        record = self.store.get(job_id)
        agent = self.agents[robot]
        workdir = self._workdir(job_id)
        try:
            python_path = self._installed_requirements(workdir / "code")
        except FetchError as error:
            self._end_as_user_error(job_id, error.reason, str(error))
            return
        token = agent.expect(job_id, control_hz=record.spec.control_hz)
        self._update(job_id, lambda status: transition(status, Phase.RUNNING, reason="Running", robot=robot))
        started = datetime.now(timezone.utc)
        limits = dataclasses.replace(self.config.run_limits, time_limit_s=float(record.spec.time_limit_s))
        launch: Callable[[RunRequest, threading.Event], RunOutcome] = run_entrypoint
        if self._pool is not None:
            launch = functools.partial(self._pool.run, slot=robot)
        elif self._image is not None:
            launch = functools.partial(run_in_container, image=self._image, owner=self._owner_label)
        outcome = launch(
            RunRequest(
                code_dir=workdir / "code",
                entrypoint=record.spec.entrypoint,
                scratch_dir=workdir / "scratch",
                stdout_path=workdir / "stdout.txt",
                stderr_path=workdir / "stderr.txt",
                limits=limits,
                environment={
                    "RAAS_AGENT_SOCKET": str(agent.config.socket_path),
                    "RAAS_SESSION_TOKEN": token,
                    CONTROL_HZ_ENV: f"{record.spec.control_hz:g}",
                },
                python_path=python_path,
                python_executable=self.config.python_executable,
                required_modules=("gym_raas",),
                hidden_paths=(self.config.data_dir,),
            ),
            cancel,
        )
        session = agent.end_job(job_id)
        self._update(job_id, lambda status: transition(status, Phase.UPLOADING, reason="Uploading"))
        robot_fault = None
        if session is not None and session.outcome == "agent_error":
            robot_fault = session.message
        refusal = agent.refusal(job_id) if session is None else None
        if refusal is not None:  # the job came for the robot and was turned away: not its fault
            robot_fault = f"robot {robot} refused the session: {refusal.message}"
        agent.forget_refusal(job_id)
        classification = classify_run(outcome, robot_fault)
        metadata: dict[str, Any] = {
            "job": job_id,
            "owner": record.spec.owner,
            "source": record.spec.source.model_dump(),
            "commit": record.status.commit,
            "entrypoint": record.spec.entrypoint,
            "robot": robot,
            "calibration": agent.params.to_dict(),
            "started": started.isoformat(),
            "finished": datetime.now(timezone.utc).isoformat(),
            "exit_code": outcome.exit_code,
            "verdict": outcome.verdict.value,
            "message": classification.message,
            "deadline_misses": None if session is None else session.deadline_misses,
            "safety_events": None if session is None else session.safety_events,
        }
        summary = write_bundle(
            self.results,
            job_id,
            recording=None if session is None else session.trajectory_path,
            stdout=workdir / "stdout.txt",
            stderr=workdir / "stderr.txt",
            params=agent.params,
            metadata=metadata,
        )
        self._finish(job_id, outcome.verdict, classification, summary, session)

    def _finish(
        self, job_id: str, verdict: RunVerdict, classification: Classification, summary: dict[str, Any], session: Any
    ) -> None:
        job_summary = JobSummary(
            steps=int(summary.get("steps") or 0),
            total_reward=summary.get("total_reward"),
            swing_up_time_s=summary.get("swing_up_time_s"),
            deadline_misses=0 if session is None else session.deadline_misses,
            sim_to_real_rmse_rad=summary.get("sim_to_real_rmse_rad"),
        )

        waiting = pending_results(self.results, job_id)
        note = _spool_note(waiting)
        update = {"summary": job_summary, "results_prefix": job_prefix(job_id), "results_pending": waiting}

        def final(status: JobStatus) -> JobStatus:
            status = status.model_copy(update=update)
            message = classification.message + note
            if verdict is RunVerdict.CANCELLED:
                return transition(status, Phase.CANCELLED, reason="Cancelled", message=message)
            if classification.failure is None:
                return transition(status, Phase.SUCCEEDED, reason="Completed", message=message)
            return fail(status, classification.failure, classification.reason, message)

        self._update(job_id, final)

    def _results_uploaded(self, job_id: str) -> None:
        """The spool flusher uploaded a job's results: its status stops saying they wait."""
        waiting = pending_results(self.results, job_id)

        def uploaded(status: JobStatus) -> JobStatus:
            if status.results_pending == waiting:
                return status
            message = status.message.removesuffix(_spool_note(status.results_pending)) + _spool_note(waiting)
            return status.model_copy(update={"results_pending": waiting, "message": message})

        with contextlib.suppress(JobNotFoundError):
            self._update(job_id, uploaded)

    def _recover(self) -> None:
        """After a restart: interrupted runs are platform faults (retried once per the rules)."""
        for record in self.store.list_jobs(phases=ON_ROBOT_PHASES, limit=500).jobs:
            self._update(
                record.job_id,
                lambda status: fail(
                    status, FailureClass.PLATFORM_FAULT, "PlatformRestarted", "the platform restarted during the run"
                ),
            )

    def _update(self, job_id: str, change: Callable[[JobStatus], JobStatus]) -> JobRecord:
        for _ in range(20):
            record = self.store.get(job_id)
            changed = change(record.status)
            if changed is record.status:  # nothing to write
                return record
            try:
                updated = self.store.update_status(job_id, changed, record.version)
            except ConflictError:
                continue
            self.fleet.observe_transition(record.status, updated.status)
            return updated
        raise ConflictError(f"job {job_id} kept changing; giving up this update")

    @property
    def _requirements_cache(self) -> Path:
        return self.config.data_dir / "requirements"

    def _installed_requirements(self, code: Path) -> list[Path]:
        """The offline install of the code's requirements.txt (from the fetch's wheelhouse), if it has one."""
        requirements = code / "requirements.txt"
        if not requirements.is_file():
            return []
        digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
        return [install_offline(requirements, digest, self._requirements_cache)]

    def _busy_robot(self, job_id: str) -> str | None:
        return next((robot for robot, busy in self._busy.items() if busy == job_id), None)

    def _workdir(self, job_id: str) -> Path:
        return self.config.data_dir / "work" / job_id


@dataclass
class _Worker:
    """A job's worker thread: its fetch (`robot` None) or its run on `robot`, with its cancel event."""

    robot: str | None
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread = field(default_factory=threading.Thread)


WAITING_FOR_SERVICE = "no robot that can run this job is in service"


def _spool_note(waiting: int) -> str:
    return f" ({waiting} result files wait in the spool until the result store is back)" if waiting else ""


def private_socket_folder() -> Path:
    """A new folder for the agents' Unix sockets, private to this process and never reused.

    Short (socket paths are limited to 107 bytes), created afresh by ``mkdtemp`` (mode 0700,
    owned by this process's user, never a folder someone prepared in advance: a predictable
    name let a job plant its own socket for the next server to use), and checked to be so.
    A job reaches only its own robot's socket, which its launcher mounts into its sandbox.
    """
    folder = Path(tempfile.mkdtemp(prefix="raas-sockets-"))
    facts = folder.lstat()
    if not stat.S_ISDIR(facts.st_mode) or facts.st_uid != os.geteuid() or stat.S_IMODE(facts.st_mode) != 0o700:
        raise RuntimeError(f"{folder} is not a private folder of this process; check {tempfile.gettempdir()}")
    return folder
