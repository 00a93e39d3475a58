"""The rig simulator: physics, PWM driver and encoder stepped one control period at a time.

`PendulumSimulator` holds one pendulum (Python floats) or a batch of N (numpy arrays); both run
the same code from `gym_raas.dynamics` and `gym_raas.encoder`. It knows nothing of rewards,
spaces or wall-clock time: environments and the robot agent's simulated driver build on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gym_raas.array_ops import NUMPY_OPS, SCALAR_OPS, ArrayOps
from gym_raas.dynamics import DynamicsCoefficients, command_to_duty, integrate_control_period
from gym_raas.encoder import encoder_count, time_since_last_edge, update_velocity
from gym_raas.params import PendulumParams
from gym_raas.randomization import RANDOMIZABLE

HANGING_RAD = math.pi
TAU = 2.0 * math.pi
_NOISE_BLOCK = 1024


def wrap_angle(theta: Any) -> Any:
    """Angle wrapped into [-π, π) (floats or arrays)."""
    return (theta + math.pi) % TAU - math.pi


@dataclass(frozen=True)
class Measurement:
    """What the rig's sensors report after a control step (single pendulum)."""

    theta_rad: float
    """Encoder angle from upright, wrapped into [-π, π)."""
    theta_dot_rad_per_s: float
    """Edge-timing speed estimate, saturated at the velocity limit."""
    encoder_count: int
    duty: float
    """PWM duty of the latest command (it reaches the motor ``actuation_latency_s`` later)."""


