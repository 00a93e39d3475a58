"""The agent's ``Robot`` object in the cluster: created once, its status heartbeated.

`RobotHeartbeat` keeps the cluster-scoped Robot (``raas.dev/v1alpha1``, contract 3 of the
architecture; schema in ``manifests/crds/robots.raas.dev.yaml``) named like the robot in step
with its agent, from a daemon thread, every ``interval_s``:

* **spec**, written only when the Robot is missing (first beat, or after someone deleted it):
  the node, the robot type, the safety limits the agent enforces and its calibration
  (``agent.params.to_dict()``). A Robot that exists is never overwritten: the lab owns its spec.
* **status**, every beat, through the status subresource (a JSON merge patch; ``None`` fields
  are left out): ``phase``, ``current_job`` (``<namespace>/<name>``), ``last_heartbeat`` (UTC,
  microseconds: the operator marks a robot whose heartbeat is stale Offline), ``health`` and
  ``jobs_completed`` (every session that ended, whatever its outcome, counted on top of the
  value the Robot already had when this agent started).
* **maintenance**: while ``spec.maintenance`` is true the agent is put in maintenance (as soon
  as no session runs: a running job is let finish) and the phase says Maintenance; when the flag
  goes back to false the agent leaves maintenance, which resets the pendulum, then is Ready.
* **draining** (`drain`, on the agent's SIGTERM: a DaemonSet rollout, a node drain): as
  maintenance, for good: the phase says Maintenance so the operator books nothing more here, the
  running session is let finish and its results upload, then the agent may exit.

Phase, from the agent's state and health:

============================================  ===========
agent                                         phase
============================================  ===========
maintenance, or ``spec.maintenance`` true     Maintenance
fault                                         Unhealthy
in a session                                  Busy
resetting                                     Resetting
idle and healthy                              Ready
idle, not healthy (encoder, motor, reset)     Unhealthy
============================================  ===========

API failures (server unreachable, timeouts, 409 conflicts, refusals) never reach the agent: the
beat is skipped, a warning is logged once per run of failures, and the next beat tries again.

The documents are plain dicts matching the CRD: ``raas_node`` does not import
``raas_operator`` (ARCHITECTURE.md, "Dependency direction"); a test validates them against
``raas_operator.robots.model`` and the CRD schema.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gym_raas.protocol.tokens import session_token
from gym_raas.results.layout import ResultFile, result_key, session_key
from gym_raas.results.store import ResultStore, StoreUnavailableError
from raas_node.agent.agent import AgentState, RobotAgent, SessionResult
from raas_node.agent.health import RobotHealth
from raas_node.agent.pictures import draw_session_pictures
from raas_node.agent.safety import tightened
from raas_node.agent.settings import ROBOT_LABEL

BOOKING_ANNOTATION = "raas.dev/booked-job"
"""Set by the operator on the Robot it gives a job (the agent only reads it)."""
BOOKING_ATTEMPT_ANNOTATION = "raas.dev/booked-attempt"
"""Which attempt of the booked job: a retry booked on the same robot is a new session to expect,
even when the agent never saw the booking freed in between."""
BOOKING_RATE_ANNOTATION = "raas.dev/booked-control-hz"
"""The booked job's control rate (its ``spec.control_hz``), when the operator writes it: the agent
expects the session at that rate. Without it the session runs at the rate the job's client asks
for in its hello (the run pod's ``RAAS_CONTROL_HZ``), or the calibration's."""
log = logging.getLogger(__name__)

GROUP = "raas.dev"
VERSION = "v1alpha1"
PLURAL = "robots"
KIND = "Robot"
JOB_REF_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
"""``status.current_job`` as the CRD accepts it: ``<namespace>/<name>``."""
MAX_REASONS = 32
"""The CRD's bound on ``status.health.reasons``."""

_API_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)
"""What a request to an unreachable, slow or refusing API server raises."""


