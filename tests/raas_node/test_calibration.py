"""Calibrating a robot in real time: experiments through the driver, then the sysid fit."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from gym_raas import sysid
from gym_raas.params import PendulumParams, load_calibration
from raas_node.agent.calibration import calibrate_robot
from raas_node.drivers.sim_driver import SimDriver


@pytest.mark.slow
def test_calibration_finds_the_robots_own_physics_and_users_can_simulate_it(tmp_path: Path) -> None:
    believed = PendulumParams()
    actual = believed.replace(natural_frequency_rad_per_s=4.8, motor_stall_acceleration_rad_per_s2=14.0)

    class Robot(SimDriver):
        """A robot whose real physics differ from what its current calibration says."""

        def __init__(self) -> None:
            super().__init__(actual)
            self.params = believed

    experiments = [
        sysid.Experiment("kick-and-swing", np.concatenate([np.full(10, 2.0), np.zeros(70)])),
        sysid.Experiment("steps", np.concatenate([np.full(40, 1.2), np.zeros(20), np.full(30, -2.0), np.zeros(10)])),
    ]
    driver = Robot()
    try:
        result = calibrate_robot(driver, tmp_path / "pendulum-3.json", robot="pendulum-3", experiments=experiments)
    finally:
        driver.close()
    assert result.params.natural_frequency_rad_per_s == pytest.approx(4.8, rel=0.05)
    assert result.params.motor_stall_acceleration_rad_per_s2 == pytest.approx(14.0, rel=0.1)
    assert load_calibration(tmp_path / "pendulum-3.json") == result.params
    env = gym.make("RaasPendulum-v0", calibration=tmp_path / "pendulum-3.json", backend="sim")
    assert env.unwrapped.params.natural_frequency_rad_per_s == pytest.approx(4.8, rel=0.05)  # type: ignore[attr-defined]
    env.close()
