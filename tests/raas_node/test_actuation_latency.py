"""Apply on arrival (issue 17): a command reaches the motor milliseconds after the reading it
answers, not a whole control period later; late commands are counted and held; the latency is
measured, recorded and told to the client; old-protocol clients keep working.

The controller is a plain proportional-derivative balancer with an energy swing-up, written as a
user of the original service would (no latency compensation).
"""

from __future__ import annotations

import math
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from agent_fixtures import wait_for_state
from numpy.typing import NDArray

from gym_raas.params import PendulumParams
from gym_raas.protocol import FrameReader, decode_message, encode_frame, encode_message
from gym_raas.results.replay import replay_commands
from raas_node.agent.agent import AgentConfig, AgentState, RobotAgent
from raas_node.agent.recorder import read_trajectory
from raas_node.drivers.sim_driver import SimDriver

OMEGA0 = PendulumParams().natural_frequency_rad_per_s
UPRIGHT_RAD = 0.3


def pd_swingup(observation: NDArray[np.float32]) -> float:
    """PD balance near the top, energy pumping elsewhere (a kick from rest)."""
    theta = math.atan2(float(observation[1]), float(observation[0]))
    speed = float(observation[2])
    if abs(theta) < 0.6:
        return max(-2.0, min(2.0, -(15.0 * theta + 5.0 * speed)))
    if abs(speed) < 0.05:
        return 2.0
    energy = 0.5 * speed * speed + OMEGA0**2 * (1.0 + math.cos(theta))
    return max(-2.0, min(2.0, 0.2 * (2.0 * OMEGA0**2 - energy) * math.copysign(1.0, speed)))


@contextmanager
def agent_with(actuation: str, robot: str = "pendulum-lat") -> Iterator[RobotAgent]:
    folder = Path(tempfile.mkdtemp(prefix="raas-lat-"))
    driver = SimDriver(PendulumParams())
    config = AgentConfig(
        robot=robot, socket_path=folder / "agent.sock", recordings_dir=folder / "rec", actuation=actuation
    )
    agent = RobotAgent(driver, config).start()
    try:
        wait_for_state(agent, AgentState.IDLE, 30)
        yield agent
    finally:
        agent.stop()
        driver.close()
        shutil.rmtree(folder, ignore_errors=True)


def robot_env(agent: RobotAgent, job_id: str, monkeypatch: pytest.MonkeyPatch) -> gym.Env:
    monkeypatch.setenv("RAAS_AGENT_SOCKET", str(agent.config.socket_path))
    monkeypatch.setenv("RAAS_SESSION_TOKEN", agent.expect(job_id))
    return gym.make("RaasPendulum-v0")


def balance_share(agent: RobotAgent, job_id: str, monkeypatch: pytest.MonkeyPatch) -> tuple[float, list[dict]]:  # type: ignore[type-arg]
    """Run the PD balancer for 10 s (200 steps at 20 Hz) from hanging; the share of the last
    5 s spent upright, and the infos the client saw."""
    env = robot_env(agent, job_id, monkeypatch)
    observation, _ = env.reset()
    upright, infos = [], []
    for _ in range(200):
        observation, _, _, _, info = env.step(np.array([pd_swingup(observation)], dtype=np.float32))
        upright.append(abs(math.atan2(float(observation[1]), float(observation[0]))) < UPRIGHT_RAD)
        infos.append(info)
    env.close()
    return float(np.mean(upright[100:])), infos


@pytest.mark.slow
def test_a_plain_pd_balancer_balances_through_the_agent_and_failed_under_the_boundary_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with agent_with("arrival") as agent:
        share, infos = balance_share(agent, "job-arrival", monkeypatch)
        result = agent.wait_session("job-arrival", timeout_s=60)
    assert share > 0.9
    assert result is not None
    assert result.actuation_latency_s["p50"] < 0.5 * result.control_period_s  # well inside the period
    latencies = [info["actuation_latency_s"] for info in infos[1:]]
    assert all(0.0 < latency < 0.05 for latency in latencies) or result.deadline_misses > 0

    with agent_with("boundary") as agent:  # the earlier rule: the same controller loses the pendulum
        old_share, old_infos = balance_share(agent, "job-boundary", monkeypatch)
    assert old_share < 0.9
    assert min(info["actuation_latency_s"] for info in old_infos[1:]) >= 0.05  # a whole period, at least