def robot_spec(agent: RobotAgent, *, node: str, robot_type: str = "pendulum") -> dict[str, Any]:
    """The spec of a new Robot for `agent` on `node`: its enforced limits and its calibration."""
    limits, params = agent.config.limits, agent.params
    return {
        "node_name": node,
        "robot_type": robot_type,
        "maintenance": False,
        "limits": {
            "max_command": params.max_command * limits.max_duty,
            "max_speed_rad_per_s": limits.velocity_limit_rad_per_s,
            "watchdog_ms": round(limits.watchdog_timeout_s * 1000),
            "thermal_limit_celsius": limits.stop_celsius,
        },
        "calibration": {name: float(value) for name, value in params.to_dict().items()},
    }


def robot_phase(health: RobotHealth, *, maintenance: bool) -> str:
    """The Robot phase of an agent whose `health` this is (`maintenance`: the spec's flag)."""
    state = AgentState(health.state)
    if maintenance or state is AgentState.MAINTENANCE:
        return "Maintenance"
    if state is AgentState.FAULT:
        return "Unhealthy"
    if state is AgentState.BUSY:
        return "Busy"
    if state is AgentState.RESETTING:
        return "Resetting"
    return "Ready" if health.ready else "Unhealthy"


def health_summary(health: RobotHealth) -> dict[str, Any]:
    """``status.health``: why the robot is not Ready, encoder, motor temperature, last reset."""
    return {
        "reasons": list(health.reasons[:MAX_REASONS]),
        "encoder_ok": health.encoder_ok,
        "motor_temperature_celsius": round(min(max(health.motor_temperature_celsius, -50.0), 300.0), 2),
        "last_reset_ok": health.last_reset_ok,
        "last_reset_duration_s": (
            None if health.last_reset_duration_s is None else round(max(health.last_reset_duration_s, 0.0), 3)
        ),
    }


