"""The ``pigpio`` driver: a real rig (H-bridge, quadrature encoder) through the pigpio daemon.

Spec sheet
----------
* **Link**: the real `pigpio` client (two TCP connections to pigpiod: commands, and the
  notification stream that carries encoder edges with µs ticks).
* **Bridge** (`RigWiring.bridge_mode`): ``two_pwm`` (PWM on IN1 forward, IN2 backward) or
  ``pwm_direction`` (PWM on ENA, direction on IN1 and optionally its complement on IN2).
  Positive duty drives θ up. A duty is quantised as pigpiod does it (`PwmResolution`); the
  effective resolution of the configured frequency and range is `pwm` (e.g. 800 Hz → 250 steps).
* **Encoder**: A and B decoded from pigpio edge callbacks (×4: every edge counts);
  ``params.encoder_counts_per_rev`` counts per revolution. Speed from edge timing with
  `gym_raas.encoder.update_velocity`, evaluated at each `read`, clipped like the simulator's.
  Edge ticks (pigpiod's µs clock, wraps every 71.6 min) are mapped onto `time.monotonic`; the
  mapping is re-checked every 10 s so wrap-around and slow clock drift do no harm.
* **Dead-man switch**: a script stored in pigpiod (`deadman_script`) watches a heartbeat
  parameter and zeroes the bridge PWM when it stops changing, so the motor stops even when this
  process is killed or hangs. `feed_deadman` bumps the heartbeat (one `update_script` call).
  Scripts left running by a dead agent are recognised by a marker parameter and removed at start.
* **Errors**: anything the daemon refuses or a lost connection raises `DriverError`.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pigpio

from gym_raas.params import PendulumParams
from raas_node.drivers.base import DriverError, SensorReading
from raas_node.drivers.config import BridgeMode, PigpioDriverConfig, PwmResolution, RigWiring
from raas_node.drivers.readout import EncoderReadout

logger = logging.getLogger(__name__)

DEADMAN_MARKER = 0x52614153
"""Value of parameter p9 of every dead-man script this driver starts ("RaAS"): how a new agent
recognises the scripts of a dead one."""
MAX_SCRIPTS = 32
"""pigpiod's number of script slots."""
CLOCK_RESYNC_INTERVAL_S = 10.0
CLOCK_STEP_THRESHOLD_S = 0.002
_SCRIPT_READY_TIMEOUT_S = 2.0
_CLOCK_SAMPLES = 5
_TICK_MASK = 0xFFFFFFFF
_HALF_TICK_RANGE = 1 << 31
_QUADRATURE_PHASE = {(0, 0): 0, (1, 0): 1, (1, 1): 2, (0, 1): 3}
"""Phase of the (A, B) levels; the phase goes up by one per count as θ increases (A leads)."""

_T = TypeVar("_T")


