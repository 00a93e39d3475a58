"""The robot agent: owns the control clock, the safety layer and the one session at a time.

Threads:

* the **control loop** ticks every control period on the monotonic clock. At each boundary it
  reads the sensors, picks the command (the session's pending one, the reset routine's, or
  zero), passes it through the safety layer, applies it, feeds the dead-man switch, records the
  boundary and answers the client waiting for it;
* the **session gate** accepts connections on the Unix socket and reads their hellos side by
  side (`gym_raas.protocol.admission.HelloGate`: a total deadline per hello, a bounded waiting
  room), so a peer that sends nothing or drips bytes never holds up the robot's real client. A
  hello without the token of a job the platform told the agent to expect (`expect`) is refused
  there; one with such a token goes on to
* the **session server**, which serves one session at a time and speaks the session protocol
  (`gym_raas.protocol`) with it.

Readings are sampled at fixed boundaries (every control period, the env's ``dt``). A session's
command is applied as soon as it arrives, through the safety layer (`SafetyLayer.admit`), and the
reply carries the reading of the next boundary (``actuation="arrival"``, the default). The time
from the boundary of the reading a command answers to the command reaching the driver is its
*actuation latency*: recorded per step, summarised in ``session.json``, exported as a histogram
and sent to the client (protocol version 2). A command that arrives after the next boundary is
late: that boundary counts a deadline miss and holds the previous command until it arrives
(never a silently stretched step). Every boundary also passes the command in force through the
safety layer (velocity cut, watchdog, thermal model) and feeds the dead-man switch, so safety
keeps the boundaries' cadence. ``actuation="boundary"`` is the earlier rule (a command waits for
the next boundary, a whole period), kept to compare against.

A session runs at the control rate the job asks for (``control_hz`` in the client's hello or the
platform's `expect`), among the robot's `AgentConfig.supported_control_hz`; the default is the
calibration's period. Between sessions the agent resets the pendulum; a failed reset, a stuck
encoder or a hot motor make the robot unhealthy.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from gym_raas.backends.robot import TRANSIENT_REFUSALS
from gym_raas.envs.pendulum import swing_cost
from gym_raas.protocol import FrameReader, ProtocolError, decode_message, encode_frame, encode_message
from gym_raas.protocol.admission import FirstFrame, HelloGate
from gym_raas.protocol.framing import FrameError
from gym_raas.protocol.messages import CLIENT_TYPES, PROTOCOL_VERSION
from raas_node.agent.health import HealthMonitor, RobotHealth
from raas_node.agent.metrics import AgentMetrics
from raas_node.agent.recorder import SessionRecorder
from raas_node.agent.reset import ResetReport, ResetRoutine
from raas_node.agent.safety import SafetyLayer, SafetyLimits
from raas_node.drivers.base import RobotDriver, SensorReading

log = logging.getLogger(__name__)

SOCKET_MODE = 0o666
"""Job processes run as other users; the session token, not file permissions, guards the socket."""
UNEXPECTED = ("unexpected-session", "this robot was not told to expect a session with that token")
"""The refusal of a hello whose token no expected job has."""
MAX_ADMITTED = 4
"""Connections with an expected token that may wait for the session server (beyond: ``busy``)."""
SUPPORTED_CONTROL_HZ = (20.0, 50.0, 100.0)
"""Control rates a robot offers by default (20 Hz, the original service's, is the calibration's)."""
MIN_CONTROL_HZ = 10.0
"""The slowest rate a robot may offer: every boundary feeds the driver's dead-man (which stops the
motor 140 ms after the last feed), so a period must stay well under that."""
MAX_CONTROL_HZ = 1000.0
ACTUATION_RULES = ("arrival", "boundary")


class AgentState(str, Enum):
    IDLE = "idle"
    BUSY = "busy"
    RESETTING = "resetting"
    FAULT = "fault"
    MAINTENANCE = "maintenance"


@dataclass(frozen=True)
class AgentConfig:
    """Configuration of one agent (from the Robot resource or the local platform)."""

    robot: str
    socket_path: Path
    recordings_dir: Path
    robot_type: str = "pendulum"
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    max_session_s: float = 3600.0
    reset_timeout_s: float = 20.0
    actuation: str = "arrival"
    """``arrival``: a command reaches the motor as soon as it arrives; ``boundary``: at the next
    boundary (the earlier rule, one period later; kept for comparisons)."""
    supported_control_hz: tuple[float, ...] = SUPPORTED_CONTROL_HZ
    """Control rates a session may ask for (the robot advertises them)."""

    def __post_init__(self) -> None:
        if self.actuation not in ACTUATION_RULES:
            raise ValueError(f"actuation must be one of {', '.join(ACTUATION_RULES)}, got {self.actuation!r}")
        rates = self.supported_control_hz
        if not rates or not all(MIN_CONTROL_HZ <= hz <= MAX_CONTROL_HZ for hz in rates):
            raise ValueError(
                f"supported_control_hz must list rates in [{MIN_CONTROL_HZ:g}, {MAX_CONTROL_HZ:g}] Hz, got {rates}"
            )


@dataclass(frozen=True)
class LiveReading:
    """A session's latest boundary, for live views."""

    steps: int
    time_s: float
    """Since the session opened."""
    theta_rad: float
    theta_dot_rad_per_s: float
    command: float
    """The command in force (applied duty × max_command)."""


