"""The virtual rig: a pigpiod-compatible TCP server in front of a simulated pendulum rig.

Spec sheet
----------
* **Wire protocol**: pigpiod's (`raas_node.virtual_rig.protocol`), enough for the real `pigpio`
  client and the `pigpio` driver: modes, pulls, read/write, software PWM (duty, range,
  frequency, real range), bank reads, ticks, notifications (NOIB/NB/NP/NC), scripts
  (PROC/PROCR/PROCU/PROCP/PROCS/PROCD/PARSE) and delays. Unknown commands answer
  ``PI_UNKNOWN_COMMAND`` (-88). Any number of clients; a client that disconnects leaves the
  outputs as they are and its scripts running, exactly like pigpiod (hence the dead-man script).
* **Rig**: wired as `RigWiring` says. The duty on the bridge pins (quantised as pigpio quantises
  at the configured frequency and range) drives `RealTimePendulum`, the gym_raas physics
  integrated in real time; its encoder count becomes quadrature levels on the A/B pins.
* **Notifications**: every encoder edge becomes a 12-byte report with the µs tick at which the
  shaft crossed the count boundary. Reports are batched and written every ``report_interval_s``
  (2 ms; pigpiod's own batching is 1 ms). A client that stops reading loses reports beyond
  256 KiB of backlog (logged), as a stalled pigpio client would.
* **Clock**: `time.monotonic`; ticks are its microseconds modulo 2³².
* **Inspection** (same process): `state`, `encoder_count_at`, `motor_duty_log`, `place`.

Threads: the server runs an asyncio loop, in the caller's loop (`serve`) or a thread of its own
(`start`/`stop`). Inspection methods may be called from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gym_raas.params import PendulumParams
from gym_raas.simulator import HANGING_RAD, wrap_angle
from raas_node.drivers.config import DEFAULT_SAMPLE_RATE_US, BridgeMode, RigWiring
from raas_node.virtual_rig.gpio import GpioBank
from raas_node.virtual_rig.pendulum import EncoderEdge, RealTimePendulum
from raas_node.virtual_rig.protocol import (
    HARDWARE_REVISION,
    MAX_EXTENSION_BYTES,
    MAX_NOTIFY_HANDLES,
    MAX_SCRIPT_PARAMS,
    MAX_SCRIPTS,
    PIGPIO_VERSION,
    REPORT,
    REQUEST,
    SCRIPT_STATUS,
    Command,
    Error,
    ScriptState,
    reply,
    to_int32,
)
from raas_node.virtual_rig.scripts import ScriptError, StoredScript, parse_script

logger = logging.getLogger(__name__)

MAX_BACKLOG_BYTES = 256 * 1024
IDLE_INTERVAL_S = 0.05
"""Physics/report period while no client listens to edges (keeps idle rigs cheap)."""
HISTORY_EDGES = 20_000
"""Edges kept for `encoder_count_at` (≈ 10 s of a fast swing, ≈ 1 MB)."""
_QUADRATURE_LEVELS = ((0, 0), (1, 0), (1, 1), (0, 1))
"""(A, B) levels for count mod 4: A leads B when the count goes up."""
_SCRIPT_INIT_DELAY_S = 0.001
_TICK_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class RigState:
    """The rig's ground truth at ``time_s`` (rig clock: `time.monotonic`)."""

    time_s: float
    theta_rad: float
    """Angle from upright, wrapped into [-π, π)."""
    theta_dot_rad_per_s: float
    encoder_count: int
    """Quadrature count since start, 0 hanging, + with θ (what a perfect decoder counts)."""
    motor_duty: float
    """Signed duty reaching the motor (after pigpio's PWM quantisation, before the deadband)."""
    pin_duty: dict[int, float | None]
    """Output duty of each bridge pin (PWM quantised; 0/1 for written levels; None = input)."""
    last_motor_duty_change_s: float
    """Rig time at which ``motor_duty`` last changed."""
    last_pwm_change_s: dict[int, float]
    """Rig time at which each bridge pin's output duty last changed."""
    clients: int
    """Open TCP connections."""
    running_scripts: int


@dataclass(eq=False)
class _Stream:
    """A notification handle and the connection its reports go to."""

    writer: asyncio.StreamWriter
    bits: int = 0
    paused: bool = True
    sequence: int = 0
    pending: bytearray = field(default_factory=bytearray)
    dropped: int = 0


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    handles: set[int] = field(default_factory=set)
    close_after_reply: bool = False


