"""The contract between the robot agent and a robot's hardware (real or simulated).

The agent is the only caller. It owns the control clock and the safety layer: a driver applies
exactly the duty it is given (already clamped and checked) and reports what its sensors see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gym_raas.params import PendulumParams


class DriverError(RuntimeError):
    """The hardware (or the daemon in front of it) failed or cannot be reached."""


@dataclass(frozen=True)
class SensorReading:
    """One reading of the robot's sensors."""

    time_s: float
    """Driver clock (monotonic seconds) at which the reading was taken."""
    encoder_count: int
    """Encoder counts since the last `zero_encoder` (zero = hanging at rest)."""
    theta_rad: float
    """Angle from upright in [-π, π), from the encoder count (hanging is ±π)."""
    theta_dot_rad_per_s: float
    """Speed estimated from encoder edge timing (`gym_raas.encoder.update_velocity`)."""
    last_edge_time_s: float
    """Driver-clock time of the latest encoder edge (for encoder-health checks)."""


class RobotDriver(Protocol):
    """A pendulum robot as seen by the agent."""

    params: PendulumParams
    """The robot's calibration (encoder resolution, PWM range, limits used by the driver)."""
    deadman_timeout_s: float
    """The motor stops this long after the last `feed_deadman`, even if the agent is dead."""

    def read(self) -> SensorReading:
        """Current sensor values. Never blocks for longer than a millisecond or so."""
        ...

    def apply_duty(self, duty: float) -> float:
        """Drive the motor at a signed PWM duty in [-1, 1]; returns the duty actually applied
        after quantisation to the PWM range."""
        ...

    def stop_motor(self) -> None:
        """Motor off now (both bridge inputs low). Safe to call at any time, repeatedly."""
        ...

    def feed_deadman(self) -> None:
        """Tell the dead-man mechanism the agent is alive. If it is not fed for
        `deadman_timeout_s`, the motor is stopped by a mechanism outside the agent process."""
        ...

    def zero_encoder(self) -> None:
        """Declare the current position as encoder zero (hanging at rest)."""
        ...

    def close(self) -> None:
        """Stop the motor and release the hardware. Safe to call twice."""
        ...
