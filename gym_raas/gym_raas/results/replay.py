"""Sim-to-real replay: run a robot's recorded commands through its calibrated simulator.

The robot agent records, at every control-clock boundary, the measured angle and the command it
applied from that boundary on. Replaying those commands from the same starting state in the
simulator of the robot's calibration shows how far the real pendulum departed from its model:
the result plot overlays both angles, and ``metadata.json`` carries the RMSE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gym_raas.params import PendulumParams
from gym_raas.simulator import PendulumSimulator, wrap_angle


@dataclass(frozen=True)
class Replay:
    """The simulated twin of a recorded run."""

    time_s: NDArray[np.float64]
    theta_rad: NDArray[np.float64]
    """Simulated encoder angle at each recorded boundary (wrapped, from upright)."""
    rmse_rad: float
    """Root-mean-square of the wrapped angle difference, real vs simulated."""


def replay_commands(
    time_s: NDArray[np.float64],
    theta_rad: NDArray[np.float64],
    applied_command: NDArray[np.float64],
    params: PendulumParams,
    *,
    initial_theta_dot_rad_per_s: float = 0.0,
    seed: int = 0,
    theta_dot_rad_per_s: NDArray[np.float64] | None = None,
    resync_every_s: float | None = None,
    applied_at_s: NDArray[np.float64] | None = None,
    latency_s: float | None = None,
) -> Replay:
    """Replay the recorded commands from the first sample.

    Timing of the commands, by what the recording holds:

    * `applied_at_s` (recordings of the agent's apply-on-arrival rule): `applied_command[k]`
      reached the motor at ``applied_at_s[k]``, inside the period that ends at ``time_s[k]``
      (NaN: no command came, the previous one held). Each step's recorded actuation latency.
    * `latency_s`: every command reached the motor that long after the boundary before its row
      (one fixed latency for all, the comparison the recorded latencies beat).
    * neither (recordings of the earlier boundary rule): `applied_command[k]` acted from
      ``time_s[k]`` to ``time_s[k+1]``.

    The simulator starts at ``theta_rad[0]`` with the given speed. Intervals that span several
    control periods (the robot missed deadlines) are simulated as that many periods with the
    same command. The simulator's own actuation latency is set to zero: the recorded commands
    are what reached the motor at each boundary.

    An open-loop replay of a balancing run diverges whatever the model (the upright is unstable:
    errors grow ~e^(ω₀ t)). With `resync_every_s` and the measured speeds, the simulator is put
    back on the measured state at the start of every window of that length, so the error
    measures the model's prediction over that horizon (multiple shooting).
    """
    time_s = np.asarray(time_s, dtype=float)
    theta_rad = np.asarray(theta_rad, dtype=float)
    applied_command = np.asarray(applied_command, dtype=float)
    if not len(time_s) == len(theta_rad) == len(applied_command):
        raise ValueError("time, angle and command columns must have the same length")
    if len(time_s) == 0:
        return Replay(time_s, theta_rad, 0.0)
    # The latency is the recording's (its switch times), never the twin's own.
    twin = params.replace(actuation_latency_s=0.0, encoder_edge_jitter_s=0.0)
    simulator = PendulumSimulator(twin)
    simulator.reset(np.random.default_rng(seed), float(theta_rad[0]), initial_theta_dot_rad_per_s)
    simulated = np.empty_like(theta_rad)
    simulated[0] = simulator.measured_theta
    period = twin.control_period_s
    switches = _switch_offsets(time_s, applied_at_s, latency_s)
    synced_at = time_s[0]
    for index in range(1, len(time_s)):
        if (
            resync_every_s is not None
            and theta_dot_rad_per_s is not None
            and time_s[index - 1] - synced_at >= resync_every_s
        ):
            simulator.reset(
                np.random.default_rng(seed), float(theta_rad[index - 1]), float(theta_dot_rad_per_s[index - 1])
            )
            synced_at = time_s[index - 1]
        periods = max(1, round((time_s[index] - time_s[index - 1]) / period))
        if switches is None:
            for _ in range(periods):
                simulator.step(float(applied_command[index - 1]))
        else:
            for _ in range(periods - 1):
                simulator.step(float(applied_command[index - 1]), latency_s=0.0)
            offset = min(max(switches[index] - (periods - 1) * period, 0.0), period)
            simulator.step(float(applied_command[index]), latency_s=offset)
        simulated[index] = simulator.measured_theta
    error = wrap_angle(theta_rad - simulated)
    rmse = float(math.sqrt(float(np.mean(np.square(error)))))
    return Replay(time_s, simulated, rmse)


def _switch_offsets(
    time_s: NDArray[np.float64], applied_at_s: NDArray[np.float64] | None, latency_s: float | None
) -> NDArray[np.float64] | None:
    """Per row k ≥ 1: when its command took over, counted from ``time_s[k-1]`` (None: the
    boundary rule's timing). A row without a command switches at its own boundary."""
    if applied_at_s is None and latency_s is None:
        return None
    intervals = np.diff(time_s, prepend=time_s[0])
    if applied_at_s is not None:
        applied_at = np.asarray(applied_at_s, dtype=float)
        if len(applied_at) != len(time_s):
            raise ValueError("applied_at_s must have one value per recorded row")
        offsets = applied_at - np.concatenate(([time_s[0]], time_s[:-1]))
    else:
        offsets = np.full(len(time_s), float(latency_s if latency_s is not None else 0.0))
    return np.where(np.isfinite(offsets), np.minimum(offsets, intervals), intervals)
