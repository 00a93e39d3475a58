"""The rig's physics advanced to a clock, with the times at which encoder edges happen.

`RealTimePendulum` integrates the gym_raas equations (`gym_raas.dynamics`) from its last time
to any later time, holding the motor duty constant in between, in steps of at most
``params.substep_s`` (the last one shorter, so the state is exactly at the requested time). It
reports every encoder count change with the time the shaft crossed the count boundary
(interpolated inside the step). The virtual rig turns those into quadrature edges; the ``sim``
driver into the inputs of the edge-timing speed estimator.

The duty given is what reaches the motor (after PWM quantisation); the model's deadband applies.
The driver's own latency is not modelled here (the agent's control clock adds the period).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gym_raas.array_ops import SCALAR_OPS
from gym_raas.dynamics import DynamicsCoefficients, integrate_control_period
from gym_raas.encoder import encoder_count
from gym_raas.params import PendulumParams
from gym_raas.simulator import HANGING_RAD

_SHORTEST_STEP_S = 1e-9
_TELEPORT_EDGE_SPACING_S = 2e-6


@dataclass(frozen=True, slots=True)
class EncoderEdge:
    """The encoder count changed to ``count`` at ``time_s`` (counts are 0 hanging, + with θ)."""

    time_s: float
    count: int


@dataclass(frozen=True)
class PendulumState:
    """True physical state at ``time_s``."""

    time_s: float
    theta_rad: float
    """Angle from upright, not wrapped (hanging is π + 2πk)."""
    theta_dot_rad_per_s: float
    duty: float
    """Signed duty reaching the motor, in [-1, 1]."""
    encoder_count: int


class RealTimePendulum:
    """One pendulum whose physics is advanced on demand to a given time (seconds, any clock)."""

    def __init__(
        self,
        params: PendulumParams,
        *,
        time_s: float,
        theta_rad: float = HANGING_RAD,
        theta_dot_rad_per_s: float = 0.0,
    ) -> None:
        _check_finite(theta_rad=theta_rad, theta_dot_rad_per_s=theta_dot_rad_per_s, time_s=time_s)
        self.params = params
        self._step_s = params.substep_s
        self._coulomb = params.coulomb_friction_rad_per_s2
        # One integrator step per call, no latency: the duty acts from the moment it is set.
        self._full_step = dataclasses.replace(DynamicsCoefficients.from_params(params), substeps=1, latency_substeps=0)
        self._resolution = params.encoder_resolution_rad
        self.time_s = float(time_s)
        self.theta_rad = float(theta_rad)
        self.theta_dot_rad_per_s = float(theta_dot_rad_per_s)
        self.duty = 0.0
        self.count = self._count_of(self.theta_rad)

    def state(self) -> PendulumState:
        return PendulumState(self.time_s, self.theta_rad, self.theta_dot_rad_per_s, self.duty, self.count)

    def advance_to(self, time_s: float) -> list[EncoderEdge]:
        """Integrate up to ``time_s`` with the current duty; returns the edges on the way, in order.

        A time earlier than the current one is ignored (the clock never runs backwards).
        """
        edges: list[EncoderEdge] = []
        while time_s - self.time_s > _SHORTEST_STEP_S:
            self._step(min(self._step_s, time_s - self.time_s), edges)
        return edges

    def set_duty(self, time_s: float, duty: float) -> list[EncoderEdge]:
        """Advance to ``time_s`` with the old duty, then hold ``duty`` (clipped to [-1, 1])."""
        if not math.isfinite(duty):
            raise ValueError(f"duty must be finite, got {duty}")
        edges = self.advance_to(time_s)
        self.duty = min(max(float(duty), -1.0), 1.0)
        return edges

    def place(self, time_s: float, theta_rad: float, theta_dot_rad_per_s: float = 0.0) -> list[EncoderEdge]:
        """Advance to ``time_s``, then move the pendulum by hand to a new state.

        The encoder sees the move as a burst of edges 2 µs apart ending at ``time_s``.
        """
        _check_finite(theta_rad=theta_rad, theta_dot_rad_per_s=theta_dot_rad_per_s)
        edges = self.advance_to(time_s)
        new_count = self._count_of(theta_rad)
        steps = abs(new_count - self.count)
        direction = 1 if new_count > self.count else -1
        for index in range(1, steps + 1):
            edge_time = self.time_s - (steps - index) * _TELEPORT_EDGE_SPACING_S
            edges.append(EncoderEdge(edge_time, self.count + direction * index))
        self.theta_rad = float(theta_rad)
        self.theta_dot_rad_per_s = float(theta_dot_rad_per_s)
        self.count = new_count
        return edges

    def _step(self, step_s: float, edges: list[EncoderEdge]) -> None:
        if step_s == self._step_s:
            coefficients = self._full_step
        else:
            coefficients = dataclasses.replace(
                self._full_step, substep_s=step_s, friction_velocity_step_rad_per_s=self._coulomb * step_s
            )
        start_time, start_theta = self.time_s, self.theta_rad
        duty = self.duty
        theta, theta_dot = integrate_control_period(
            start_theta, self.theta_dot_rad_per_s, (duty, duty, duty), coefficients, SCALAR_OPS
        )
        self.theta_rad, self.theta_dot_rad_per_s = float(theta), float(theta_dot)
        self.time_s = start_time + step_s
        new_count = self._count_of(self.theta_rad)
        if new_count == self.count:
            return
        direction = 1 if new_count > self.count else -1
        travelled = self.theta_rad - start_theta
        for count in range(self.count, new_count, direction):
            boundary = HANGING_RAD + (count + 0.5 * direction) * self._resolution
            fraction = min(max((boundary - start_theta) / travelled, 0.0), 1.0)
            edges.append(EncoderEdge(start_time + fraction * step_s, count + direction))
        self.count = new_count

    def _count_of(self, theta_rad: float) -> int:
        return int(encoder_count(theta_rad - HANGING_RAD, self._resolution, SCALAR_OPS))


def _check_finite(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