def utc_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds (``2025-03-01T12:00:00.123456Z``)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class RobotHeartbeat:
    """Keeps the Robot named `robot` in step with `agent`. `start` it; `stop` it before the agent.

    `api` decides which cluster (in a pod: the in-cluster configuration). A bare job id of the
    agent (``job-7``) is reported as ``<job_namespace>/job-7``; one with a slash as it is.
    `request_timeout_s` bounds each API request (default: the interval, between 1 s and 10 s).
    """

    def __init__(
        self,
        agent: RobotAgent,
        api: client.CustomObjectsApi,
        *,
        robot: str,
        node: str,
        interval_s: float = 5.0,
        robot_type: str = "pendulum",
        job_namespace: str = "raas",
        request_timeout_s: float | None = None,
        session_key: bytes | None = None,
        labels: dict[str, str] | None = None,
        results: ResultStore | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"the heartbeat interval must be positive, got {interval_s} s")
        self.agent = agent
        self.api = api
        self.robot = robot
        self.node = node
        self.interval_s = interval_s
        self.robot_type = robot_type
        self.job_namespace = job_namespace
        self.request_timeout_s = request_timeout_s or min(max(interval_s, 1.0), 10.0)
        self.session_key = session_key
        """Shared with the operator: the job booked on this robot opens its session with
        ``session_token(key, robot, job)`` (None: the agent takes no jobs from the cluster)."""
        self.labels = dict(labels or {})
        """Labels of a Robot this agent creates (jobs select robots by them)."""
        self._expected_job: str | None = None
        self._expected_booking: tuple[str | None, str | None] = (None, None)
        """(job, attempt) of the booking last acted on."""
        self.results = results
        """Where the agent uploads a cluster job's ``trajectory.parquet`` and ``session.json``."""
        self._uploaded: set[str] = set()
        self._uploading: set[str] = set()
        self.beats = 0
        """Beats that reached the API server (the status was written)."""
        self._jobs_completed: int | None = None
        """None until read from the Robot (the count survives agent restarts)."""
        self._seen_change: tuple[float, AgentState] | None = None
        self._seen_state: AgentState | None = None
        self._spec_maintenance = False
        self._draining = False
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> RobotHeartbeat:
        """Beat now and then every `interval_s`, in a daemon thread."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"{self.robot}-heartbeat", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (the operator marks the Robot Offline once its heartbeat is stale)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.request_timeout_s * 4 + 1)
            self._thread = None

    def drain(self, timeout_s: float) -> bool:
        """Take no new job and wait, for up to `timeout_s`, until the running session (if any) has
        ended and its results are uploaded (module docstring); returns whether all that finished.
        The heartbeat goes on meanwhile (call `stop` after)."""
        if not self._draining:
            log.info("Robot %s: draining (no new jobs; a running session is let finish)", self.robot)
        self._draining = True
        deadline = time.monotonic() + timeout_s
        while not self._drained():
            if time.monotonic() >= deadline:
                log.warning("Robot %s: still busy after draining for %.0f s; stopping anyway", self.robot, timeout_s)
                return False
            time.sleep(min(0.1, self.interval_s))
        return True

    def _drained(self) -> bool:
        """No session runs, and the last one's results are uploaded (or there is nothing to upload)."""
        if self.agent.current_job() is not None or self._uploading:
            return False
        job = self._expected_job
        return self.results is None or job is None or job in self._uploaded or self.agent.session_result(job) is None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> RobotHeartbeat:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat_once()
            except Exception:  # a bug or a malformed Robot: keep beating, say so once
                if not self._failing:
                    log.exception("heartbeat of Robot %s failed; retrying every %.1f s", self.robot, self.interval_s)
                self._failing = True
            self._stop.wait(self.interval_s)

    # -- one beat ----------------------------------------------------------------------------

    def beat_once(self) -> bool:
        """Create the Robot if missing, follow its maintenance flag, write the status.

        Returns whether the API server took the status; API failures are logged (once per run
        of failures), never raised.
        """
        try:
            document = self._read_or_create()
            spec = document.get("spec") or {}
            self._follow_maintenance(bool(spec.get("maintenance", False)))
            self._follow_limits(spec.get("limits") or {})
            self._expect_booked_job((document.get("metadata") or {}).get("annotations") or {})
            self._upload_finished_session()
            self._report_refusal()
            if self._jobs_completed is None:
                previous = (document.get("status") or {}).get("jobs_completed")
                self._jobs_completed = previous if isinstance(previous, int) and previous >= 0 else 0
            self._jobs_completed += self._sessions_ended()
            self.api.patch_cluster_custom_object_status(
                GROUP, VERSION, PLURAL, self.robot, {"status": self.status()}, _request_timeout=self.request_timeout_s
            )
        except _API_ERRORS as error:
            if not self._failing:
                log.warning("cannot heartbeat Robot %s (%s); retrying each beat", self.robot, _describe(error))
            self._failing = True
            return False
        if self._failing:
            log.info("heartbeat of Robot %s resumed", self.robot)
        self._failing = False
        self.beats += 1
        return True

    def status(self) -> dict[str, Any]:
        """The Robot status the agent reports now (``None`` where unknown)."""
        health = self.agent.health()
        job = self.agent.current_job()
        reading = self.agent.live_state(job) if job is not None else None
        return {
            "phase": robot_phase(health, maintenance=self._spec_maintenance),
            "current_job": None if job is None else self._job_ref(job),
            "last_heartbeat": utc_timestamp(datetime.now(timezone.utc)),
            "health": health_summary(health),
            "jobs_completed": self._jobs_completed or 0,
            "live": None if reading is None else _finite(dataclasses.asdict(reading)),
            "supported_control_hz": list(self.agent.supported_control_hz),
        }

    def _get(self) -> dict[str, Any]:
        robot = self.api.get_cluster_custom_object(
            GROUP, VERSION, PLURAL, self.robot, _request_timeout=self.request_timeout_s
        )
        return cast(dict[str, Any], robot)

    def _read_or_create(self) -> dict[str, Any]:
        try:
            return self._get()
        except ApiException as error:
            if error.status != 404:
                raise
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": self.robot, "labels": {**self.labels, ROBOT_LABEL: self.robot}},
            "spec": robot_spec(self.agent, node=self.node, robot_type=self.robot_type),
        }
        try:
            created = self.api.create_cluster_custom_object(
                GROUP, VERSION, PLURAL, body, _request_timeout=self.request_timeout_s
            )
            log.info("created Robot %s for node %s", self.robot, self.node)
            return cast(dict[str, Any], created)
        except ApiException as error:
            if error.status != 409:  # 409: created meanwhile (by the lab): theirs wins
                raise
        return self._get()

    def _follow_maintenance(self, wanted: bool) -> None:
        """Bring the lab's ``spec.maintenance`` (or a drain) to the agent (on: once no session runs)."""
        wanted = wanted or self._draining
        was, self._spec_maintenance = self._spec_maintenance, wanted
        in_maintenance = self.agent.state is AgentState.MAINTENANCE
        if wanted and not in_maintenance and self.agent.current_job() is None:
            log.info("Robot %s: %s", self.robot, "drained" if self._draining else "maintenance requested by the lab")
            self.agent.set_maintenance(True)
        elif was and not wanted and in_maintenance:
            log.info("Robot %s: maintenance over; resetting", self.robot)
            self.agent.set_maintenance(False)

    def _follow_limits(self, wanted: dict[str, Any]) -> None:
        """Enforce the lab's ``spec.limits`` where they are stricter than the node's own (from the
        agent's configuration); looser values are not honoured: the node's envelope is a ceiling."""

        def number(key: str) -> float | None:
            value = wanted.get(key)
            return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

        max_command, watchdog_ms = number("max_command"), number("watchdog_ms")
        limits = tightened(
            self.agent.config.limits,
            max_duty=None if max_command is None else max_command / self.agent.params.max_command,
            velocity_limit_rad_per_s=number("max_speed_rad_per_s"),
            watchdog_timeout_s=None if watchdog_ms is None else watchdog_ms / 1000.0,
            stop_celsius=number("thermal_limit_celsius"),
        )
        if limits != self.agent.limits:
            log.info("Robot %s: enforcing the lab's limits %s", self.robot, limits)
            self.agent.enforce_limits(limits)

    def _expect_booked_job(self, annotations: dict[str, str]) -> None:
        """Let the job the operator booked here open its session (its pod holds the same token)."""
        booked = annotations.get(BOOKING_ANNOTATION) or None
        booking = (booked, annotations.get(BOOKING_ATTEMPT_ANNOTATION) if booked else None)
        if self.session_key is None or booking == self._expected_booking:
            return
        if booked is not None:  # (booked again after a retry: a new attempt, its session still to upload)
            self._uploaded.discard(booked)
            control_hz = self._booked_rate(annotations.get(BOOKING_RATE_ANNOTATION))
            self.agent.expect(booked, session_token(self.session_key, self.robot, booked), control_hz=control_hz)
            log.info("Robot %s: expecting job %s (control rate %s)", self.robot, booked, control_hz or "the client's")
        self._expected_job, self._expected_booking = booked, booking

    def _booked_rate(self, raw: str | None) -> float | None:
        """The booking's control rate, or None when absent or not one this robot runs at (then the
        hello decides, and a rate the robot does not run is refused there with a sentence)."""
        if not raw:
            return None
        try:
            control_hz = float(raw)
        except ValueError:
            control_hz = math.nan
        if not math.isfinite(control_hz) or not self.agent.supports_control_hz(control_hz):
            log.warning("Robot %s: booked control rate %r is not one this robot runs at; ignored", self.robot, raw)
            return None
        return control_hz

    def _upload_finished_session(self) -> None:
        """Hand the booked job's session to the result store once it has ended (in a thread of its
        own: drawing the pictures takes seconds, and the heartbeat must go on meanwhile)."""
        job = self._expected_job
        if self.results is None or job is None or job in self._uploaded or job in self._uploading:
            return
        result = self.agent.session_result(job)
        if result is None:
            return
        self._uploading.add(job)
        threading.Thread(target=self._upload_session, args=(job, result), name=f"upload-{job}", daemon=True).start()

    def _report_refusal(self) -> None:
        """When the robot turned the booked job away for good (maintenance, a fault), say so in
        the job's session record (outcome ``refused``): its pod then fails, and the operator
        counts that as the robot's fault, not the user's. No session of the job can follow, so
        the record is final."""
        job = self._expected_job
        if self.results is None or job is None or job in self._uploaded:
            return
        refusal = self.agent.refusal(job)
        if refusal is None or not refusal.final:
            return
        record = {
            "job_id": job,
            "robot": self.robot,
            "outcome": "refused",
            "message": refusal.message,
            "code": refusal.code,
            "steps": 0,
        }
        try:
            self.results.put_bytes(session_key(job), json.dumps(record).encode(), "application/json")
        except Exception as error:  # the store is down or refuses: next beat (the beat itself goes on)
            log.warning("Robot %s: cannot report the refusal of %s yet (%s)", self.robot, job, error)
            return
        self._uploaded.add(job)
        self.agent.forget_refusal(job)
        log.info("Robot %s: reported that it refused %s (%s)", self.robot, job, refusal.message)

    def _upload_session(self, job: str, result: SessionResult) -> None:
        """The recording, its plot and animation, then ``session.json`` last: the operator reads
        the session record as the sign that everything of the session is in the store."""
        assert self.results is not None
        try:
            if result.trajectory_path is not None:
                key = result_key(job, ResultFile.TRAJECTORY)
                self.results.put_file(key, result.trajectory_path, ResultFile.TRAJECTORY.content_type)
                self._upload_pictures(job, result.trajectory_path)
            if result.metadata_path is not None:
                self.results.put_file(session_key(job), result.metadata_path, "application/json")
        except (StoreUnavailableError, OSError) as error:
            log.warning("Robot %s: cannot upload the session of %s yet (%s)", self.robot, job, error)
            return
        finally:
            self._uploading.discard(job)
        self._uploaded.add(job)
        log.info("Robot %s: uploaded the session of %s", self.robot, job)

    def _upload_pictures(self, job: str, trajectory: Path) -> None:
        assert self.results is not None
        with tempfile.TemporaryDirectory(prefix="raas-pictures-") as scratch:
            try:
                pictures = draw_session_pictures(trajectory, self.agent.params, Path(scratch), job)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                log.warning("Robot %s: no pictures for %s: %s", self.robot, job, error)
                return
            if pictures is not None:
                plot, animation = pictures
                self.results.put_file(result_key(job, ResultFile.PLOT), plot, ResultFile.PLOT.content_type)
                self.results.put_file(
                    result_key(job, ResultFile.ANIMATION), animation, ResultFile.ANIMATION.content_type
                )

    def _sessions_ended(self) -> int:
        """Sessions that ended since the last call, from the agent's recent state changes."""
        changes = _snapshot(self.agent)
        start = 0
        for index in range(len(changes) - 1, -1, -1):
            if changes[index] is self._seen_change:
                start = index + 1
                break
        ended, state = 0, self._seen_state
        for _, new_state in changes[start:]:
            if state is AgentState.BUSY and new_state is not AgentState.BUSY:
                ended += 1
            state = new_state
        if changes:
            self._seen_change, self._seen_state = changes[-1], state
        return ended

    def _job_ref(self, job: str) -> str | None:
        ref = job if "/" in job else f"{self.job_namespace}/{job}"
        if JOB_REF_PATTERN.match(ref):
            return ref
        log.debug("job id %r is not a RaasJob reference; current_job left empty", job)
        return None


def _snapshot(agent: RobotAgent) -> list[tuple[float, AgentState]]:
    """The agent's recent state changes (a deque the control loop appends to)."""
    for _ in range(10):
        try:
            return list(agent.state_changes)
        except RuntimeError:  # appended to while copied
            continue
    return []


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity: such readings are reported as 0."""
    return {
        key: value if not isinstance(value, float) or math.isfinite(value) else 0.0 for key, value in values.items()
    }


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"
