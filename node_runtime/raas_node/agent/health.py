"""Robot health the scheduler can use: encoder, motor temperature, last reset.

`HealthMonitor.observe` is fed every control boundary. The encoder is **stuck** when, for
`STUCK_AFTER_S`, the motor torque and gravity at the reported angle leave a net acceleration
that friction cannot hold (so the pendulum must be moving) while the count did not change. A
pendulum simply held still by the motor, at the angle where gravity balances it, is not stuck.
A **glitch** is a count jump the pendulum could not have made in the elapsed time. A robot is
Ready only when idle, its last reset succeeded, its encoder is not stuck and its motor is not in
thermal stop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gym_raas.array_ops import SCALAR_OPS
from gym_raas.dynamics import DynamicsCoefficients, effective_duty
from gym_raas.params import PendulumParams
from raas_node.agent.reset import ResetReport
from raas_node.drivers.base import SensorReading

STUCK_AFTER_S = 1.0
UNBALANCED_RAD_PER_S2 = 3.0
"""Net acceleration (beyond Coulomb friction) that must show up as motion on a working encoder."""


@dataclass(frozen=True)
class RobotHealth:
    """Health summary (also the Robot status's health in the cluster)."""

    ready: bool
    state: str
    reasons: tuple[str, ...]
    encoder_ok: bool
    encoder_glitches: int
    motor_temperature_celsius: float
    last_reset_ok: bool | None
    last_reset_duration_s: float | None
    details: dict[str, object] = field(default_factory=dict)


class HealthMonitor:
    """Watches sensor readings and motor duties for signs of a broken robot."""

    def __init__(self, params: PendulumParams) -> None:
        self.params = params
        self._coefficients = DynamicsCoefficients.from_params(params)
        self.encoder_stuck = False
        self.glitches = 0
        self._driven_since: float | None = None
        self._driven_count: int | None = None
        self._previous: SensorReading | None = None

    def observe(self, reading: SensorReading, duty: float) -> None:
        """Account one boundary: `duty` is what the motor was driven with until `reading`."""
        previous = self._previous
        self._previous = reading
        if previous is not None:
            elapsed = max(reading.time_s - previous.time_s, 1e-3)
            possible = self.params.velocity_limit_rad_per_s * 2 * elapsed / self.params.encoder_resolution_rad + 2
            if abs(reading.encoder_count - previous.encoder_count) > possible:
                self.glitches += 1
        if not self._unbalanced(reading.theta_rad, duty):
            self._driven_since = None
            if reading.encoder_count != self._driven_count:
                self.encoder_stuck = False
            return
        if self._driven_since is None or reading.encoder_count != self._driven_count:
            self._driven_since, self._driven_count = reading.time_s, reading.encoder_count
            self.encoder_stuck = False
        elif reading.time_s - self._driven_since >= STUCK_AFTER_S:
            self.encoder_stuck = True

    def _unbalanced(self, theta_rad: float, duty: float) -> bool:
        """Whether gravity at `theta_rad` and the motor at `duty` cannot be in equilibrium."""
        params = self.params
        drive = params.motor_stall_acceleration_rad_per_s2 * float(effective_duty(duty, self._coefficients, SCALAR_OPS))
        net = params.natural_frequency_rad_per_s**2 * math.sin(theta_rad) + drive
        return abs(net) > params.coulomb_friction_rad_per_s2 + UNBALANCED_RAD_PER_S2

    def summary(
        self, *, temperature_celsius: float, thermal_stop: bool, last_reset: ResetReport | None, state: str
    ) -> RobotHealth:
        reasons = []
        if self.encoder_stuck:
            reasons.append("encoder stuck: the count did not change while the motor was driven")
        if thermal_stop:
            reasons.append(f"motor too hot ({temperature_celsius:.0f} °C): cooling down")
        if last_reset is not None and not last_reset.ok:
            reasons.append(f"reset failed: {last_reset.message}")
        if state != "idle":
            reasons.append(f"robot is {state}")
        return RobotHealth(
            ready=not reasons,
            state=state,
            reasons=tuple(reasons),
            encoder_ok=not self.encoder_stuck,
            encoder_glitches=self.glitches,
            motor_temperature_celsius=temperature_celsius,
            last_reset_ok=None if last_reset is None else last_reset.ok,
            last_reset_duration_s=None if last_reset is None else last_reset.duration_s,
        )
