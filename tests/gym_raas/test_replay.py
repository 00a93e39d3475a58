"""Sim-to-real replay: a run of the model itself replays exactly; a different rig shows its error."""

from __future__ import annotations

import numpy as np
import pytest

from gym_raas.params import PendulumParams
from gym_raas.results.replay import replay_commands
from gym_raas.simulator import PendulumSimulator


def record(params: PendulumParams, commands: np.ndarray, skip_every: int = 0) -> tuple[np.ndarray, ...]:
    """A 'real' run as the agent would record it: boundary time, measured angle, applied command."""
    rig = params.replace(actuation_latency_s=0.0, encoder_edge_jitter_s=0.0)
    simulator = PendulumSimulator(rig)
    simulator.reset(np.random.default_rng(1))
    times, angles, applied = [], [], []
    time = 0.0
    for index, command in enumerate(commands):
        times.append(time)
        angles.append(simulator.measured_theta)
        applied.append(command)
        periods = 2 if skip_every and index % skip_every == 0 else 1  # a missed deadline
        for _ in range(periods):
            simulator.step(float(command))
        time += periods * rig.control_period_s
    return np.array(times), np.array(angles), np.array(applied)


def swing_commands(steps: int = 200) -> np.ndarray:
    return 2.0 * np.sign(np.sin(np.arange(steps) * 0.05 * 5.3))


def test_a_run_of_the_model_itself_replays_with_no_error() -> None:
    params = PendulumParams()
    time, theta, command = record(params, swing_commands(), skip_every=17)
    replay = replay_commands(time, theta, command, params)
    assert replay.rmse_rad == pytest.approx(0.0, abs=1e-9)
    assert replay.theta_rad.shape == theta.shape


def test_a_rig_that_differs_from_its_calibration_shows_a_sim_to_real_error() -> None:
    real = PendulumParams(natural_frequency_rad_per_s=5.0, motor_stall_acceleration_rad_per_s2=14.0)
    time, theta, command = record(real, swing_commands())
    replay = replay_commands(time, theta, command, PendulumParams())
    assert replay.rmse_rad > 0.1


def test_mismatched_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        replay_commands(np.zeros(3), np.zeros(2), np.zeros(3), PendulumParams())


def test_resynchronising_measures_the_models_prediction_over_a_horizon() -> None:
    real = PendulumParams(natural_frequency_rad_per_s=5.0, motor_stall_acceleration_rad_per_s2=14.0)
    time, theta, command = record(real, swing_commands(400))
    speeds = np.gradient(np.unwrap(theta), time)  # a stand-in for the recorded speed estimate
    open_loop = replay_commands(time, theta, command, PendulumParams())
    windowed = replay_commands(time, theta, command, PendulumParams(), theta_dot_rad_per_s=speeds, resync_every_s=1.0)
    matched = replay_commands(time, theta, command, real, theta_dot_rad_per_s=speeds, resync_every_s=1.0)
    assert windowed.rmse_rad < open_loop.rmse_rad
    assert matched.rmse_rad < windowed.rmse_rad  # the right model predicts better