def test_the_recorded_latency_is_what_the_client_saw_and_includes_its_thinking_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with agent_with("arrival") as agent:
        env = robot_env(agent, "job-think", monkeypatch)
        env.reset()
        infos = []
        for step in range(12):
            time.sleep(0.02 if step % 2 else 0.0)  # every other command after 20 ms of thinking
            infos.append(env.step(np.array([0.5], dtype=np.float32))[4])
        env.close()
        result = agent.wait_session("job-think", timeout_s=60)
        assert result is not None
        assert result.trajectory_path is not None
        assert result.metadata_path is not None
        rows = read_trajectory(result.trajectory_path)
        metadata = result.metadata_path.read_text()
    recorded = [latency for latency, requested in zip(rows["actuation_latency_s"], rows["requested_command"],
                strict=True) if requested is not None]  # fmt: skip
    assert recorded == pytest.approx([info["actuation_latency_s"] for info in infos], abs=1e-12)
    thought = [info["actuation_latency_s"] for step, info in enumerate(infos) if step % 2 and step > 0]
    assert all(latency >= 0.02 for latency in thought)
    applied_at = [at for at, requested in zip(rows["applied_at_s"], rows["requested_command"], strict=True)
                  if requested is not None]  # fmt: skip
    fresh_times = [t for t, requested in zip(rows["time_s"], rows["requested_command"], strict=True)
                   if requested is not None]  # fmt: skip
    # Each command reached the driver inside the period that ends at its row's boundary.
    assert all(t - 0.05 - 1e-6 <= at <= t + 1e-6 for at, t in zip(applied_at[1:], fresh_times[1:], strict=True))
    assert '"actuation_latency_s"' in metadata
    assert result.actuation_latency_s["count"] == 11  # the first step waits on the user's start-up
    histogram = agent.metrics.registry.get_sample_value(
        "raas_actuation_latency_seconds_count", {"robot": "pendulum-lat"}
    )
    assert histogram == 11


def test_a_late_command_is_counted_held_and_applied_when_it_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    with agent_with("arrival") as agent:
        env = robot_env(agent, "job-late", monkeypatch)
        env.reset()
        env.step(np.array([1.0], dtype=np.float32))
        time.sleep(0.12)  # two boundaries pass without a command: both count, the last command holds
        info = env.step(np.array([-1.0], dtype=np.float32))[4]
        env.close()
        result = agent.wait_session("job-late", timeout_s=60)
        assert result is not None
        assert result.trajectory_path is not None
        rows = read_trajectory(result.trajectory_path)
    assert info["deadline_misses"] >= 2
    assert info["late_by"] > 0.0
    assert info["actuation_latency_s"] > 0.1
    first = rows["requested_command"].index(1.0)
    late = rows["requested_command"].index(-1.0)
    held = rows["applied_command"][first + 1 : late]
    assert len(held) >= 2
    assert all(command == pytest.approx(rows["applied_command"][first]) for command in held)
    assert all(requested is None for requested in rows["requested_command"][first + 1 : late])
    assert rows["applied_command"][late] < 0.0


def test_a_client_of_protocol_version_1_keeps_working(monkeypatch: pytest.MonkeyPatch) -> None:
    with agent_with("arrival") as agent:
        token = agent.expect("job-v1")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(str(agent.config.socket_path))
            reader = FrameReader(connection)

            def exchange(kind: str, **fields: object) -> dict:  # type: ignore[type-arg]
                connection.sendall(encode_frame(encode_message(kind, version=1, **fields)))
                payload = reader.read()
                assert payload is not None
                raw = decode_message(payload)
                assert raw["v"] == 1
                return raw

            welcome = exchange("hello", token=token)
            assert set(welcome) == {"type", "v", "session", "robot", "params", "dt"}
            assert set(exchange("reset")) == {"type", "v", "theta", "theta_dot", "step", "boundary_time",
                                              "late_by", "deadline_misses", "applied", "safety"}  # fmt: skip
            observation = exchange("step", action=1.0)
            assert "actuation_latency" not in observation
            assert observation["step"] == 1
            assert exchange("close")["type"] == "bye"
        result = agent.wait_session("job-v1", timeout_s=60)
    assert result is not None
    assert result.outcome == "completed"
    assert result.steps == 1


def test_the_replay_with_recorded_latencies_fits_the_robot_better_than_with_a_fixed_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(7)
    with agent_with("arrival") as agent:
        env = robot_env(agent, "job-replay", monkeypatch)
        env.reset()
        for _ in range(60):
            time.sleep(float(rng.uniform(0.0, 0.04)))  # a controller whose thinking time varies
            env.step(np.array([rng.choice([-2.0, 2.0])], dtype=np.float32))
        env.close()
        result = agent.wait_session("job-replay", timeout_s=60)
        assert result is not None
        assert result.trajectory_path is not None
        rows = read_trajectory(result.trajectory_path)
    columns = {name: np.array([math.nan if v is None else v for v in rows[name]], dtype=float)
               for name in ("time_s", "theta_rad", "theta_dot_rad_per_s", "applied_command", "applied_at_s",
                            "actuation_latency_s")}  # fmt: skip
    first = int(np.flatnonzero(np.isfinite(columns["applied_at_s"]))[0])  # from the first command on
    window = {name: values[max(first - 1, 0) :] for name, values in columns.items()}
    common = {
        "theta_dot_rad_per_s": window["theta_dot_rad_per_s"],
        "resync_every_s": 0.5,
        "initial_theta_dot_rad_per_s": float(window["theta_dot_rad_per_s"][0]),
    }
    args = (window["time_s"], window["theta_rad"], window["applied_command"], PendulumParams())
    recorded = replay_commands(*args, applied_at_s=window["applied_at_s"], **common)  # type: ignore[arg-type]
    typical = float(np.nanmedian(window["actuation_latency_s"]))
    fixed = replay_commands(*args, latency_s=typical, **common)  # type: ignore[arg-type]
    assert recorded.rmse_rad < fixed.rmse_rad
