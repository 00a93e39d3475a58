"""Rigid-body and motor dynamics of the pendulum rig, integrated inside one control period.

The integrator is semi-implicit (symplectic) Euler at ``params.substep_s``: it does not create
energy, and it is deterministic. Coulomb friction is applied as a velocity change that may stop
the pendulum but never reverse it, which also gives stiction: a pendulum at rest stays at rest
while gravity and motor torque are below the friction torque.

Functions take an `ArrayOps` namespace so the same code steps one pendulum (floats) or a batch
(numpy arrays). In a batch, every physical coefficient may also be an array of one value per
pendulum (domain randomisation, `with_overrides`): it broadcasts in the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gym_raas.array_ops import ArrayOps
from gym_raas.params import PendulumParams


@dataclass(frozen=True)
class DynamicsCoefficients:
    """Per-substep constants derived once from `PendulumParams`.

    The physical ones (typed ``Any``) are floats, or arrays of one value per pendulum of a batch.
    """

    substep_s: float
    substeps: int
    latency_substeps: Any
    """Actuation latency in integrator steps, not rounded (a switch inside a step mixes both duties)."""
    gravity_rad_per_s2: Any
    linear_damping_per_s: Any
    friction_velocity_step_rad_per_s: Any
    stall_acceleration_rad_per_s2: Any
    duty_steps: float
    deadband_duty: Any
    max_command: float

    @classmethod
    def from_params(cls, params: PendulumParams) -> DynamicsCoefficients:
        return cls(
            substep_s=params.substep_s,
            substeps=params.physics_substeps,
            latency_substeps=params.actuation_latency_s / params.substep_s,
            gravity_rad_per_s2=params.natural_frequency_rad_per_s**2,
            linear_damping_per_s=params.viscous_damping_per_s + params.motor_back_emf_damping_per_s,
            friction_velocity_step_rad_per_s=params.coulomb_friction_rad_per_s2 * params.substep_s,
            stall_acceleration_rad_per_s2=params.motor_stall_acceleration_rad_per_s2,
            duty_steps=float(params.pwm_duty_steps),
            deadband_duty=params.motor_deadband_duty,
            max_command=params.max_command,
        )

    @classmethod
    def with_overrides(cls, params: PendulumParams, values: Mapping[str, NDArray[np.float64]]) -> DynamicsCoefficients:
        """Coefficients of a batch whose pendulums differ: `values` maps parameter names of
        `PendulumParams` to arrays of one value per pendulum; the other names keep `params`'."""

        def value(name: str) -> Any:
            return values[name] if name in values else getattr(params, name)

        h = params.substep_s
        return cls(
            substep_s=h,
            substeps=params.physics_substeps,
            latency_substeps=value("actuation_latency_s") / h,
            gravity_rad_per_s2=value("natural_frequency_rad_per_s") ** 2,
            linear_damping_per_s=value("viscous_damping_per_s") + value("motor_back_emf_damping_per_s"),
            friction_velocity_step_rad_per_s=value("coulomb_friction_rad_per_s2") * h,
            stall_acceleration_rad_per_s2=value("motor_stall_acceleration_rad_per_s2"),
            duty_steps=float(params.pwm_duty_steps),
            deadband_duty=value("motor_deadband_duty"),
            max_command=params.max_command,
        )


def command_to_duty(command: Any, coefficients: DynamicsCoefficients, ops: ArrayOps) -> Any:
    """PWM duty in [-1, 1] that the driver outputs for a command (saturated and quantised)."""
    duty = ops.clip(command / coefficients.max_command, -1.0, 1.0)
    return ops.round(duty * coefficients.duty_steps) / coefficients.duty_steps


def effective_duty(duty: Any, coefficients: DynamicsCoefficients, ops: ArrayOps) -> Any:
    """Duty that turns into torque once the motor's static friction (deadband) is overcome."""
    deadband = coefficients.deadband_duty
    excess = ops.maximum(ops.abs(duty) - deadband, 0.0)
    return ops.sign(duty) * excess / (1.0 - deadband)


