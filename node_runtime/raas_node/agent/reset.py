"""Bringing the pendulum to rest, hanging, between jobs: active damping, stillness, re-zero.

`ResetRoutine` is driven by the agent's control loop, one boundary at a time: it commands a
duty opposing the motion (active damping) until the encoder shows the pendulum still — speed
estimate below ``still_speed_rad_per_s`` and the count unchanged for ``still_time_s`` with the
motor off — then the agent zeroes the encoder there (a pendulum at rest with no torque hangs).
It fails after ``timeout_s``: a robot that cannot reset is unhealthy.
"""

from __future__ import annotations

from dataclasses import dataclass

from raas_node.drivers.base import SensorReading


@dataclass(frozen=True)
class ResetReport:
    """How a reset went."""

    ok: bool
    duration_s: float
    message: str


@dataclass
class ResetRoutine:
    started_s: float
    damping_duty_per_rad_per_s: float = 0.25
    max_duty: float = 0.6
    still_speed_rad_per_s: float = 0.05
    still_time_s: float = 0.5
    timeout_s: float = 20.0
    _still_since_s: float | None = None
    _still_count: int | None = None

    def step(self, reading: SensorReading) -> tuple[float, ResetReport | None]:
        """Duty for the next period, and the report once the reset is over."""
        now = reading.time_s
        elapsed = now - self.started_s
        speed = reading.theta_dot_rad_per_s
        still = abs(speed) < self.still_speed_rad_per_s
        if still and self._still_count == reading.encoder_count and self._still_since_s is not None:
            if now - self._still_since_s >= self.still_time_s:
                return 0.0, ResetReport(True, elapsed, f"at rest after {elapsed:.2f} s")
        elif still:
            self._still_since_s, self._still_count = now, reading.encoder_count
        else:
            self._still_since_s, self._still_count = None, None
        if elapsed > self.timeout_s:
            return 0.0, ResetReport(False, elapsed, f"the pendulum did not come to rest within {self.timeout_s:.0f} s")
        if still:
            return 0.0, None
        duty = -self.damping_duty_per_rad_per_s * speed
        return max(-self.max_duty, min(self.max_duty, duty)), None