@dataclass(frozen=True)
class Refusal:
    """A session the robot turned away although the job's token was right."""

    code: str
    """busy, resetting (the client retries: `gym_raas.backends.robot.TRANSIENT_REFUSALS`), or
    unavailable (maintenance, fault: it does not)."""
    message: str

    @property
    def final(self) -> bool:
        """Whether the client gives up at once (no session of the job can follow it)."""
        return self.code not in TRANSIENT_REFUSALS


@dataclass(frozen=True)
class SessionResult:
    """What a finished session left behind."""

    job_id: str
    outcome: str
    """completed, client_error, protocol_error, safety_stop, cancelled or agent_error."""
    message: str
    steps: int
    total_reward: float
    deadline_misses: int
    safety_events: dict[str, int]
    started_monotonic_s: float
    duration_s: float
    trajectory_path: Path | None
    metadata_path: Path | None
    reset: ResetReport | None = None
    actuation_latency_s: dict[str, float] = field(default_factory=dict)
    """Actuation latency of the session's steps: count, mean, p50, p99, max (seconds)."""
    control_period_s: float = 0.05


@dataclass
class _Session:
    job_id: str
    started_s: float = 0.0
    stepping: bool = False
    pending: float | None = None
    pending_arrival_s: float = 0.0
    last_command_s: float = 0.0
    deadline_s: float = 0.0
    """The boundary by which the next command should arrive."""
    reply: dict[str, Any] | None = None
    want_reply: bool = False
    steps: int = 0
    misses: int = 0
    total_reward: float = 0.0
    last_theta: float = math.pi
    last_theta_dot: float = 0.0
    events: dict[str, int] = field(default_factory=dict)
    recorder: SessionRecorder = field(default_factory=SessionRecorder)
    end_reason: tuple[str, str] | None = None
    awaiting_first_step: bool = True
    connection: socket.socket | None = None
    """Replies to steps are sent by the control loop itself, right at the boundary."""
    applied_fresh: bool = False
    requested: float | None = None
    version: int = PROTOCOL_VERSION
    """The client's protocol version (replies are written in it)."""
    dt: float = 0.05
    """The session's control period."""
    answered_boundary_s: float = 0.0
    """Boundary of the reading the next command answers (monotonic)."""
    held: float = 0.0
    """The command in force (checked, within the envelope): the boundaries hold it."""
    arrival_events: tuple[str, ...] = ()
    applied_at_s: float = math.nan
    """When the latest command reached the driver (monotonic; NaN before it did)."""
    actuation_latency_s: float = math.nan
    missed_current: bool = False
    """The boundary the awaited command was due at already counted its miss."""
    latencies: list[float] = field(default_factory=list)


