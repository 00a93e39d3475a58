"""Calibrating a robot in real time: experiments through the driver, then the sysid fit."""

from __future__ import annotations

import math
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from agent_fixtures import running_agent

from gym_raas import sysid
from gym_raas.params import PendulumParams, load_calibration
from raas_node.agent.calibration import calibrate_robot, measured_actuation_latency_s
from raas_node.agent.recorder import read_trajectory
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


def test_calibration_stores_the_median_actuation_latency_the_robots_sessions_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_agent(SimDriver(PendulumParams()), robot="pendulum-cal") as agent:
        for job, thinking_s in (("job-quick", 0.0), ("job-slow", 0.01)):
            monkeypatch.setenv("RAAS_AGENT_SOCKET", str(agent.config.socket_path))
            monkeypatch.setenv("RAAS_SESSION_TOKEN", agent.expect(job))
            env = gym.make("RaasPendulum-v0")
            env.reset()
            for _ in range(8):
                time.sleep(thinking_s)
                env.step(np.array([0.3], dtype=np.float32))
            env.close()
            assert agent.wait_session(job, timeout_s=60) is not None
        recordings = agent.config.recordings_dir
        recorded = [
            value
            for job in ("job-quick", "job-slow")
            for value in read_trajectory(recordings / job / "trajectory.parquet")["actuation_latency_s"]
            if value is not None and math.isfinite(value)
        ]
        assert len(recorded) == 16
        measured = measured_actuation_latency_s(recordings)
        driver = SimDriver(PendulumParams())
        try:
            result = calibrate_robot(
                driver,
                tmp_path / "pendulum-cal.json",
                robot="pendulum-cal",
                experiments=[sysid.Experiment("kick", np.concatenate([np.full(8, 2.0), np.zeros(32)]))],
                recordings=recordings,
            )
        finally:
            driver.close()
    assert measured == pytest.approx(float(np.median(recorded)))
    assert result.params.actuation_latency_s == pytest.approx(measured)
    assert load_calibration(tmp_path / "pendulum-cal.json").actuation_latency_s == pytest.approx(measured)


def test_without_recorded_sessions_the_calibration_keeps_its_latency(tmp_path: Path) -> None:
    (tmp_path / "job-old").mkdir()
    (tmp_path / "job-old" / "trajectory.parquet").write_bytes(b"not parquet")
    assert measured_actuation_latency_s(tmp_path) is None
    assert measured_actuation_latency_s(tmp_path / "missing") is None
