"""The rig model as system identification sees it: recorded segments simulated as one numpy batch.

A *segment* is a run of consecutive samples of one recording, simulated from its first sample.
Each interval between two samples is integrated with its own step (the interval divided into
the fewest equal steps of at most ``MAX_STEP_S``), holding that sample's command, so irregular
sample times need no resampling. Commands pass through the PWM quantisation and deadband of
`gym_raas.dynamics`, and Coulomb friction stops but never reverses the pendulum, as there.
There is no actuation latency here: a recording stamps each command when the motor receives it.

The integrator is leapfrog (kick, drift) with the linear damping integrated exactly inside each
kick. It stays second-order accurate when the step changes from one interval to the next, and
a segment's start speed is the speed at its first sample, so the fitted parameters describe the
continuous equation of motion. (The semi-implicit Euler of the simulator, first order in the
damping and friction terms, would bias a fit at 5 ms steps by about 1 % in damping and 5 % in
Coulomb friction.)

All segments and all model variants (the parameter sets of a finite-difference Jacobian) step
together: the state is a (variants, segments) array, so one Python loop over time serves them
all. Segments shorter than the longest are padded with zero-length steps, which change nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gym_raas.array_ops import NUMPY_OPS
from gym_raas.dynamics import DynamicsCoefficients, command_to_duty
from gym_raas.params import PendulumParams
from gym_raas.sysid.recording import RecordedTrajectory

MAX_STEP_S = 0.005
"""Longest integrator step; with ω₀ ≈ 5 rad/s the discretisation error is far below a count."""

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]


@dataclass(frozen=True)
class Segment:
    """Samples ``first`` to ``last`` (inclusive) of recording number ``trajectory``."""

    trajectory: int
    first: int
    last: int


def whole_recordings(trajectories: Sequence[RecordedTrajectory]) -> list[Segment]:
    """One segment per recording."""
    return [Segment(index, 0, len(trajectory) - 1) for index, trajectory in enumerate(trajectories)]


def short_segments(trajectories: Sequence[RecordedTrajectory], duration_s: float) -> list[Segment]:
    """Each recording cut into pieces of about `duration_s` that tile it: a piece ends on the
    sample where the next one starts, and every piece spans at least three samples."""
    segments: list[Segment] = []
    for index, trajectory in enumerate(trajectories):
        pieces = max(1, round(trajectory.duration_s / duration_s))
        targets = np.linspace(trajectory.time_s[0], trajectory.time_s[-1], pieces + 1)[1:-1]
        bounds = [0]
        for bound in np.searchsorted(trajectory.time_s, targets):
            if bound - bounds[-1] >= 2 and len(trajectory) - 1 - bound >= 2:
                bounds.append(int(bound))
        bounds.append(len(trajectory) - 1)
        segments += [Segment(index, first, last) for first, last in itertools.pairwise(bounds)]
    return segments


@dataclass(frozen=True)
class Schedule:
    """Integration plan of a batch of segments, built once per fit stage.

    Arrays indexed ``[step, segment]`` hold the step length and the PWM duty acting during it;
    the flat arrays list every sample the fit compares (the segments' samples in order).
    """

    segments: tuple[Segment, ...]
    step_s: FloatArray
    duty: FloatArray
    sample_step: IndexArray
    """Number of integrator steps before each compared sample (0 for a segment's first)."""
    sample_segment: IndexArray
    measured_rad: FloatArray
    start_theta_rad: FloatArray
    """Measured angle at each segment's first sample."""

    @property
    def residual_count(self) -> int:
        return len(self.measured_rad)

    def rows_of(self, segment: int) -> IndexArray:
        """Indices of a segment's samples in the flat arrays."""
        return np.flatnonzero(self.sample_segment == segment)


def build_schedule(
    trajectories: Sequence[RecordedTrajectory], segments: Sequence[Segment], params: PendulumParams
) -> Schedule:
    """Integration plan for `segments` of `trajectories`; duty resolution and range from `params`."""
    coefficients = DynamicsCoefficients.from_params(params)
    steps: list[FloatArray] = []
    duties: list[FloatArray] = []
    sample_step: list[IndexArray] = []
    measured: list[FloatArray] = []
    for segment in segments:
        trajectory = trajectories[segment.trajectory]
        times = trajectory.time_s[segment.first : segment.last + 1]
        intervals = np.diff(times)
        counts = np.maximum(1, np.ceil(intervals / MAX_STEP_S - 1e-9)).astype(np.intp)
        steps.append(np.repeat(intervals / counts, counts))
        duty = command_to_duty(trajectory.command[segment.first : segment.last], coefficients, NUMPY_OPS)
        duties.append(np.repeat(duty, counts))
        sample_step.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.intp))
        measured.append(trajectory.theta_rad[segment.first : segment.last + 1])
    longest = max(len(step) for step in steps)
    step_s = np.zeros((longest, len(segments)))
    duty_grid = np.zeros((longest, len(segments)))
    for column, (step, duty) in enumerate(zip(steps, duties, strict=True)):
        step_s[: len(step), column] = step
        duty_grid[: len(duty), column] = duty
    return Schedule(
        segments=tuple(segments),
        step_s=step_s,
        duty=duty_grid,
        sample_step=np.concatenate(sample_step),
        sample_segment=np.concatenate([np.full(len(s), column, dtype=np.intp) for column, s in enumerate(sample_step)]),
        measured_rad=np.concatenate(measured),
        start_theta_rad=np.array([m[0] for m in measured]),
    )