class RobotAgent:
    """One robot's agent. `start` it, `expect` jobs, `wait_session` for their results."""

    def __init__(self, driver: RobotDriver, config: AgentConfig, metrics: AgentMetrics | None = None) -> None:
        self.driver = driver
        self.config = config
        self.params = driver.params
        self.dt = self.params.control_period_s
        self.metrics = metrics or AgentMetrics(config.robot)
        self.safety = SafetyLayer(config.limits, self.params.max_command)
        self.health_monitor = HealthMonitor(self.params)
        self.state = AgentState.IDLE
        self._lock = threading.Condition()
        self._session: _Session | None = None
        self._expected: dict[str, str] = {}
        self._expected_hz: dict[str, float] = {}
        self._hardware = threading.Lock()
        """Serialises driver calls (the control loop and commands arriving between boundaries)."""
        self._default_dt = self.dt
        self._last_boundary_s = 0.0
        self._results: dict[str, SessionResult] = {}
        self._opened: set[str] = set()
        """Jobs that opened a session (their result comes, even if not yet)."""
        self._refused: dict[str, Refusal] = {}
        """The latest refusal of each expected job that has not opened its session."""
        self._reset: ResetRoutine | None = None
        self._last_reset: ResetReport | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._admitted: queue.Queue[tuple[socket.socket, dict[str, Any]]] = queue.Queue(MAX_ADMITTED)
        """Connections whose hello carried an expected token, for the session server in turn."""
        self._duty = 0.0
        self._last_reading: SensorReading = driver.read()
        self.boundary_index = 0
        self.state_changes: collections.deque[tuple[float, AgentState]] = collections.deque(maxlen=64)
        """Recent (wall-clock time, new state) changes, newest last."""
        self.on_idle: Callable[[], None] | None = None
        """Called (under the agent's lock: keep it short) whenever the robot becomes idle, i.e. Ready."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> RobotAgent:
        """Open the socket, start the clock and the server, and reset the pendulum."""
        path = self.config.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        os.chmod(path, SOCKET_MODE)
        listener.listen(64)
        self._listener = listener
        self._set_state(AgentState.RESETTING)
        self._reset = ResetRoutine(time.monotonic(), timeout_s=self.config.reset_timeout_s)
        threads = (("control-loop", self._control_loop), ("session-gate", self._gate), ("session-server", self._serve))
        for name, target in threads:
            thread = threading.Thread(target=target, name=f"{self.config.robot}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """End any session, stop the motor and the threads, close the driver's link."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self.config.socket_path.unlink(missing_ok=True)
        self._stop_motor_safely()

    def __enter__(self) -> RobotAgent:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- platform interface ------------------------------------------------------------------

    def expect(self, job_id: str, token: str | None = None, *, control_hz: float | None = None) -> str:
        """Accept one session for `job_id` presenting `token` (generated when not given), at
        `control_hz` (None: the calibration's rate; the client's hello may ask for another). A job
        expected again (a retry on the same robot) starts afresh: what its earlier attempt left
        (result, refusal) is forgotten."""
        if control_hz is not None and not self.supports_control_hz(control_hz):
            raise ValueError(self._unsupported_rate(control_hz))
        token = token or secrets.token_urlsafe(24)
        with self._lock:
            self._expected[job_id] = token
            self._expected_hz.pop(job_id, None)
            if control_hz is not None:
                self._expected_hz[job_id] = float(control_hz)
            if self._session is None or self._session.job_id != job_id:
                self._results.pop(job_id, None)
                self._opened.discard(job_id)
                self._refused.pop(job_id, None)
        return token

    def cancel(self, job_id: str) -> None:
        """End `job_id`'s session now; returns once the motor is off. Forgets an expected job."""
        with self._lock:
            self._expected.pop(job_id, None)
            session = self._session
            if session is not None and session.job_id == job_id:
                session.end_reason = session.end_reason or ("cancelled", "the job was cancelled")
                self._lock.notify_all()
                # Return once the control loop has applied zero duty at a boundary.
                boundary = self.boundary_index
                deadline = time.monotonic() + 5 * self.dt
                while self.boundary_index == boundary and time.monotonic() < deadline and not self._stop.is_set():
                    self._lock.wait(timeout=self.dt)

    def end_job(self, job_id: str, timeout_s: float = 60.0) -> SessionResult | None:
        """After a job's program exited: end its session if still open and return the result as
        soon as the recording is written (the robot's reset follows: `SessionResult.reset` says
        how it went once `wait_reset` returns); None if the job never opened a session."""
        with self._lock:
            self._expected.pop(job_id, None)
            if job_id not in self._opened:  # never connected (or cancelled before it did)
                return None
        self.cancel(job_id)
        return self.wait_session(job_id, timeout_s)

    def wait_session(self, job_id: str, timeout_s: float | None = None) -> SessionResult | None:
        """The result of `job_id`'s session once it ended (its recording written), or None."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while job_id not in self._results:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._lock.wait(timeout=remaining if remaining is not None else 0.5)
            return self._results[job_id]

    def wait_reset(self, job_id: str, timeout_s: float | None = None) -> SessionResult | None:
        """The result of `job_id`'s session once the robot's reset after it has ended, or None."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while (result := self._results.get(job_id)) is None or result.reset is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if (remaining is not None and remaining <= 0) or self._stop.is_set():
                    return result
                self._lock.wait(timeout=min(remaining, 0.5) if remaining is not None else 0.5)
            return result

    def session_steps(self, job_id: str) -> int | None:
        """Steps run so far by `job_id`'s open session, or None if it has none."""
        with self._lock:
            session = self._session
            return session.steps if session is not None and session.job_id == job_id else None

    def current_job(self) -> str | None:
        """The job whose session is open now, or None between sessions."""
        with self._lock:
            return self._session.job_id if self._session is not None else None

    def live_state(self, job_id: str) -> LiveReading | None:
        """The latest state of `job_id`'s open session (for live views), or None if it has none."""
        with self._lock:
            session, reading = self._session, self._last_reading
            if session is None or session.job_id != job_id:
                return None
            return LiveReading(
                steps=session.steps,
                time_s=max(0.0, reading.time_s - session.started_s),  # the last reading may predate the session
                theta_rad=reading.theta_rad,
                theta_dot_rad_per_s=reading.theta_dot_rad_per_s,
                command=self._duty * self.params.max_command,
            )

    def refusal(self, job_id: str) -> Refusal | None:
        """How the robot last turned away `job_id`, if it presented its token and has not opened
        its session since (None otherwise). `Refusal.final` ones are the robot's doing: a job
        that ended after one never had the robot, and deserves a retry elsewhere."""
        with self._lock:
            return self._refused.get(job_id)

    def forget_refusal(self, job_id: str) -> None:
        """Drop `job_id`'s refusal (once its job's end has been accounted for)."""
        with self._lock:
            self._refused.pop(job_id, None)

    def session_result(self, job_id: str) -> SessionResult | None:
        with self._lock:
            return self._results.get(job_id)

    def health(self) -> RobotHealth:
        """Health for the scheduler: Ready only when idle, reset and healthy."""
        return self.health_monitor.summary(
            temperature_celsius=self.safety.temperature_celsius,
            thermal_stop=self.safety.hot,
            last_reset=self._last_reset,
            state=self.state.value,
        )

    @property
    def supported_control_hz(self) -> tuple[float, ...]:
        """Control rates this robot offers (advertised in its status and welcome)."""
        return tuple(sorted(self.config.supported_control_hz))

    def supports_control_hz(self, control_hz: float) -> bool:
        return any(math.isclose(control_hz, offered, rel_tol=1e-9) for offered in self.config.supported_control_hz)

    def _unsupported_rate(self, control_hz: float) -> str:
        offered = ", ".join(f"{hz:g}" for hz in self.supported_control_hz)
        return f"this robot does not run at {control_hz:g} Hz; ask for one of {offered} Hz"

    @property
    def limits(self) -> SafetyLimits:
        """The safety envelope enforced now."""
        return self.safety.limits

    def enforce_limits(self, limits: SafetyLimits) -> None:
        """Enforce `limits` from the next control boundary on (the control loop reads the limits
        once per boundary, so a boundary sees either the old or the new envelope, never a mix)."""
        self.safety.limits = limits

    def set_maintenance(self, on: bool) -> None:
        with self._lock:
            if on:
                self._set_state(AgentState.MAINTENANCE)
            elif self.state is AgentState.MAINTENANCE:
                self._set_state(AgentState.RESETTING)
                self._reset = ResetRoutine(time.monotonic(), timeout_s=self.config.reset_timeout_s)

    def request_reset(self) -> None:
        """Reset the pendulum now (when no session is running)."""
        with self._lock:
            if self._session is None:
                self._set_state(AgentState.RESETTING)
                self._reset = ResetRoutine(time.monotonic(), timeout_s=self.config.reset_timeout_s)

    # -- control loop ------------------------------------------------------------------------

    def _control_loop(self) -> None:
        next_boundary = time.monotonic()
        failing = False
        while not self._stop.is_set():
            now = time.monotonic()
            if now < next_boundary:
                time.sleep(next_boundary - now)
            boundary = next_boundary
            next_boundary += self.dt
            if time.monotonic() > next_boundary:  # the loop itself fell behind: skip, never stretch
                skipped = int((time.monotonic() - boundary) / self.dt)
                next_boundary = boundary + (skipped + 1) * self.dt
            try:
                self._tick(boundary)
                failing = False
            except Exception as error:
                if not failing:  # once per run of failures, not at every boundary
                    log.exception("control loop failure")
                failing = True
                self._stop_motor_safely()
                with self._lock:
                    self._set_state(AgentState.FAULT)
                    if self._session is not None and self._session.end_reason is None:
                        self._session.end_reason = ("agent_error", f"robot agent failure: {error}")
                    if self._reset is not None:  # a reset cannot finish without the driver
                        self._reset = None
                        self._last_reset = ResetReport(False, 0.0, f"robot agent failure: {error}")
                    self._lock.notify_all()
        self._stop_motor_safely()

    def _stop_motor_safely(self) -> None:
        """Stop the motor where the driver may itself be broken: a lost pigpiod must not take the
        control loop or a session down with it (and its own dead-man script stops the motor)."""
        try:
            with self._hardware:
                self.driver.stop_motor()
        except Exception:
            log.exception("cannot stop the motor through the driver")

    def _tick(self, boundary: float) -> None:
        with self._hardware:
            reading = self.driver.read()
        # Real time since the previous boundary (the thermal model integrates time, not boundaries:
        # a skipped boundary still heats; the first boundary counts one period).
        elapsed = min(boundary - self._last_boundary_s, 1.0) if self._last_boundary_s else self.dt
        glitches = self.health_monitor.glitches
        self.health_monitor.observe(reading, self._duty)
        for _ in range(self.health_monitor.glitches - glitches):
            self.metrics.count_encoder_glitch()
        with self._lock:
            self.boundary_index += 1
            self._last_reading = reading
            self._last_boundary_s = boundary
            session = self._session
            stepped = session is not None and session.stepping and session.end_reason is None
            if stepped:
                assert session is not None
                if self.config.actuation == "arrival":
                    duty, events = self._arrival_boundary(session, reading, boundary, elapsed)
                else:
                    duty, events = self._session_boundary(session, reading, boundary, elapsed)
            else:
                duty, events = self._reset_boundary(reading) if self._reset is not None else (0.0, ())
                self.safety.rest(duty, elapsed)
            with self._hardware:
                self._duty = self.driver.apply_duty(duty)
                self.driver.feed_deadman()
            latency = time.monotonic() - boundary
            if stepped:  # a session that is ending records no more boundaries (nor replays the last one)
                assert session is not None
                if self.config.actuation == "boundary" and session.applied_fresh:
                    self._account_actuation(session, time.monotonic())
                self._record(session, reading, boundary, events, latency)
            self._lock.notify_all()
        self.metrics.observe_step_latency(latency)
        self.metrics.set_motor(self._duty, self.safety.temperature_celsius)
        self.metrics.set_encoder_health(self.health_monitor.encoder_stuck)
        for kind in events:
            self.metrics.count_safety_trip(kind)

    def _session_boundary(
        self, session: _Session, reading: SensorReading, boundary: float, elapsed: float
    ) -> tuple[float, tuple[str, ...]]:
        fresh = session.pending
        session.pending = None
        session.applied_fresh, session.requested = fresh is not None, fresh
        if fresh is None and session.awaiting_first_step:
            return 0.0, ()  # the user's code is still getting ready after reset: not a miss
        session.awaiting_first_step = False
        if fresh is None:
            session.misses += 1
            self.metrics.count_deadline_misses(1)
            command = self._duty * self.params.max_command  # hold the previous command
        else:
            command = fresh
        since_command = boundary - session.last_command_s
        safe = self.safety.filter(command, reading.theta_dot_rad_per_s, since_command, elapsed)
        for kind in safe.events:
            session.events[kind] = session.events.get(kind, 0) + 1
        return safe.duty, safe.events

    def _arrival_boundary(
        self, session: _Session, reading: SensorReading, boundary: float, elapsed: float
    ) -> tuple[float, tuple[str, ...]]:
        """A boundary under the arrival rule: the command of the period was applied when it came
        (or is late: a miss, held); the command in force passes the safety layer again."""
        session.applied_fresh = session.want_reply and session.requested is not None
        if not session.want_reply and session.awaiting_first_step:
            return 0.0, ()  # the user's code is still getting ready after reset: not a miss
        session.awaiting_first_step = False
        late = session.applied_fresh and session.pending_arrival_s > session.deadline_s
        if not session.want_reply or (late and not session.missed_current):
            session.misses += 1  # the awaited command was not there by this boundary
            session.missed_current = True
            self.metrics.count_deadline_misses(1)
        since_command = boundary - session.last_command_s
        safe = self.safety.filter(session.held, reading.theta_dot_rad_per_s, since_command, elapsed)
        events = (*session.arrival_events, *safe.events) if session.applied_fresh else safe.events
        session.arrival_events = ()
        for kind in safe.events:
            session.events[kind] = session.events.get(kind, 0) + 1
        return safe.duty, events

    def _apply_on_arrival(self, session: _Session, command: float) -> None:
        """Under the lock: the arriving command through `SafetyLayer.admit` to the driver now.

        A driver that fails here (pigpiod gone, say) ends the session as the robot's failure, as
        the control loop does: the client is told so and its job is not blamed (the error must not
        reach the session's handler, which reads an OSError as the client's connection lost)."""
        session.held, safe = self.safety.admit(command)
        try:
            with self._hardware:
                self._duty = self.driver.apply_duty(safe.duty)
                applied_at = time.monotonic()
        except Exception as error:
            log.exception("cannot apply the command of job %s", session.job_id)
            self._set_state(AgentState.FAULT)
            if session.end_reason is None:
                session.end_reason = ("agent_error", f"robot agent failure: {error}")
            self._lock.notify_all()
            return
        session.requested = command
        session.arrival_events = safe.events
        for kind in safe.events:
            session.events[kind] = session.events.get(kind, 0) + 1
            self.metrics.count_safety_trip(kind)
        self._account_actuation(session, applied_at)

    def _account_actuation(self, session: _Session, applied_at: float) -> None:
        session.applied_at_s = applied_at
        session.actuation_latency_s = applied_at - session.answered_boundary_s
        if not session.awaiting_first_step:  # the first step waits on the user's start-up, not the robot
            session.latencies.append(session.actuation_latency_s)
            self.metrics.observe_actuation_latency(session.actuation_latency_s)

    def _reset_boundary(self, reading: SensorReading) -> tuple[float, tuple[str, ...]]:
        assert self._reset is not None
        duty, report = self._reset.step(reading)
        if report is not None:
            self._reset = None
            self._last_reset = report
            self.metrics.observe_reset(report.duration_s, report.ok)
            if report.ok:
                self.driver.zero_encoder()
                if self.state is AgentState.RESETTING and self._session is None:
                    self._set_state(AgentState.IDLE)
            else:
                log.error("reset failed: %s", report.message)
                self._set_state(AgentState.FAULT)
        return duty, ()

    def _record(
        self, session: _Session, reading: SensorReading, boundary: float, events: tuple[str, ...], latency: float
    ) -> None:
        fresh, requested = session.applied_fresh, session.requested
        max_command = self.params.max_command
        late_by = max(0.0, session.pending_arrival_s - session.deadline_s) if fresh else math.nan
        reward = 0.0
        if fresh and requested is not None and math.isfinite(requested):
            clipped = max(-max_command, min(max_command, requested))
            reward = -swing_cost(session.last_theta, session.last_theta_dot, clipped)  # the env's own reward
            session.total_reward += reward
            session.steps += 1
        session.recorder.append(
            time_s=boundary - session.started_s,
            step=session.steps,
            theta_rad=reading.theta_rad,
            theta_dot_rad_per_s=reading.theta_dot_rad_per_s,
            requested_command=requested if fresh else None,
            applied_command=self._duty * max_command,
            applied_duty=self._duty,
            reward=reward,
            late_by_s=late_by,
            loop_latency_s=latency,
            actuation_latency_s=session.actuation_latency_s if fresh else math.nan,
            applied_at_s=session.applied_at_s - session.started_s if fresh else math.nan,
            safety_events=events,
        )
        if fresh and session.want_reply:
            reply = _observation(session, reading, boundary, late_by, self._duty * max_command, events)
            reply["actuation_latency"] = session.actuation_latency_s
            if session.connection is not None:
                self._send(session.connection, "observation", version=session.version, **reply)
            session.reply = reply
            session.want_reply = False
            session.requested = None
            session.missed_current = False
            session.last_theta, session.last_theta_dot = reading.theta_rad, reading.theta_dot_rad_per_s
            session.answered_boundary_s = boundary
            session.deadline_s = boundary + session.dt  # the next command is due by the next boundary

    def _set_state(self, state: AgentState) -> None:
        if state is not self.state:
            self.state_changes.append((time.time(), state))
        self.state = state
        self.metrics.set_state(state.value)
        if state is AgentState.IDLE and self.on_idle is not None:
            self.on_idle()

    # -- session server ----------------------------------------------------------------------

    def _gate(self) -> None:
        """Read every connection's hello side by side; pass on those with an expected token."""
        assert self._listener is not None
        gate = HelloGate(self._listener)
        try:
            while not self._stop.is_set():
                for arrival in gate.poll(0.2):
                    try:
                        self._admit(arrival)
                    except Exception:  # a bug here must not stop the robot from taking sessions
                        log.exception("session gate failure")
                        arrival.connection.close()
        finally:
            gate.close()

    def _admit(self, arrival: FirstFrame) -> None:
        connection = arrival.connection
        connection.settimeout(1.0)  # a refusal is one small frame: never let a peer stall the gate with it
        if arrival.payload is None:
            if arrival.problem != "closed":  # a peer that left needs no answer
                code = "busy" if arrival.problem == "evicted" else "malformed"  # busy: the client tries again
                self._send(connection, "error", code=code, message=f"expected a hello: {arrival.detail}")
            if arrival.problem in ("timeout", "too-large"):
                self.metrics.count_session("protocol_error")
            log.debug("connection turned away before its hello: %s", arrival.detail)
            connection.close()
            return
        try:
            hello = decode_message(arrival.payload, allowed=frozenset({"hello"}))
        except ProtocolError as error:
            self._send(connection, "error", code=error.code, message=f"expected a hello: {error}")
            self.metrics.count_session("protocol_error")
            connection.close()
            return
        with self._lock:
            expected = self._expected_job(hello["token"]) is not None
        if not expected:
            self._send(connection, "error", version=hello["v"], code=UNEXPECTED[0], message=UNEXPECTED[1])
            connection.close()
            return
        try:
            self._admitted.put_nowait((connection, hello))
        except queue.Full:
            self._send(
                connection, "error", version=hello["v"], code="busy", message="the robot is serving another session"
            )
            connection.close()

    def _serve(self) -> None:
        """One session at a time, in the order their hellos were admitted."""
        while not self._stop.is_set():
            try:
                connection, hello = self._admitted.get(timeout=0.2)
            except queue.Empty:
                continue
            with connection:
                try:
                    self._handle(connection, hello)
                except Exception:
                    log.exception("session handler failure")
        with contextlib.suppress(queue.Empty):  # stopping: nobody will serve those still waiting
            while True:
                self._admitted.get_nowait()[0].close()

    def _handle(self, connection: socket.socket, hello: dict[str, Any]) -> None:
        connection.settimeout(None)
        reader = FrameReader(connection)
        session = self._open_session(connection, hello)
        if session is None:
            return
        try:
            self._converse(connection, reader, session)
        except ProtocolError as error:
            self._send(connection, "error", version=session.version, code=error.code, message=str(error))
            session.end_reason = session.end_reason or ("protocol_error", str(error))
        except FrameError as error:
            self._send(connection, "error", version=session.version, code="frame", message=str(error))
            session.end_reason = session.end_reason or ("protocol_error", str(error))
        except OSError as error:
            session.end_reason = session.end_reason or ("client_error", f"connection lost: {error}")
        finally:
            self._close_session(session)

    def _expected_job(self, token: str) -> str | None:
        """The expected job whose token this is (under the lock), compared in constant time."""
        return next((job for job, expected in self._expected.items() if secrets.compare_digest(expected, token)), None)

    def _open_session(self, connection: socket.socket, hello: dict[str, Any]) -> _Session | None:
        version = int(hello["v"])
        with self._lock:
            job_id = self._expected_job(hello["token"])
            refusal = self._refusal(job_id)
            control_hz = hello.get("control_hz", self._expected_hz.get(job_id or ""))
            if refusal is None and control_hz is not None and not self.supports_control_hz(float(control_hz)):
                refusal = ("unsupported-rate", self._unsupported_rate(float(control_hz)))
            if refusal is not None:
                if job_id is not None:  # the job's own token: it was turned away, not an impostor
                    self._refused[job_id] = Refusal(*refusal)
                self._send(connection, "error", version=version, code=refusal[0], message=refusal[1])
                return None
            assert job_id is not None
            del self._expected[job_id]
            self._expected_hz.pop(job_id, None)
            self._refused.pop(job_id, None)
            self._opened.add(job_id)
            dt = self._default_dt if control_hz is None else 1.0 / float(control_hz)
            session = _Session(job_id=job_id, started_s=time.monotonic(), connection=connection, version=version, dt=dt)
            self._session = session
            self.dt = dt  # the control loop's next boundary is a period of the session's rate away
            self._reset = None
            self._set_state(AgentState.BUSY)
        self._send(
            connection,
            "welcome",
            version=version,
            session=job_id,
            robot=self.config.robot,
            params=self.params.with_control_period(dt).to_dict(),
            dt=dt,
            control_hz=1.0 / dt,
            supported_control_hz=list(self.supported_control_hz),
        )
        return session

    def _refusal(self, job_id: str | None) -> tuple[str, str] | None:
        if job_id is None:
            return UNEXPECTED
        if self._session is not None:
            return "busy", "the robot is serving another session"
        if self.state in (AgentState.FAULT, AgentState.MAINTENANCE):
            return "unavailable", f"the robot is in {self.state.value}"
        if self.state is AgentState.RESETTING:
            return "resetting", "the robot is still resetting; try again shortly"
        return None

    def _converse(self, connection: socket.socket, reader: FrameReader, session: _Session) -> None:
        while True:
            with self._lock:
                if session.end_reason is not None:
                    self._send(connection, "bye", version=session.version, reason=session.end_reason[1])
                    return
            payload = self._read_or_end(connection, reader, session)
            if payload is None:
                return
            message = decode_message(payload, allowed=CLIENT_TYPES - {"hello"})
            kind = message["type"]
            if kind == "close":
                session.end_reason = ("completed", "the client closed the session")
                self._send(connection, "bye", version=session.version, reason="session closed")
                return
            step = kind != "reset"
            reply = self._session_step(session, message["action"]) if step else self._session_reset(session)
            if reply is None:
                with self._lock:
                    reason = session.end_reason or ("agent_error", "session ended")
                self._send(connection, "bye", version=session.version, reason=reason[1])
                return
            if not step:  # step replies went out from the control loop at their boundary
                self._send(connection, "observation", version=session.version, **reply)

    def _read_or_end(self, connection: socket.socket, reader: FrameReader, session: _Session) -> bytes | None:
        """Next frame; None when the session was ended by the agent (cancel, time limit) meanwhile."""
        connection.settimeout(0.1)
        while True:
            try:
                payload = reader.read()
            except TimeoutError:
                with self._lock:
                    if session.end_reason is None and time.monotonic() - session.started_s > self.config.max_session_s:
                        session.end_reason = ("cancelled", "the session ran past its maximum duration")
                    if session.end_reason is not None:
                        self._send(connection, "bye", version=session.version, reason=session.end_reason[1])
                        return None
                continue
            if payload is None:
                session.end_reason = session.end_reason or ("client_error", "the client disconnected without close")
            connection.settimeout(None)
            return payload

    def _session_reset(self, session: _Session) -> dict[str, Any] | None:
        """Episode start: the pendulum brought to rest hanging (quick when it already is), then
        the reading of the next boundary."""
        with self._lock:
            session.stepping = False
            self._reset = ResetRoutine(time.monotonic(), timeout_s=self.config.reset_timeout_s)
            while self._reset is not None and session.end_reason is None and not self._stop.is_set():
                self._lock.wait(timeout=0.5)
            if self._last_reset is not None and not self._last_reset.ok:
                session.end_reason = ("agent_error", f"the robot could not reset: {self._last_reset.message}")
                return None
            if session.end_reason is not None:
                return None
            boundary_index = self.boundary_index
            while self.boundary_index == boundary_index and session.end_reason is None and not self._stop.is_set():
                self._lock.wait(timeout=0.5)
            reading = self._last_reading
            now = time.monotonic()
            session.last_theta, session.last_theta_dot = reading.theta_rad, reading.theta_dot_rad_per_s
            session.answered_boundary_s = self._last_boundary_s
            session.deadline_s = self._last_boundary_s + session.dt
            session.last_command_s = now
            session.awaiting_first_step = True
            session.pending = None
            session.requested = None
            session.want_reply = False
            session.missed_current = False
            session.held = 0.0
            session.stepping = True
            return _observation(session, reading, reading.time_s, 0.0, 0.0, ())

    def _session_step(self, session: _Session, action: float) -> dict[str, Any] | None:
        now = time.monotonic()
        with self._lock:
            if not session.stepping:
                raise ProtocolError("order", "step before reset: call env.reset() first")
            session.pending_arrival_s = now
            session.last_command_s = now
            session.want_reply = True
            session.reply = None
            if self.config.actuation == "arrival":
                self._apply_on_arrival(session, float(action))
            else:
                session.pending = float(action)
            while session.reply is None and session.end_reason is None and not self._stop.is_set():
                self._lock.wait(timeout=1.0)
            return session.reply

    def _close_session(self, session: _Session) -> None:
        with self._lock:
            session.stepping = False
            self._session = None
            self.dt = self._default_dt
            outcome, message = session.end_reason or ("client_error", "the session ended unexpectedly")
            if outcome == "completed" and session.events.get("velocity"):
                outcome = "safety_stop"
        self._stop_motor_safely()
        metadata = {
            "job_id": session.job_id,
            "robot": self.config.robot,
            "outcome": outcome,
            "message": message,
            "steps": session.steps,
            "total_reward": session.total_reward,
            "deadline_misses": session.misses,
            "safety_events": session.events,
            "duration_s": time.monotonic() - session.started_s,
            "control_period_s": session.dt,
            "control_hz": 1.0 / session.dt,
            "actuation": self.config.actuation,
            "actuation_latency_s": latency_summary(session.latencies),
            "calibration": self.params.with_control_period(session.dt).to_dict(),
        }
        duration = time.monotonic() - session.started_s
        folder = self.config.recordings_dir / session.job_id
        trajectory: Path | None
        metadata_path: Path | None
        try:
            trajectory, metadata_path = session.recorder.write(folder, metadata)
        except Exception:
            log.exception("could not write the recording of %s", session.job_id)
            trajectory = metadata_path = None
        self.metrics.count_session(outcome)
        result = SessionResult(
            job_id=session.job_id,
            outcome=outcome,
            message=message,
            steps=session.steps,
            total_reward=session.total_reward,
            deadline_misses=session.misses,
            safety_events=dict(session.events),
            started_monotonic_s=session.started_s,
            duration_s=duration,
            trajectory_path=trajectory,
            metadata_path=metadata_path,
            actuation_latency_s=latency_summary(session.latencies),
            control_period_s=session.dt,
        )
        with self._lock:
            # The result is final now (the recording is written): the job need not wait for the
            # pendulum to settle. The robot is not Ready again before its reset has finished.
            self._results[session.job_id] = result
            if self.state is not AgentState.FAULT:  # a faulty robot stays so; its reset report says why
                self._set_state(AgentState.RESETTING)
                self._reset = ResetRoutine(time.monotonic(), timeout_s=self.config.reset_timeout_s)
            self._lock.notify_all()
            while self._reset is not None and not self._stop.is_set():
                self._lock.wait(timeout=0.5)
            self._results[session.job_id] = replace(result, reset=self._last_reset)
            self._lock.notify_all()

    def _send(self, connection: socket.socket, kind: str, *, version: int = PROTOCOL_VERSION, **fields: Any) -> None:
        try:
            connection.sendall(encode_frame(encode_message(kind, version=version, **fields)))
        except OSError as error:
            log.info("could not send %s to the client: %s", kind, error)


def latency_summary(latencies: list[float]) -> dict[str, float]:
    """Count, mean, median, 99th percentile and largest of a session's actuation latencies (s)."""
    if not latencies:
        return {"count": 0}
    ordered = sorted(latencies)

    def percentile(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]

    return {
        "count": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "p50": percentile(0.5),
        "p99": percentile(0.99),
        "max": ordered[-1],
    }


def _observation(
    session: _Session, reading: SensorReading, boundary: float, late_by: float, applied: float, events: tuple[str, ...]
) -> dict[str, Any]:
    """Fields of the observation message answering a step or a reset."""
    return {
        "theta": reading.theta_rad,
        "theta_dot": reading.theta_dot_rad_per_s,
        "step": session.steps,
        "boundary_time": boundary - session.started_s,
        "late_by": late_by,
        "deadline_misses": session.misses,
        "applied": applied,
        "safety": list(events),
    }