def integrate_control_period(
    theta: Any,
    omega: Any,
    duty_history: tuple[Any, Any, Any],
    coefficients: DynamicsCoefficients,
    ops: ArrayOps,
) -> tuple[Any, Any]:
    """Advance angle θ (from upright, rad) and speed θ̇ (rad/s) by one control period.

    `duty_history` is (duty two steps ago, duty one step ago, duty of this step), as returned
    by `command_to_duty`. The duty of a step reaches the motor ``latency_substeps`` after the
    start of that step, so with a latency longer than a period the current step's duty has no
    effect yet. Returns the new (θ, θ̇); θ is not wrapped.
    """
    h = coefficients.substep_s
    gravity = coefficients.gravity_rad_per_s2
    damping = coefficients.linear_damping_per_s
    friction_step = coefficients.friction_velocity_step_rad_per_s
    sin = ops.sin
    shrink = ops.shrink
    for drive in _drive_schedule(duty_history, coefficients, ops):
        acceleration = gravity * sin(theta) - damping * omega + drive
        omega = shrink(omega + h * acceleration, friction_step)
        theta = theta + h * omega
    return theta, omega


def _drive_schedule(
    duty_history: tuple[Any, Any, Any], coefficients: DynamicsCoefficients, ops: ArrayOps
) -> list[Any] | NDArray[np.float64]:
    """Motor acceleration acting during each substep of the period (the substep in which the
    new duty arrives gets the time-weighted mean of both)."""
    substeps = coefficients.substeps
    latency = coefficients.latency_substeps
    stall = coefficients.stall_acceleration_rad_per_s2
    if isinstance(latency, np.ndarray):
        return _per_pendulum_drive_schedule(duty_history, coefficients, ops)
    if latency <= substeps:
        older, newer, switch = duty_history[1], duty_history[2], latency
    else:
        older, newer, switch = duty_history[0], duty_history[1], latency - substeps
    older_drive = stall * effective_duty(older, coefficients, ops)
    newer_drive = stall * effective_duty(newer, coefficients, ops)
    whole = min(int(switch), substeps)
    fraction = switch - whole
    if fraction <= 1e-9 or whole >= substeps:
        return [older_drive] * whole + [newer_drive] * (substeps - whole)
    mixed = fraction * older_drive + (1.0 - fraction) * newer_drive
    return [older_drive] * whole + [mixed] + [newer_drive] * (substeps - whole - 1)


def _per_pendulum_drive_schedule(
    duty_history: tuple[Any, Any, Any], coefficients: DynamicsCoefficients, ops: ArrayOps
) -> NDArray[np.float64]:
    """`_drive_schedule` for a batch whose latencies differ: rows of (substeps, N) drives.

    Substep k spans [k, k+1) in substeps from the period's start; the latest duty arrives at
    the latency L, the previous one at L − substeps, so each duty acts for the part of the
    substep after its arrival (the same time weighting as the scalar schedule)."""
    stall = coefficients.stall_acceleration_rad_per_s2
    oldest, older, newer = (stall * effective_duty(duty, coefficients, ops) for duty in duty_history)
    latency = coefficients.latency_substeps
    ends = np.arange(1.0, coefficients.substeps + 1.0)[:, None]
    newer_share = np.clip(ends - latency, 0.0, 1.0)
    older_or_newer_share = np.clip(ends - (latency - coefficients.substeps), 0.0, 1.0)
    drives: NDArray[np.float64] = (
        older + newer_share * (newer - older) + (1.0 - older_or_newer_share) * (oldest - older)
    )
    return drives


def mechanical_energy(theta: Any, omega: Any, params: PendulumParams, ops: ArrayOps) -> Any:
    """Energy per unit inertia (rad²/s²), zero hanging at rest: ½θ̇² + ω₀²(1 + cos θ)."""
    gravity = params.natural_frequency_rad_per_s**2
    # cos θ = sin(θ + π/2): keeps ArrayOps minimal.
    return 0.5 * omega * omega + gravity * (1.0 + ops.sin(theta + 1.5707963267948966))