class PendulumSimulator:
    """One pendulum (``batch_size=None``) or N pendulums stepped together.

    The encoder is zeroed hanging down, as the robot agent's reset does on the real rig.
    `vary` gives the rig (or each pendulum of a batch) other physical parameters.
    """

    def __init__(self, params: PendulumParams, batch_size: int | None = None) -> None:
        self.params = params
        self.batch_size = batch_size
        self.coefficients = DynamicsCoefficients.from_params(params)
        self._ops: ArrayOps = SCALAR_OPS if batch_size is None else NUMPY_OPS
        self._resolution = params.encoder_resolution_rad
        self._max_acceleration: Any = params.max_acceleration_rad_per_s2
        self._edge_jitter_s: Any = params.encoder_edge_jitter_s
        self._rng = np.random.default_rng()
        self._noise = np.zeros(0)
        self._noise_index = 0
        self.reset(self._rng)

    # -- state -------------------------------------------------------------------------------

    def reset(
        self,
        rng: np.random.Generator,
        theta_rad: Any = HANGING_RAD,
        theta_dot_rad_per_s: Any = 0.0,
        mask: Any = None,
    ) -> None:
        """Put the pendulum(s) in a state; the speed estimate starts at the true speed.

        With a batch, `mask` (bool array) resets only the selected pendulums.
        """
        self._rng = rng
        if self.batch_size is None:
            self.time_s: Any = 0.0
            self.theta: Any = float(theta_rad)
            self.theta_dot: Any = float(theta_dot_rad_per_s)
            self.duty: Any = 0.0
            self._earlier_duty: Any = 0.0
            self._count: Any = float(encoder_count(self.theta - HANGING_RAD, self._resolution, SCALAR_OPS))
            self._edge_time: Any = 0.0
            self._velocity: Any = self.theta_dot
            self._noise_index = len(self._noise)
            return
        size = self.batch_size
        selected = np.ones(size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if not hasattr(self, "theta") or np.ndim(self.theta) == 0:
            self.time_s = np.zeros(size)
            self.theta = np.full(size, HANGING_RAD)
            self.theta_dot = np.zeros(size)
            self.duty = np.zeros(size)
            self._earlier_duty = np.zeros(size)
            self._count = np.zeros(size)
            self._edge_time = np.zeros(size)
            self._velocity = np.zeros(size)
        theta = np.broadcast_to(np.asarray(theta_rad, dtype=float), (size,))
        theta_dot = np.broadcast_to(np.asarray(theta_dot_rad_per_s, dtype=float), (size,))
        self.time_s[selected] = 0.0
        self.theta[selected] = theta[selected]
        self.theta_dot[selected] = theta_dot[selected]
        self.duty[selected] = 0.0
        self._earlier_duty[selected] = 0.0
        self._count[selected] = np.round((theta[selected] - HANGING_RAD) / self._resolution)
        self._edge_time[selected] = 0.0
        self._velocity[selected] = theta_dot[selected]

    def vary(self, values: Mapping[str, Any]) -> None:
        """Run with other values of some physical parameters from now on (domain randomisation).

        `values` maps names of `gym_raas.randomization.RANDOMIZABLE` to a float for a single
        pendulum, or to an array of one value per pendulum for a batch (broadcast in the step,
        no loop over pendulums). Names left out keep `params`' values; ``{}`` restores them all.
        The state is kept: call it before `reset` to start an episode on another rig. A single
        pendulum's values are validated as `PendulumParams`; a batch's only for shape and
        finiteness (`gym_raas.randomization.resolve_randomization` checks the ranges they come from).
        """
        unknown = sorted(set(values) - set(RANDOMIZABLE))
        if unknown:
            raise ValueError(f"cannot vary {', '.join(unknown)}; variable: {', '.join(RANDOMIZABLE)}")
        if self.batch_size is None:
            varied = self.params.replace(**{name: float(value) for name, value in values.items()})
            self.coefficients = DynamicsCoefficients.from_params(varied)
            self._max_acceleration = varied.max_acceleration_rad_per_s2
            self._edge_jitter_s = varied.encoder_edge_jitter_s
            return
        arrays = {name: _per_pendulum(name, value, self.batch_size) for name, value in values.items()}
        if not arrays:
            self.coefficients = DynamicsCoefficients.from_params(self.params)
            self._max_acceleration = self.params.max_acceleration_rad_per_s2
            self._edge_jitter_s = self.params.encoder_edge_jitter_s
            return
        coefficients = self.coefficients = DynamicsCoefficients.with_overrides(self.params, arrays)
        self._max_acceleration = (
            coefficients.gravity_rad_per_s2
            + coefficients.stall_acceleration_rad_per_s2
            + coefficients.friction_velocity_step_rad_per_s / coefficients.substep_s
            + coefficients.linear_damping_per_s * self.params.velocity_limit_rad_per_s
        )
        self._edge_jitter_s = arrays.get("encoder_edge_jitter_s", self.params.encoder_edge_jitter_s)

    # -- stepping ----------------------------------------------------------------------------

    def step(self, command: Any, latency_s: float | None = None) -> None:
        """Apply a command (action units) for one control period and update the sensors.

        The command reaches the motor ``latency_s`` after the period starts (default: the
        parameters' ``actuation_latency_s``); the previous one acts until then. A latency of a
        period or more (a late command) is allowed up to two periods."""
        ops = self._ops
        coefficients = self.coefficients
        if latency_s is not None:
            period = self.params.control_period_s
            if not 0.0 <= latency_s < 2.0 * period:
                raise ValueError(f"latency_s must be in [0, {2 * period:g}) s (two control periods), got {latency_s}")
            coefficients = replace(coefficients, latency_substeps=latency_s / self.params.substep_s)
        duty = command_to_duty(command, coefficients, ops)
        history = (self._earlier_duty, self.duty, duty)
        self.theta, self.theta_dot = integrate_control_period(self.theta, self.theta_dot, history, coefficients, ops)
        self._earlier_duty = self.duty
        self.duty = duty
        self.time_s = self.time_s + self.params.control_period_s
        shaft = self.theta - HANGING_RAD
        count = encoder_count(shaft, self._resolution, ops)
        # A changed count means the edge came during this period, however slow the shaft is now
        # (at a turning point the constant-speed guess would put it far in the past).
        period = self.params.control_period_s
        since_edge = ops.minimum(time_since_last_edge(shaft, self.theta_dot, count, self._resolution, ops), period)
        edge_time = self.time_s - since_edge + self._edge_jitter_s * self._jitter()
        self._velocity, self._edge_time = update_velocity(
            self._count,
            self._edge_time,
            self._velocity,
            count,
            edge_time,
            self.time_s,
            self._resolution,
            ops,
            self._max_acceleration,
        )
        self._count = count

    def _jitter(self) -> Any:
        if self.batch_size is not None:
            return self._rng.standard_normal(self.batch_size)
        if self._noise_index >= len(self._noise):
            self._noise = self._rng.standard_normal(_NOISE_BLOCK)
            self._noise_index = 0
        value = float(self._noise[self._noise_index])
        self._noise_index += 1
        return value

    # -- sensors -----------------------------------------------------------------------------

    @property
    def measured_theta(self) -> Any:
        """Encoder angle from upright in [-π, π)."""
        return wrap_angle(HANGING_RAD + self._count * self._resolution)

    @property
    def measured_theta_dot(self) -> Any:
        """Speed estimate from edge timing, saturated at the velocity limit."""
        limit = self.params.velocity_limit_rad_per_s
        return self._ops.clip(self._velocity, -limit, limit)

    @property
    def encoder_count(self) -> Any:
        """Encoder counts since zero (hanging)."""
        return self._count

    def measurement(self) -> Measurement:
        """Sensor readings of a single pendulum."""
        if self.batch_size is not None:
            raise TypeError("measurement() is for a single pendulum; read the array properties instead")
        return Measurement(self.measured_theta, self.measured_theta_dot, int(self._count), self.duty)


def _per_pendulum(name: str, value: Any, size: int) -> Any:
    array = np.asarray(value, dtype=np.float64)
    if array.shape not in ((), (size,)):
        raise ValueError(f"{name} needs one value or {size} (one per pendulum), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} values must be finite")
    return np.broadcast_to(array, (size,)).copy()