class VirtualRig:
    """A pigpiod-compatible virtual pendulum rig.

    Arguments:
        params: the rig's physics (default: the reference rig).
        wiring: pins and bridge mode (must match the driver's `PigpioDriverConfig.wiring`).
        host, port: where to listen; port 0 picks a free port (read `port` after start).
        initial_theta_rad, initial_theta_dot_rad_per_s: start state (default hanging at rest).
        sample_rate_us: the emulated ``pigpiod -s`` (sets the PWM frequencies and real ranges).
        report_interval_s: how often physics is advanced and edge reports are sent.
    """

    def __init__(
        self,
        params: PendulumParams | None = None,
        wiring: RigWiring | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        initial_theta_rad: float = HANGING_RAD,
        initial_theta_dot_rad_per_s: float = 0.0,
        sample_rate_us: int = DEFAULT_SAMPLE_RATE_US,
        report_interval_s: float = 0.002,
    ) -> None:
        self.params = params or PendulumParams()
        self.wiring = wiring or RigWiring()
        self.host = host
        self.port = port
        self.report_interval_s = report_interval_s
        self._lock = threading.Lock()
        self._bank = GpioBank(sample_rate_us)
        self._pendulum = RealTimePendulum(
            self.params,
            time_s=self.clock(),
            theta_rad=initial_theta_rad,
            theta_dot_rad_per_s=initial_theta_dot_rad_per_s,
        )
        self._streams: dict[int, _Stream] = {}
        self._connections: set[_Connection] = set()
        self._scripts: dict[int, StoredScript] = {}
        self._edge_history: collections.deque[EncoderEdge] = collections.deque()
        self._history_base_count = self._pendulum.count
        self._duty_log: collections.deque[tuple[float, float]] = collections.deque(maxlen=10_000)
        self._pin_duty: dict[int, float | None] = {pin: None for pin in self.wiring.bridge_pins}
        self._last_pwm_change_s: dict[int, float] = {pin: self._pendulum.time_s for pin in self.wiring.bridge_pins}
        self._last_duty_change_s = self._pendulum.time_s
        self._static_levels = 0
        self._levels = 0
        self._set_encoder_levels(self._pendulum.count)
        self._refresh_levels(self._pendulum.time_s)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @staticmethod
    def clock() -> float:
        """The rig's clock (seconds): `time.monotonic`, shared with everything in this host."""
        return time.monotonic()

    def start(self, timeout_s: float = 5.0) -> VirtualRig:
        """Serve in a background thread; returns once listening (``port`` is then known)."""
        if self._thread is not None:
            raise RuntimeError("the virtual rig is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve(ready.set))
            except BaseException as error:
                failure.append(error)
                ready.set()

        self._thread = threading.Thread(target=run, name=f"virtual-rig-{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or failure:
            self._thread = None
            raise RuntimeError(f"the virtual rig did not start on {self.host}:{self.port}") from (
                failure[0] if failure else None
            )
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving (closes every connection) and wait for the thread. Safe to call twice."""
        thread, loop, event = self._thread, self._loop, self._stop_requested
        if thread is None:
            return
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may have finished on its own
                loop.call_soon_threadsafe(event.set)
        thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> VirtualRig:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Listen and run the rig in the running loop until `stop` (or cancellation)."""
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        server = await asyncio.start_server(self._serve_connection, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        physics = asyncio.create_task(self._run_physics(), name="virtual-rig-physics")
        logger.info("virtual rig listening on %s:%d", self.host, self.port)
        if ready is not None:
            ready()
        try:
            await self._stop_requested.wait()
        finally:
            physics.cancel()
            server.close()
            for script in list(self._scripts.values()):
                if script.task is not None:
                    script.task.cancel()
            for connection in list(self._connections):
                connection.writer.close()
            await asyncio.gather(physics, return_exceptions=True)
            await server.wait_closed()
            logger.info("virtual rig on %s:%d stopped", self.host, self.port)

    # -- inspection (any thread) -------------------------------------------------------------

    def state(self) -> RigState:
        """Ground truth now (the physics is advanced to this instant first)."""
        with self._lock:
            now = self.clock()
            self._publish(self._pendulum.advance_to(now))
            pendulum = self._pendulum
            return RigState(
                time_s=pendulum.time_s,
                theta_rad=float(wrap_angle(pendulum.theta_rad)),
                theta_dot_rad_per_s=pendulum.theta_dot_rad_per_s,
                encoder_count=pendulum.count,
                motor_duty=pendulum.duty,
                pin_duty=dict(self._pin_duty),
                last_motor_duty_change_s=self._last_duty_change_s,
                last_pwm_change_s=dict(self._last_pwm_change_s),
                clients=len(self._connections),
                running_scripts=sum(
                    script.state in (ScriptState.RUNNING, ScriptState.WAITING) for script in self._scripts.values()
                ),
            )

    def encoder_count_at(self, time_s: float) -> int:
        """True encoder count at a past rig time (from the last 20 000 edges)."""
        with self._lock:
            for edge in reversed(self._edge_history):
                if edge.time_s <= time_s:
                    return edge.count
            return self._history_base_count

    def motor_duty_log(self) -> list[tuple[float, float]]:
        """(rig time, motor duty) at every change of the duty reaching the motor (last 10 000)."""
        with self._lock:
            return list(self._duty_log)

    def place(self, theta_rad: float, theta_dot_rad_per_s: float = 0.0) -> None:
        """Move the pendulum by hand to an angle (from upright) and speed; the encoder sees the move."""
        with self._lock:
            self._publish(self._pendulum.place(self.clock(), theta_rad, theta_dot_rad_per_s))

    def tick(self, time_s: float) -> int:
        """pigpio tick (µs, 32 bits) of a rig time."""
        return int(time_s * 1e6) & _TICK_MASK

    # -- physics and notifications (loop thread, except _publish) ------------------------------

    async def _run_physics(self) -> None:
        wake = self._wake = asyncio.Event()
        while True:
            listening = any(not stream.paused and stream.bits for stream in self._streams.values())
            if listening:
                await asyncio.sleep(self.report_interval_s)
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), IDLE_INTERVAL_S)
            wake.clear()
            try:
                with self._lock:
                    self._publish(self._pendulum.advance_to(self.clock()))
                self._flush()
            except Exception:  # the rig must keep running whatever one client does
                logger.exception("virtual rig physics step failed")

    def _publish(self, edges: list[EncoderEdge]) -> None:
        """Queue reports for encoder edges (caller holds the lock)."""
        for edge in edges:
            if len(self._edge_history) >= HISTORY_EDGES:
                self._history_base_count = self._edge_history.popleft().count
            self._edge_history.append(edge)
            self._set_encoder_levels(edge.count)
            self._report(self.tick(edge.time_s), self._static_levels | self._encoder_bits)

    def _report(self, tick: int, levels: int) -> None:
        changed = levels ^ self._levels
        self._levels = levels
        if not changed:
            return
        for stream in self._streams.values():
            if not stream.paused and stream.bits & changed:
                stream.pending += REPORT.pack(stream.sequence, 0, tick, levels)
                stream.sequence = (stream.sequence + 1) & 0xFFFF

    def _flush(self) -> None:
        with self._lock:
            batches = [(stream, bytes(stream.pending)) for stream in self._streams.values() if stream.pending]
            for stream, _ in batches:
                stream.pending.clear()
        for stream, batch in batches:
            transport = stream.writer.transport
            if transport.is_closing():
                continue
            if transport.get_write_buffer_size() > MAX_BACKLOG_BYTES:
                if stream.dropped == 0:
                    logger.warning("a notification client stopped reading; dropping its edge reports")
                stream.dropped += len(batch) // REPORT.size
                continue
            stream.writer.write(batch)

    def _set_encoder_levels(self, count: int) -> None:
        level_a, level_b = _QUADRATURE_LEVELS[count % 4]
        self._bank.external_levels[self.wiring.encoder_a_pin] = level_a
        self._bank.external_levels[self.wiring.encoder_b_pin] = level_b
        self._encoder_bits = (level_a << self.wiring.encoder_a_pin) | (level_b << self.wiring.encoder_b_pin)

    def _refresh_levels(self, now: float) -> None:
        """After a GPIO command: bridge outputs → motor duty, and a report if monitored levels changed."""
        wiring, bank = self.wiring, self._bank
        for pin in wiring.bridge_pins:
            duty = bank.output_duty(pin)
            if duty != self._pin_duty[pin]:
                self._pin_duty[pin] = duty
                self._last_pwm_change_s[pin] = now
        motor_duty = self._motor_duty()
        if motor_duty != self._pendulum.duty:
            self._publish(self._pendulum.set_duty(now, motor_duty))
            self._last_duty_change_s = now
            self._duty_log.append((now, motor_duty))
        encoder_mask = (1 << wiring.encoder_a_pin) | (1 << wiring.encoder_b_pin)
        self._static_levels = bank.bank_1_levels() & ~encoder_mask
        self._report(self.tick(now), self._static_levels | self._encoder_bits)

    def _motor_duty(self) -> float:
        wiring, duty = self.wiring, self._pin_duty
        if wiring.bridge_mode is BridgeMode.TWO_PWM:
            return (duty[wiring.forward_pwm_pin] or 0.0) - (duty[wiring.backward_pwm_pin] or 0.0)
        enable = duty[wiring.pwm_pin] or 0.0
        backward = (duty[wiring.direction_pin] or 0.0) >= 0.5
        if wiring.direction_complement_pin is not None:
            complement = (duty[wiring.direction_complement_pin] or 0.0) >= 0.5
            if complement == backward:
                return 0.0  # IN1 = IN2: the bridge brakes
        return -enable if backward else enable

    # -- connections -------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        self._connections.add(connection)
        peer = writer.get_extra_info("peername")
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        logger.debug("client %s connected", peer)
        try:
            while not connection.close_after_reply:
                command, p1, p2, p3 = REQUEST.unpack(await reader.readexactly(REQUEST.size))
                if p3 > MAX_EXTENSION_BYTES:
                    writer.write(reply(command, p1, p2, Error.MSG_TOOBIG))
                    break
                extension = await reader.readexactly(p3) if p3 else b""
                if command in (Command.MILS, Command.MICS):
                    result, data = await self._delay(command, p1), b""
                else:
                    result, data = self._execute(command, p1, p2, extension, connection)
                writer.write(reply(command, p1, p2, result) + data)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            logger.exception("client %s: unexpected error; closing its connection", peer)
        finally:
            with self._lock:
                for handle in connection.handles:
                    self._streams.pop(handle, None)
            self._connections.discard(connection)
            writer.close()
            logger.debug("client %s disconnected", peer)

    async def _delay(self, command: int, amount: int) -> int:
        limit, scale, error = (
            (60000, 1e-3, Error.BAD_MILS_DELAY) if command == Command.MILS else (1_000_000, 1e-6, Error.BAD_MICS_DELAY)
        )
        if amount > limit:
            return error
        await asyncio.sleep(amount * scale)
        return 0

    def _execute(
        self, command: int, p1: int, p2: int, extension: bytes, connection: _Connection | None
    ) -> tuple[int, bytes]:
        """Run one command; returns (result, data after the reply)."""
        with self._lock:
            now = self.clock()
            result = self._gpio_command(command, p1, p2, now)
            if result is not None:
                return result, b""
            if command in _NOTIFY_COMMANDS:
                return self._notify_command(command, p1, p2, connection), b""
            return self._script_command(command, p1, extension)

    def _gpio_command(self, command: int, p1: int, p2: int, now: float) -> int | None:
        """GPIO and clock commands (caller holds the lock); None if ``command`` is not one."""
        bank = self._bank
        handlers: dict[int, Callable[[], int]] = {
            Command.MODES: lambda: bank.set_mode(p1, p2),
            Command.MODEG: lambda: bank.get_mode(p1),
            Command.PUD: lambda: bank.set_pull(p1, p2),
            Command.READ: lambda: bank.read(p1),
            Command.WRITE: lambda: bank.write(p1, p2),
            Command.PWM: lambda: bank.set_pwm(p1, p2),
            Command.PRS: lambda: bank.set_range(p1, p2),
            Command.PFS: lambda: bank.set_frequency(p1, p2),
            Command.PRG: lambda: bank.get_range(p1),
            Command.PFG: lambda: bank.get_frequency(p1),
            Command.PRRG: lambda: bank.get_real_range(p1),
            Command.GDC: lambda: bank.get_dutycycle(p1),
            Command.BR1: lambda: self._static_levels | self._encoder_bits,
            Command.BR2: lambda: 0,
            Command.TICK: lambda: self.tick(now),
            Command.HWVER: lambda: HARDWARE_REVISION,
            Command.PIGPV: lambda: PIGPIO_VERSION,
        }
        handler = handlers.get(command)
        if handler is None:
            return None
        result = handler()
        if command in _OUTPUT_COMMANDS and result >= 0:
            self._refresh_levels(now)
        return result

    def _notify_command(self, command: int, handle: int, bits: int, connection: _Connection | None) -> int:
        if command == Command.NO:
            logger.warning("NO (notification pipes) is not supported by the virtual rig; use NOIB")
            return Error.NO_HANDLE
        if command == Command.NOIB:
            if connection is None:
                return Error.NO_HANDLE
            free = [number for number in range(MAX_NOTIFY_HANDLES) if number not in self._streams]
            if not free:
                return Error.NO_HANDLE
            self._streams[free[0]] = _Stream(connection.writer)
            connection.handles.add(free[0])
            return free[0]
        stream = self._streams.get(handle)
        if stream is None:
            return Error.BAD_HANDLE
        if command == Command.NB:
            stream.bits, stream.paused = bits, False
            if self._wake is not None:
                self._wake.set()  # leave the idle pace now
        elif command == Command.NP:
            stream.paused = True
        else:  # NC
            del self._streams[handle]
            if connection is not None and handle in connection.handles:
                connection.handles.discard(handle)
                connection.close_after_reply = True
        return 0

    # -- scripts -----------------------------------------------------------------------------

    def _script_command(self, command: int, script_id: int, extension: bytes) -> tuple[int, bytes]:
        if command in (Command.PROC, Command.PARSE):
            return self._store_script(extension, store=command == Command.PROC), b""
        if command not in _SCRIPT_COMMANDS:
            logger.info("unknown pigpio command %d answered with PI_UNKNOWN_COMMAND", command)
            return Error.UNKNOWN_COMMAND, b""
        script = self._scripts.get(script_id)
        if script is None:
            return Error.BAD_SCRIPT_ID, b""
        if command == Command.PROCP:
            return SCRIPT_STATUS.size, SCRIPT_STATUS.pack(int(script.state), *script.params)
        if command in (Command.PROCR, Command.PROCU):
            count = len(extension) // 4
            if count > MAX_SCRIPT_PARAMS:
                return Error.TOO_MANY_PARAM, b""
            values = list(struct.unpack(f"<{count}I", extension[: count * 4]))
            if command == Command.PROCU:
                script.set_params(values)
                return 0, b""
            if script.state not in (ScriptState.HALTED, ScriptState.FAILED):
                return Error.NOT_HALTED, b""
            script.set_params(values)
            script.state = ScriptState.RUNNING
            script.task = asyncio.get_running_loop().create_task(script.run(self._script_daemon_command))
            return 0, b""
        if script.task is not None:
            script.task.cancel()
        if script.state != ScriptState.INITING:
            script.state = ScriptState.HALTED
        if command == Command.PROCD:
            del self._scripts[script_id]
        return 0, b""

    def _store_script(self, extension: bytes, *, store: bool) -> int:
        text = extension.split(b"\0", 1)[0].decode("latin-1")
        try:
            program = parse_script(text)
        except ScriptError as error:
            logger.info("script refused (%s): %r", error, text)
            return int(error.code)
        if not store:
            return 0
        free = [number for number in range(MAX_SCRIPTS) if number not in self._scripts]
        if not free:
            return Error.NO_SCRIPT_ROOM
        script = StoredScript(free[0], program)
        self._scripts[script.script_id] = script

        def ready() -> None:
            if script.state == ScriptState.INITING:
                script.state = ScriptState.HALTED

        # pigpiod starts a thread per script; until it waits, run requests are refused.
        asyncio.get_running_loop().call_later(_SCRIPT_INIT_DELAY_S, ready)
        return script.script_id

    def _script_daemon_command(self, name: str, p1: int, p2: int) -> int:
        command = _SCRIPT_DAEMON_COMMANDS[name]
        with self._lock:
            result = self._gpio_command(command, p1 & _TICK_MASK, p2 & _TICK_MASK, self.clock())
        return to_int32(result if result is not None else Error.UNKNOWN_COMMAND)


_OUTPUT_COMMANDS = frozenset({Command.MODES, Command.WRITE, Command.PWM, Command.PRS, Command.PFS, Command.PUD})
_NOTIFY_COMMANDS = frozenset({Command.NO, Command.NOIB, Command.NB, Command.NP, Command.NC})
_SCRIPT_COMMANDS = frozenset({Command.PROCR, Command.PROCU, Command.PROCP, Command.PROCS, Command.PROCD})
_SCRIPT_DAEMON_COMMANDS = {
    "PWM": Command.PWM,
    "WRITE": Command.WRITE,
    "READ": Command.READ,
    "TICK": Command.TICK,
    "BR1": Command.BR1,
}