@dataclass(frozen=True)
class ModelVariants:
    """Physics of V variants of the model; each field is a (V, 1) column (per unit inertia)."""

    gravity_rad_per_s2: FloatArray
    linear_damping_per_s: FloatArray
    coulomb_friction_rad_per_s2: FloatArray
    stall_acceleration_rad_per_s2: FloatArray
    deadband_duty: FloatArray

    @classmethod
    def stack(cls, variants: Sequence[PendulumParams]) -> ModelVariants:
        """Variants from parameter sets (one row each)."""

        def column(values: list[float]) -> FloatArray:
            return np.array(values, dtype=float)[:, None]

        return cls(
            gravity_rad_per_s2=column([p.natural_frequency_rad_per_s**2 for p in variants]),
            linear_damping_per_s=column([p.viscous_damping_per_s + p.motor_back_emf_damping_per_s for p in variants]),
            coulomb_friction_rad_per_s2=column([p.coulomb_friction_rad_per_s2 for p in variants]),
            stall_acceleration_rad_per_s2=column([p.motor_stall_acceleration_rad_per_s2 for p in variants]),
            deadband_duty=column([p.motor_deadband_duty for p in variants]),
        )


def simulate(
    schedule: Schedule, variants: ModelVariants, theta0_rad: FloatArray, theta_dot0_rad_per_s: FloatArray
) -> FloatArray:
    """Model angle at every compared sample: shape (variants, samples).

    `theta0_rad` and `theta_dot0_rad_per_s` are the (variants, segments) initial states.
    """
    step_s = schedule.step_s[:, None, :]
    # Leapfrog: the kick before step i spans half of step i-1 and half of step i (the first kick
    # of a segment only the half of step 0). Everything that does not depend on the state is
    # computed for all steps up front, so the loop is a handful of small array operations.
    previous_step_s = np.concatenate([np.zeros_like(step_s[:1]), step_s[:-1]])
    kick_s = 0.5 * (previous_step_s + step_s)
    duty = schedule.duty[:, None, :]
    deadband = variants.deadband_duty[None]
    effective = np.sign(duty) * np.maximum(np.abs(duty) - deadband, 0.0) / (1.0 - deadband)  # dynamics.effective_duty
    previous_effective = np.concatenate([np.zeros_like(effective[:1]), effective[:-1]])
    mean_drive = 0.5 * (previous_effective * previous_step_s + effective * step_s)
    impulse = variants.stall_acceleration_rad_per_s2[None] * mean_drive
    # Linear damping is integrated exactly over a kick: θ̇ ← θ̇·e^(−cτ) + force·(1 − e^(−cτ))/c.
    decay = variants.linear_damping_per_s[None] * kick_s
    relaxed = _relaxation(decay)
    keep = 1.0 - decay * relaxed
    gravity_kick = variants.gravity_rad_per_s2[None] * kick_s * relaxed
    drive_kick = impulse * relaxed
    friction_kick = np.broadcast_to(variants.coulomb_friction_rad_per_s2[None] * kick_s, drive_kick.shape)
    friction_low = -friction_kick
    theta = np.array(theta0_rad, dtype=float)
    omega = np.array(theta_dot0_rad_per_s, dtype=float)
    history = np.empty((len(step_s) + 1, *theta.shape))
    history[0] = theta
    stopping = np.empty_like(omega)
    for index in range(len(step_s)):
        omega = omega * keep[index] + gravity_kick[index] * np.sin(theta) + drive_kick[index]
        # Coulomb friction: remove up to its impulse of speed, never reversing the motion.
        np.clip(omega, friction_low[index], friction_kick[index], out=stopping)
        omega -= stopping
        theta = theta + step_s[index] * omega
        history[index + 1] = theta
    return history[schedule.sample_step, :, schedule.sample_segment].T


def _relaxation(decay: FloatArray) -> FloatArray:
    """(1 − e^(−x)) / x, equal to 1 at x = 0."""
    small = decay < 1e-9
    safe = np.where(small, 1.0, decay)
    return np.where(small, 1.0 - 0.5 * decay, -np.expm1(-safe) / safe)


def predict(
    trajectory: RecordedTrajectory,
    params: PendulumParams,
    theta_dot0_rad_per_s: float = 0.0,
    theta_offset_rad: float = 0.0,
) -> FloatArray:
    """What `params` predict for the angle at each sample of `trajectory`.

    The simulation starts at the first measured angle plus `theta_offset_rad`, at speed
    `theta_dot0_rad_per_s`, and is driven by the recorded commands.
    """
    schedule = build_schedule([trajectory], whole_recordings([trajectory]), params)
    start = schedule.start_theta_rad[None, :] + theta_offset_rad
    model = simulate(schedule, ModelVariants.stack([params]), start, np.full((1, 1), theta_dot0_rad_per_s))
    return np.asarray(model[0], dtype=np.float64)
