"""Calibration experiments: the command sequences a robot runs, and their simulated recordings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gym_raas.params import PendulumParams
from gym_raas.simulator import HANGING_RAD, PendulumSimulator
from gym_raas.sysid.recording import RecordedTrajectory

FINE_STEP_S = 0.0005
"""Integrator step of the simulated "real" rig: fine enough to stand in for continuous time."""


@dataclass(frozen=True, eq=False)
class Experiment:
    """A command sequence applied from rest, hanging, one command per control period."""

    label: str
    commands: NDArray[np.float64]
    """Action units, one per control period (0.05 s on the reference rig); 0 after the end."""

    def duration_s(self, params: PendulumParams) -> float:
        """How long the experiment runs on a rig with `params`."""
        return len(self.commands) * params.control_period_s


def _hold(levels: list[tuple[float, float]], period_s: float) -> NDArray[np.float64]:
    return np.concatenate([np.full(round(seconds / period_s), level) for level, seconds in levels])


def standard_experiments(params: PendulumParams | None = None) -> tuple[Experiment, ...]:
    """Free swings and command steps that together identify every fitted parameter (about 47 s).

    * free swings after a kick, small and large (gravity, damping, Coulomb friction: Coulomb
      friction shows as amplitude decay that does not shrink with the amplitude),
    * steps at several duties, both directions, including one near the deadband (motor gain
      and deadband: the holding angle and the swing around it),
    * a pumped large swing (the non-linear gravity term and damping at speed).

    Commands are in the action units of `params` (default: the reference rig) and stay within
    ``max_command``; all start and end with the pendulum hanging.
    """
    params = params or PendulumParams()
    top = params.max_command
    period = params.control_period_s
    pump = np.array([top if np.sin(index * period * params.natural_frequency_rad_per_s) > 0 else -top
                     for index in range(round(2.5 / period))])  # fmt: skip
    return (
        Experiment("free-swing-small", _hold([(0.5 * top, 0.4), (0.0, 6.0)], period)),
        Experiment("free-swing-large", _hold([(top, 0.6), (-top, 0.3), (0.0, 7.0)], period)),
        Experiment("step-up", _hold([(0.5 * top, 3.0), (0.0, 2.0), (0.8 * top, 3.0), (0.0, 2.0)], period)),
        Experiment("step-down", _hold([(-0.3 * top, 3.0), (0.0, 2.0), (-top, 3.0), (0.0, 2.0)], period)),
        Experiment("deadband", _hold([(0.08 * top, 2.0), (0.15 * top, 2.0), (0.0, 2.0)], period)),
        Experiment("pumped-swing", np.concatenate([pump, np.zeros(round(4.0 / period))])),
    )


def simulate_experiment(
    params: PendulumParams,
    experiment: Experiment | ArrayLike,
    rng: np.random.Generator,
    *,
    sample_interval_s: float | tuple[float, float] | None = None,
    time_s: ArrayLike | None = None,
    timestamp_jitter_s: float = 0.0,
    initial_theta_rad: float = HANGING_RAD,
    initial_theta_dot_rad_per_s: float = 0.0,
    label: str | None = None,
) -> RecordedTrajectory:
    """What a rig with `params` would record running `experiment` (a stand-in for real data).

    `experiment` is an `Experiment` or a plain sequence of commands, one per control period
    of `params`; the command is 0 after the sequence ends. The rig is `PendulumSimulator` at
    ``FINE_STEP_S``, started at `initial_theta_rad` (from upright) and
    `initial_theta_dot_rad_per_s`, with no actuation latency (a recording stamps each command
    when the motor receives it). Angles are the encoder's (quantised to its counts).

    Sample times, all rounded to ``FINE_STEP_S``: `time_s` if given (true times from 0,
    increasing), else intervals drawn uniformly from ``sample_interval_s=(low, high)`` (a float
    means a fixed interval), else one sample per control period; sampling covers the sequence.
    The command can change only at a sample, as on the robot. ``timestamp_jitter_s`` adds
    Gaussian clock noise to the recorded times (they stay increasing).
    """
    if isinstance(experiment, Experiment):
        commands, name = np.asarray(experiment.commands, dtype=float), experiment.label
    else:
        commands, name = np.atleast_1d(np.asarray(experiment, dtype=float)), "simulated"
    period = params.control_period_s
    steps = _sample_steps(len(commands) * period, rng, period, sample_interval_s, time_s)
    simulator = PendulumSimulator(
        params.replace(control_period_s=FINE_STEP_S, physics_substeps=1, actuation_latency_s=0.0)
    )
    simulator.reset(rng, initial_theta_rad, initial_theta_dot_rad_per_s)
    angles = np.empty(len(steps))
    applied = np.empty(len(steps))
    for index, step in enumerate(steps):
        angles[index] = simulator.measured_theta
        slot = int(step * FINE_STEP_S / period + 1e-9)
        applied[index] = commands[slot] if slot < len(commands) else 0.0
        if index + 1 < len(steps):
            for _ in range(int(steps[index + 1] - step)):
                simulator.step(applied[index])
    times = steps.astype(np.float64) * FINE_STEP_S
    if timestamp_jitter_s > 0:
        times = times + rng.normal(0.0, timestamp_jitter_s, len(times))
        times = np.maximum.accumulate(times + np.arange(len(times)) * 1e-9)
    return RecordedTrajectory(times, angles, applied, label=name if label is None else label)


def _sample_steps(
    duration_s: float,
    rng: np.random.Generator,
    period_s: float,
    sample_interval_s: float | tuple[float, float] | None,
    time_s: ArrayLike | None,
) -> NDArray[np.int64]:
    """Sample times as whole numbers of fine steps, strictly increasing from 0."""
    if time_s is not None:
        steps = np.round(np.asarray(time_s, dtype=float) / FINE_STEP_S).astype(np.int64)
        if steps.ndim != 1 or len(steps) < 2 or steps[0] < 0 or np.any(np.diff(steps) <= 0):
            raise ValueError(f"time_s must be increasing times from 0, at least {FINE_STEP_S} s apart")
        return steps
    if sample_interval_s is None:
        low = high = period_s
    elif isinstance(sample_interval_s, tuple):
        low, high = sample_interval_s
    else:
        low = high = float(sample_interval_s)
    if not 0 < low <= high:
        raise ValueError(f"sample_interval_s must be positive with low <= high, got {sample_interval_s}")
    intervals = rng.uniform(low, high, size=int(duration_s / low) + 2)
    times = np.concatenate([[0.0], np.cumsum(intervals)])
    times = times[: int(np.searchsorted(times, duration_s - 1e-9)) + 1]
    return np.unique(np.round(times / FINE_STEP_S).astype(np.int64))
