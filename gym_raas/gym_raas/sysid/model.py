"""The rig model as system identification sees it: simulate recorded command sequences.

Recorded trajectories come from the robot agent, which logs at each sample the encoder angle and
the command the motor received from that sample until the next. Sample times may be irregular:
the model integrates each interval with its own step (≤ ``MAX_STEP_S``), holding the command.
The integrator and friction rule are those of `gym_raas.dynamics` (semi-implicit Euler,
friction that stops but never reverses), with PWM quantisation and the deadband applied to the
command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gym_raas.params import PendulumParams

MAX_STEP_S = 0.005


@dataclass(frozen=True)
class RecordedTrajectory:
    """One experiment on a rig: sample times, measured angles, commands received by the motor.

    ``theta_rad`` is the encoder angle from upright (wrapped or not: it is unwrapped here);
    ``command[k]`` (action units) acts from ``time_s[k]`` to ``time_s[k + 1]``.
    """

    time_s: NDArray[np.float64]
    theta_rad: NDArray[np.float64]
    command: NDArray[np.float64]
    label: str = ""

    def __post_init__(self) -> None:
        time_s = np.asarray(self.time_s, dtype=float)
        theta = np.asarray(self.theta_rad, dtype=float)
        command = np.asarray(self.command, dtype=float)
        name = self.label or "trajectory"
        if not (time_s.ndim == theta.ndim == command.ndim == 1):
            raise ValueError(f"{name}: time_s, theta_rad and command must be 1-D arrays")
        if not len(time_s) == len(theta) == len(command):
            raise ValueError(
                f"{name}: time_s, theta_rad and command have different lengths "
                f"({len(time_s)}, {len(theta)}, {len(command)})"
            )
        if len(time_s) < 3:
            raise ValueError(f"{name}: needs at least 3 samples, got {len(time_s)}")
        for column, values in (("time_s", time_s), ("theta_rad", theta), ("command", command)):
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{name}: {column} contains NaN or infinite values")
        if not np.all(np.diff(time_s) > 0):
            raise ValueError(f"{name}: time_s must be strictly increasing")
        object.__setattr__(self, "time_s", time_s)
        object.__setattr__(self, "theta_rad", np.unwrap(theta))
        object.__setattr__(self, "command", command)

    @property
    def duration_s(self) -> float:
        return float(self.time_s[-1] - self.time_s[0])


@dataclass(frozen=True)
class PreparedTrajectory:
    """Integration schedule of a trajectory, computed once per fit."""

    steps_per_interval: NDArray[np.int64]
    step_s: NDArray[np.float64]
    command: NDArray[np.float64]


def prepare(trajectory: RecordedTrajectory) -> PreparedTrajectory:
    intervals = np.diff(trajectory.time_s)
    steps = np.maximum(1, np.ceil(intervals / MAX_STEP_S - 1e-9)).astype(np.int64)
    return PreparedTrajectory(steps, intervals / steps, trajectory.command[:-1])


def effective_drive(command: float, params: PendulumParams) -> float:
    """Motor acceleration for a command (PWM quantisation and deadband as in the dynamics)."""
    duty = max(-1.0, min(1.0, command / params.max_command))
    duty = round(duty * params.pwm_duty_steps) / params.pwm_duty_steps
    excess = max(abs(duty) - params.motor_deadband_duty, 0.0) / (1.0 - params.motor_deadband_duty)
    return math.copysign(excess, duty) * params.motor_stall_acceleration_rad_per_s2


def simulate(
    prepared: PreparedTrajectory, params: PendulumParams, theta0: float, theta_dot0: float
) -> NDArray[np.float64]:
    """Model angle (unwrapped, from upright) at every sample time of the trajectory."""
    gravity = params.natural_frequency_rad_per_s**2
    damping = params.viscous_damping_per_s + params.motor_back_emf_damping_per_s
    friction = params.coulomb_friction_rad_per_s2
    sin = math.sin
    theta, omega = theta0, theta_dot0
    angles = np.empty(len(prepared.command) + 1)
    angles[0] = theta
    drives = [effective_drive(float(command), params) for command in prepared.command]
    for index, (steps, h, drive) in enumerate(zip(prepared.steps_per_interval, prepared.step_s, drives, strict=True)):
        friction_step = friction * h
        for _ in range(int(steps)):
            omega += h * (gravity * sin(theta) - damping * omega + drive)
            if omega > friction_step:
                omega -= friction_step
            elif omega < -friction_step:
                omega += friction_step
            else:
                omega = 0.0
            theta += h * omega
        angles[index + 1] = theta
    return angles
