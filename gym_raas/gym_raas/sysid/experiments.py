"""Calibration experiments: the command sequences a robot runs, and their simulated twins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gym_raas.params import PendulumParams
from gym_raas.simulator import HANGING_RAD, PendulumSimulator
from gym_raas.sysid.model import RecordedTrajectory

FINE_STEP_S = 0.001


@dataclass(frozen=True)
class Experiment:
    """A command sequence applied from rest, hanging, one command per control period."""

    label: str
    commands: NDArray[np.float64]
    """Action units, one per control period (0.05 s on the reference rig)."""


def _hold(levels: list[tuple[float, float]], period_s: float) -> NDArray[np.float64]:
    return np.concatenate([np.full(round(seconds / period_s), level) for level, seconds in levels])


def standard_experiments(params: PendulumParams | None = None) -> tuple[Experiment, ...]:
    """Free swings and command steps that together identify every fitted parameter.

    * free swings after a kick (gravity, damping, Coulomb friction),
    * steps at several duties, both directions, including one near the deadband (motor gain
      and deadband),
    * a pumped large swing (the non-linear gravity term and damping at speed).
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
    experiment: Experiment,
    rng: np.random.Generator,
    *,
    sample_interval_s: tuple[float, float] | None = None,
    timestamp_jitter_s: float = 0.0,
) -> RecordedTrajectory:
    """What a robot with `params` would record running `experiment` (encoder-quantised angles).

    ``sample_interval_s=(low, high)`` samples at irregular times drawn uniformly from that range
    (the command changes only at samples, as on the robot); otherwise every control period.
    ``timestamp_jitter_s`` adds Gaussian noise to the recorded times (clock jitter).
    """
    fine = params.replace(control_period_s=FINE_STEP_S, physics_substeps=1, actuation_latency_s=0.0)
    simulator = PendulumSimulator(fine)
    simulator.reset(rng, HANGING_RAD, 0.0)
    period = params.control_period_s
    duration = len(experiment.commands) * period
    if sample_interval_s is None:
        intervals = np.full(len(experiment.commands), period)
    else:
        intervals = rng.uniform(*sample_interval_s, size=int(duration / sample_interval_s[0]) + 2)
        intervals = intervals[: int(np.searchsorted(np.cumsum(intervals), duration)) + 1]
    times, angles, commands = [0.0], [simulator.measured_theta], []
    now = 0.0
    for interval in intervals:
        command = float(experiment.commands[min(int(now / period), len(experiment.commands) - 1)])
        commands.append(command)
        for _ in range(max(1, round(interval / FINE_STEP_S))):
            simulator.step(command)
        now += max(1, round(interval / FINE_STEP_S)) * FINE_STEP_S
        times.append(now)
        angles.append(simulator.measured_theta)
    commands.append(0.0)
    recorded_times = np.array(times)
    if timestamp_jitter_s > 0:
        recorded_times = recorded_times + rng.normal(0.0, timestamp_jitter_s, len(recorded_times))
        recorded_times = np.maximum.accumulate(recorded_times + np.arange(len(recorded_times)) * 1e-9)
    return RecordedTrajectory(recorded_times, np.array(angles), np.array(commands), label=experiment.label)