def deadman_script(wiring: RigWiring, missed_checks: int, check_interval_ms: int) -> str:
    """pigpio script text of the dead-man switch.

    Parameters: p0 heartbeat (the agent changes it), p1 trip counter (the script counts the
    times it stopped the motor), p9 `DEADMAN_MARKER`. Every ``check_interval_ms`` it compares p0
    with the value it saw last; after ``missed_checks`` checks in a row without a change it sets
    PWM 0 on the bridge's PWM pins (and keeps doing so until the heartbeat changes again).
    Valid for the real pigpiod (see pigs "Scripts") and for the virtual rig's interpreter.
    """
    stop_motor = [f"pwm {pin} 0" for pin in wiring.pwm_pins]
    lines = [
        "ld v0 p0",  # heartbeat seen last
        "ld v1 0",  # checks in a row without a change
        "tag 1",
        f"mils {check_interval_ms}",
        "lda p0",
        "cmp v0",
        "jz 2",
        "sta v0",  # fed: remember and start counting again
        "ld v1 0",
        "jmp 1",
        "tag 2",
        "inr v1",
        "lda v1",
        f"cmp {missed_checks}",
        "jm 1",  # not yet starved
        *stop_motor,
        "lda v1",
        f"cmp {missed_checks}",
        "jnz 1",  # count each trip once
        "inr p1",
        "jmp 1",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class DeadmanStatus:
    """The dead-man script as pigpiod reports it."""

    running: bool
    trips: int
    """Times the script stopped the motor since this driver started it."""


class PigpioDriver:
    """`RobotDriver` for a pendulum rig behind pigpiod (real, or the virtual rig).

    Arguments:
        config: daemon address, wiring, PWM and dead-man settings.
        params: the robot's calibration (encoder resolution, velocity limit); reference rig if None.
        connect_timeout_s: how long to wait for the daemon to accept a connection.

    Construction sets the bridge pins to outputs with PWM off, starts the dead-man script and the
    encoder callbacks; the encoder count starts at 0 (call `zero_encoder` when hanging at rest).
    """

    def __init__(
        self,
        config: PigpioDriverConfig | None = None,
        params: PendulumParams | None = None,
        *,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.config = config or PigpioDriverConfig()
        self.params = params or PendulumParams()
        self.deadman_timeout_s = self.config.deadman_timeout_s
        self._wiring = self.config.wiring
        self._address = f"{self.config.host}:{self.config.port}"
        self._lock = threading.Lock()
        self._closed = False
        self._callbacks: list[Any] = []
        self._script_id: int | None = None
        self._heartbeat = 0
        self._backward = False
        # Encoder state: written by the pigpio notification thread under _lock, set up in
        # _set_up_encoder. Estimator state: used by read() only.
        self._levels: tuple[int, int] = (0, 0)
        self._phase = 0
        self._count = 0
        self._decode_errors = 0
        self._edge_time_s = 0.0
        self._reference_tick = 0
        self._reference_time_s = 0.0
        self._clock_checked_s = 0.0
        self._readout = EncoderReadout(self.params, 0, 0.0)
        self._pi = _connect(self.config.host, self.config.port, connect_timeout_s)
        try:
            self.pwm = self._set_up_bridge()
            self._remove_stale_deadman_scripts()
            self._script_id = self._start_deadman()
            self._set_up_encoder()
        except BaseException:
            self._closed = True
            if self._script_id is not None:
                self._quietly("delete the dead-man script", self._pi.delete_script, self._script_id)
            self._pi.stop()
            raise

    # -- RobotDriver -------------------------------------------------------------------------

    def read(self) -> SensorReading:
        """Encoder count and edge-timing speed now (no daemon round trip, except every 10 s)."""
        self._check_open()
        now = time.monotonic()
        if now - self._clock_checked_s > CLOCK_RESYNC_INTERVAL_S:
            self._resync_clock()
            now = time.monotonic()
        with self._lock:
            count, edge_time = self._count, self._edge_time_s
        return self._readout.reading(count, edge_time, now)

    def apply_duty(self, duty: float) -> float:
        """Drive the bridge at a signed duty in [-1, 1]; returns the duty that reaches the pins."""
        if not math.isfinite(duty):
            raise ValueError(f"duty must be finite, got {duty}")
        self._check_open()
        duty = min(max(duty, -1.0), 1.0)
        dutycycle = self.pwm.dutycycle_for(abs(duty))
        effective = self.pwm.effective_duty(dutycycle)
        backward = duty < 0.0
        wiring = self._wiring
        if wiring.bridge_mode is BridgeMode.TWO_PWM:
            on_pin, off_pin = (
                (wiring.backward_pwm_pin, wiring.forward_pwm_pin)
                if backward
                else (wiring.forward_pwm_pin, wiring.backward_pwm_pin)
            )
            self._pwm(off_pin, 0)
            self._pwm(on_pin, dutycycle)
        else:
            if dutycycle and backward != self._backward:
                self._pwm(wiring.pwm_pin, 0)  # never reverse under power
                self._set_direction(backward)
            self._pwm(wiring.pwm_pin, dutycycle)
        return -effective if backward and effective else effective

    def stop_motor(self) -> None:
        """PWM 0 on every bridge PWM pin."""
        self._check_open()
        for pin in self._wiring.pwm_pins:
            self._pwm(pin, 0)

    def feed_deadman(self) -> None:
        """Change the heartbeat parameter of the dead-man script (one daemon round trip)."""
        self._check_open()
        self._heartbeat = (self._heartbeat + 1) & 0x7FFFFFFF
        self._call("update_script", self._pi.update_script, self._script_id, [self._heartbeat])

    def zero_encoder(self) -> None:
        """Declare the current position as encoder zero (hanging at rest)."""
        self._check_open()
        with self._lock:
            self._readout.zero_count = self._count

    def close(self) -> None:
        """Stop the motor, remove the dead-man script and disconnect. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for pin in self._wiring.pwm_pins:
            self._quietly(f"PWM 0 on GPIO {pin}", self._pi.set_PWM_dutycycle, pin, 0)
        for callback in self._callbacks:
            self._quietly("cancel an encoder callback", callback.cancel)
        if self._script_id is not None:
            self._quietly("stop the dead-man script", self._pi.stop_script, self._script_id)
            self._quietly("delete the dead-man script", self._pi.delete_script, self._script_id)
        self._disconnect()

    def _disconnect(self) -> None:
        """pigpio's ``pi.stop``: the notification stream, then the command socket. The stream's
        thread may have died with its socket already (pigpiod or the network closed it); its stop
        then raises, and the command socket is closed all the same (no connection left behind)."""
        try:
            self._pi.stop()
        except OSError as error:
            logger.warning(
                "while closing: the notification stream from pigpiod at %s was gone (%s)", self._address, error
            )
            self._pi._notify = None  # (pigpio's own attribute: its stop() skips a notifier that is None)
            self._pi.stop()

    # -- extras ------------------------------------------------------------------------------

    def deadman_status(self) -> DeadmanStatus:
        """Ask pigpiod whether the dead-man script runs and how often it stopped the motor."""
        self._check_open()
        status, parameters = self._call("script_status", self._pi.script_status, self._script_id)
        if status < 0:
            raise DriverError(f"pigpiod at {self._address} lost the dead-man script: {pigpio.error_text(status)}")
        running = status in (pigpio.PI_SCRIPT_RUNNING, pigpio.PI_SCRIPT_WAITING)
        return DeadmanStatus(running=running, trips=int(parameters[1]))

    @property
    def encoder_errors(self) -> int:
        """Impossible quadrature transitions seen (both channels changed, or an edge was lost)."""
        with self._lock:
            return self._decode_errors

    # -- set-up ------------------------------------------------------------------------------

    def _set_up_bridge(self) -> PwmResolution:
        wiring, config = self._wiring, self.config
        resolutions = set()
        for pin in wiring.pwm_pins:
            self._call(f"set GPIO {pin} to output", self._pi.set_mode, pin, pigpio.OUTPUT)
            self._pwm(pin, 0)
            frequency = self._call(
                f"set PWM frequency of GPIO {pin}", self._pi.set_PWM_frequency, pin, config.pwm_frequency_hz
            )
            self._call(f"set PWM range of GPIO {pin}", self._pi.set_PWM_range, pin, config.pwm_range)
            real_range = self._call(f"get PWM real range of GPIO {pin}", self._pi.get_PWM_real_range, pin)
            resolutions.add(PwmResolution(frequency, config.pwm_range, real_range))
        for pin in wiring.direction_pins:
            self._call(f"set GPIO {pin} to output", self._pi.set_mode, pin, pigpio.OUTPUT)
        if wiring.direction_pins:
            self._set_direction(False)
        resolution = min(resolutions, key=lambda item: item.duty_steps)
        if resolution.frequency_hz != config.pwm_frequency_hz:
            logger.info(
                "pigpiod runs PWM at %d Hz (nearest to the requested %d Hz)",
                resolution.frequency_hz,
                config.pwm_frequency_hz,
            )
        if resolution.duty_steps != self.params.pwm_duty_steps:
            logger.warning(
                "PWM gives %d duty steps but the calibration assumes %d: set pwm_frequency_hz/pwm_range "
                "to match, or recalibrate",
                resolution.duty_steps,
                self.params.pwm_duty_steps,
            )
        return resolution

    def _remove_stale_deadman_scripts(self) -> None:
        for script_id in range(MAX_SCRIPTS):
            status, parameters = self._call("script_status", self._pi.script_status, script_id)
            if status >= 0 and len(parameters) == 10 and parameters[9] == DEADMAN_MARKER:
                logger.warning("removing dead-man script %d left in pigpiod by an earlier agent", script_id)
                self._call("stop a stale script", self._pi.stop_script, script_id)
                self._call("delete a stale script", self._pi.delete_script, script_id)

    def _start_deadman(self) -> int:
        config = self.config
        text = deadman_script(self._wiring, config.deadman_missed_checks, config.deadman_check_interval_ms)
        script_id = int(self._call("store the dead-man script", self._pi.store_script, text.encode("ascii")))
        try:
            # pigpiod starts a thread per script: it accepts a run only once that thread waits.
            self._wait_for_script(script_id, (pigpio.PI_SCRIPT_HALTED,))
            parameters = [0] * 9 + [DEADMAN_MARKER]
            self._call("run the dead-man script", self._pi.run_script, script_id, parameters)
            self._wait_for_script(script_id, (pigpio.PI_SCRIPT_RUNNING, pigpio.PI_SCRIPT_WAITING))
        except BaseException:
            self._quietly("delete the dead-man script", self._pi.delete_script, script_id)
            raise
        logger.info(
            "dead-man script %d running: motor stops %.0f–%.0f ms after the last feed",
            script_id,
            config.deadman_missed_checks * config.deadman_check_interval_ms,
            config.deadman_worst_case_stop_s * 1000,
        )
        return script_id

    def _wait_for_script(self, script_id: int, wanted: tuple[int, ...]) -> None:
        deadline = time.monotonic() + _SCRIPT_READY_TIMEOUT_S
        while True:
            status, _ = self._call("script_status", self._pi.script_status, script_id)
            if status in wanted:
                return
            if status < 0 or status == pigpio.PI_SCRIPT_FAILED or time.monotonic() > deadline:
                raise DriverError(
                    f"the dead-man script in pigpiod at {self._address} did not start (status {status}); "
                    "restart pigpiod and the agent"
                )
            time.sleep(0.001)

    def _set_up_encoder(self) -> None:
        wiring = self._wiring
        pull = pigpio.PUD_UP if wiring.encoder_pull_up else pigpio.PUD_OFF
        for pin in wiring.encoder_pins:
            self._call(f"set GPIO {pin} to input", self._pi.set_mode, pin, pigpio.INPUT)
            self._call(f"set the pull of GPIO {pin}", self._pi.set_pull_up_down, pin, pull)
        levels = tuple(int(self._call(f"read GPIO {pin}", self._pi.read, pin)) for pin in wiring.encoder_pins)
        self._levels = (levels[0], levels[1])
        self._phase = _QUADRATURE_PHASE[self._levels]
        self._reference_tick, self._reference_time_s = self._sample_tick()
        self._clock_checked_s = time.monotonic()
        self._edge_time_s = self._reference_time_s
        self._readout.restart(self._reference_time_s)
        for pin in wiring.encoder_pins:
            callback = self._call(f"watch GPIO {pin}", self._pi.callback, pin, pigpio.EITHER_EDGE, self._on_edge)
            self._callbacks.append(callback)

    # -- encoder (runs in the pigpio notification thread) -------------------------------------

    def _on_edge(self, gpio: int, level: int, tick: int) -> None:
        if level not in (0, 1):
            return  # watchdog report, no edge
        try:
            with self._lock:
                self._decode(gpio, level, tick)
        except Exception:  # an exception would end pigpio's notification thread for good
            logger.exception("encoder edge on GPIO %d could not be decoded", gpio)

    def _decode(self, gpio: int, level: int, tick: int) -> None:
        level_a, level_b = self._levels
        if gpio == self._wiring.encoder_a_pin:
            missed = level == level_a
            level_a = level
        else:
            missed = level == level_b
            level_b = level
        self._levels = (level_a, level_b)
        phase = _QUADRATURE_PHASE[self._levels]
        step = (phase - self._phase) % 4
        self._phase = phase
        if step == 1:
            self._count += 1
        elif step == 3:
            self._count -= 1
        if missed or step == 2:
            self._decode_errors += 1
        self._edge_time_s = self._tick_to_time(tick)

    def _tick_to_time(self, tick: int) -> float:
        """Driver time of a pigpiod tick near the reference (±35 min, wrap-safe)."""
        offset_us = ((tick - self._reference_tick + _HALF_TICK_RANGE) & _TICK_MASK) - _HALF_TICK_RANGE
        return self._reference_time_s + offset_us * 1e-6

    def _sample_tick(self) -> tuple[int, float]:
        """A pigpiod tick and the driver time it corresponds to (best of a few round trips)."""
        best: tuple[float, int, float] | None = None
        for _ in range(_CLOCK_SAMPLES):
            before = time.monotonic()
            tick = int(self._call("get_current_tick", self._pi.get_current_tick))
            after = time.monotonic()
            if best is None or after - before < best[0]:
                best = (after - before, tick, (before + after) / 2.0)
        assert best is not None
        return best[1], best[2]

    def _resync_clock(self) -> None:
        tick, measured = self._sample_tick()
        after = time.monotonic()
        with self._lock:
            predicted = self._tick_to_time(tick)
            if abs(measured - predicted) > CLOCK_STEP_THRESHOLD_S:
                logger.info(
                    "pigpiod tick drifted %.1f ms from the driver clock; re-anchored", (measured - predicted) * 1000
                )
                predicted = measured
            self._reference_tick, self._reference_time_s = tick, predicted
        self._clock_checked_s = after

    # -- daemon calls ------------------------------------------------------------------------

    def _pwm(self, pin: int, dutycycle: int) -> None:
        self._call(f"PWM {dutycycle} on GPIO {pin}", self._pi.set_PWM_dutycycle, pin, dutycycle)

    def _set_direction(self, backward: bool) -> None:
        wiring = self._wiring
        self._call(f"write GPIO {wiring.direction_pin}", self._pi.write, wiring.direction_pin, int(backward))
        if wiring.direction_complement_pin is not None:
            pin = wiring.direction_complement_pin
            self._call(f"write GPIO {pin}", self._pi.write, pin, int(not backward))
        self._backward = backward

    def _call(self, what: str, function: Callable[..., _T], *args: Any) -> _T:
        try:
            result = function(*args)
        except pigpio.error as error:
            raise DriverError(f"pigpiod at {self._address} refused to {what}: {error}") from error
        except (OSError, struct.error, AttributeError) as error:
            raise DriverError(
                f"lost pigpiod at {self._address} while trying to {what} ({error}); is pigpiod running?"
            ) from error
        if isinstance(result, int) and result < 0:
            raise DriverError(f"pigpiod at {self._address} refused to {what}: {pigpio.error_text(result)}")
        return result

    def _quietly(self, what: str, function: Callable[..., Any], *args: Any) -> None:
        try:
            self._call(what, function, *args)
        except DriverError as error:
            logger.warning("while closing: %s", error)

    def _check_open(self) -> None:
        if self._closed:
            raise DriverError("the pigpio driver is closed; create a new one")


def _connect(host: str, port: int, timeout_s: float) -> Any:
    """A connected `pigpio.pi`, or DriverError saying how to fix it."""
    try:
        # pigpio.pi waits forever for an unreachable host: probe with a timeout first.
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:
        raise DriverError(
            f"cannot reach pigpiod at {host}:{port} ({error}); start it with 'sudo pigpiod' "
            "(or a virtual rig with 'python -m raas_node.virtual_rig') and check host and port"
        ) from error
    pi = pigpio.pi(host, port, show_errors=False)
    if not pi.connected:
        pi.stop()
        raise DriverError(f"pigpiod at {host}:{port} accepted but did not complete the pigpio handshake")
    return pi
