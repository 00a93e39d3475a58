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
) -> Replay:
    """Replay `applied_command[k]` (held from `time_s[k]` to `time_s[k+1]`) from the first sample.

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
    # Driver latency (a few ms) is below one substep; the agent's one-period delay is already in
    # the timestamps of the recording.
    twin = params.replace(actuation_latency_s=0.0, encoder_edge_jitter_s=0.0)
    simulator = PendulumSimulator(twin)
    simulator.reset(np.random.default_rng(seed), float(theta_rad[0]), initial_theta_dot_rad_per_s)
    simulated = np.empty_like(theta_rad)
    simulated[0] = simulator.measured_theta
    period = twin.control_period_s
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
        for _ in range(periods):
            simulator.step(float(applied_command[index - 1]))
        simulated[index] = simulator.measured_theta
    error = wrap_angle(theta_rad - simulated)
    rmse = float(math.sqrt(float(np.mean(np.square(error)))))
    return Replay(time_s, simulated, rmse)
