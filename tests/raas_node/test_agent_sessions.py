"""Control sessions end to end: RaasPendulum-v0's robot backend ⇄ robot agent ⇄ driver.

The simulated driver runs the rig physics in real time; the pigpio driver runs against the
virtual rig (a pigpiod-compatible server) over TCP, as on a Raspberry Pi.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from agent_fixtures import running_agent, wait_for_state

from gym_raas.backends.robot import SESSION_WAIT_ENV, RobotBackend, RobotSessionError, session_wait_s
from gym_raas.params import PendulumParams
from raas_node.agent.agent import AgentState, RobotAgent
from raas_node.agent.recorder import read_trajectory
from raas_node.drivers.config import PigpioDriverConfig
from raas_node.drivers.pigpio_driver import PigpioDriver
from raas_node.drivers.sim_driver import SimDriver

SWINGUP = Path(__file__).resolve().parents[2] / "examples" / "swingup" / "run.py"


def swingup_controller(params: PendulumParams) -> object:
    spec = importlib.util.spec_from_file_location("swingup_run", SWINGUP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SwingUpController(params)


def robot_env(agent: RobotAgent, job_id: str, monkeypatch: pytest.MonkeyPatch) -> gym.Env:  # type: ignore[type-arg]
    token = agent.expect(job_id)
    monkeypatch.setenv("RAAS_AGENT_SOCKET", str(agent.config.socket_path))
    monkeypatch.setenv("RAAS_SESSION_TOKEN", token)
    return gym.make("RaasPendulum-v0")


def run_session(env: gym.Env, steps: int) -> list[tuple[float, float, dict]]:  # type: ignore[type-arg]
    controller = swingup_controller(env.unwrapped.params)  # type: ignore[attr-defined]
    observation, _ = env.reset()
    seen = []
    for _ in range(steps):
        observation, _, _, _, info = env.step(np.array([controller(observation)], dtype=np.float32))  # type: ignore[operator]
        seen.append((math.atan2(float(observation[1]), float(observation[0])), float(observation[2]), info))
    env.close()
    return seen


def assert_recording_matches(agent: RobotAgent, job_id: str, seen: list[tuple[float, float, dict]]) -> None:
    result = agent.wait_session(job_id, timeout_s=60)
    assert result is not None
    assert result.outcome == "completed"
    after_reset = agent.wait_reset(job_id, timeout_s=60)  # the result comes first, the reset's report after
    assert after_reset is not None
    assert after_reset.reset is not None
    assert after_reset.reset.ok, after_reset.reset
    assert result.steps == len(seen)
    assert result.trajectory_path is not None
    rows = read_trajectory(result.trajectory_path)
    fresh = [index for index, requested in enumerate(rows["requested_command"]) if requested is not None]
    assert len(fresh) == len(seen)
    for index, (theta, theta_dot, info) in zip(fresh, seen, strict=True):
        assert rows["theta_rad"][index] == pytest.approx(theta, abs=1e-5)
        assert rows["theta_dot_rad_per_s"][index] == pytest.approx(theta_dot, abs=1e-4)
        assert rows["step"][index] == info["step"]
        assert rows["applied_command"][index] == pytest.approx(info["applied_command"], abs=1e-9)
    assert sum(rows["reward"]) == pytest.approx(result.total_reward)


@pytest.mark.slow
def test_a_full_session_on_the_simulated_robot_swings_up_and_the_recording_matches_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_agent(SimDriver(PendulumParams())) as agent:
        env = robot_env(agent, "job-sim", monkeypatch)
        assert type(env.unwrapped.backend) is RobotBackend  # type: ignore[attr-defined]
        seen = run_session(env, 80)
        assert abs(seen[-1][0]) < 0.15  # balanced within 4 s, in real time
        assert seen[-1][2]["deadline_misses"] == 0
        assert_recording_matches(agent, "job-sim", seen)
        wait_for_state(agent, AgentState.IDLE, 30)  # reset after the session: ready again


@pytest.mark.slow
def test_a_full_session_through_the_pigpio_driver_on_the_virtual_rig(
    monkeypatch: pytest.MonkeyPatch, rig_driver_config: PigpioDriverConfig
) -> None:
    with running_agent(PigpioDriver(rig_driver_config, PendulumParams())) as agent:
        seen = run_session(robot_env(agent, "job-rig", monkeypatch), 60)
        assert_recording_matches(agent, "job-rig", seen)


def test_a_session_the_agent_was_not_told_to_expect_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_agent(SimDriver(PendulumParams())) as agent:
        agent.expect("job-a", token="the-right-token")
        with pytest.raises(RobotSessionError, match="not told to expect"):
            RobotBackend(str(agent.config.socket_path), token="a-guessed-token", wait_s=0)
        backend = RobotBackend(str(agent.config.socket_path), token="the-right-token")
        assert backend.session == "job-a"
        backend.close()
        with pytest.raises(RobotSessionError, match=r"not told to expect.*waited 0\.3 s"):  # a token works once
            RobotBackend(str(agent.config.socket_path), token="the-right-token", wait_s=0.3)


def test_a_job_that_connects_before_its_robot_expects_it_waits_for_the_session() -> None:
    """On a cluster the agent learns of a booking at its next heartbeat, which can come after
    the job's pod has started: the client waits for it instead of failing the job."""
    with running_agent(SimDriver(PendulumParams())) as agent:
        threading.Timer(0.4, agent.expect, args=("job-early",), kwargs={"token": "early-token"}).start()
        backend = RobotBackend(str(agent.config.socket_path), token="early-token", wait_s=30)
        assert backend.session == "job-early"
        backend.close()


def test_a_job_waits_while_the_robot_serves_and_resets_after_another() -> None:
    with running_agent(SimDriver(PendulumParams())) as agent:
        first = RobotBackend(str(agent.config.socket_path), token=agent.expect("job-first"))
        first.reset(np.random.default_rng(0), None)
        for _ in range(25):
            first.step(1.0)  # leaves the pendulum swinging: the next session waits for the reset
        second_token = agent.expect("job-second")
        opened: list[RobotBackend] = []
        waiting = threading.Thread(
            target=lambda: opened.append(RobotBackend(str(agent.config.socket_path), token=second_token, wait_s=60))
        )
        waiting.start()
        time.sleep(0.3)
        assert not opened  # refused as busy, and still waiting
        first.close()
        waiting.join(timeout=60)
        assert opened
        assert opened[0].session == "job-second"
        assert agent.wait_session("job-first", timeout_s=5) is not None
        opened[0].close()


def test_a_robot_in_maintenance_refuses_at_once_however_long_a_job_would_wait() -> None:
    with running_agent(SimDriver(PendulumParams())) as agent:
        agent.set_maintenance(True)
        token = agent.expect("job-maintenance")
        started = time.monotonic()
        with pytest.raises(RobotSessionError, match="maintenance"):
            RobotBackend(str(agent.config.socket_path), token=token, wait_s=120)
        assert time.monotonic() - started < 60  # not waited out: maintenance is no transient refusal


def test_a_slow_controller_misses_deadlines_and_they_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_agent(SimDriver(PendulumParams())) as agent:
        env = robot_env(agent, "job-slow", monkeypatch)
        env.reset()
        infos = []
        for _ in range(5):
            time.sleep(0.12)  # more than two control periods of "thinking"
            infos.append(env.step(np.zeros(1, dtype=np.float32))[4])
        env.close()
        assert infos[-1]["deadline_misses"] >= 8
        assert all(info["late_by"] > 0.0 for info in infos[1:])
        result = agent.wait_session("job-slow", timeout_s=30)
        assert result is not None
        assert result.deadline_misses == infos[-1]["deadline_misses"]


def drive_until_refused(env: gym.Env) -> None:  # type: ignore[type-arg]
    for _ in range(100):
        env.step(np.array([2.0], dtype=np.float32))


def test_cancelling_a_session_stops_the_motor_and_ends_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = SimDriver(PendulumParams())
    with running_agent(driver) as agent:
        env = robot_env(agent, "job-cancel", monkeypatch)
        env.reset()
        env.step(np.array([2.0], dtype=np.float32))
        env.step(np.array([2.0], dtype=np.float32))
        canceller = threading.Timer(0.2, agent.cancel, args=("job-cancel",))
        canceller.start()
        with pytest.raises(RobotSessionError, match="cancelled"):
            drive_until_refused(env)
        canceller.join()  # cancel returns once the user's command no longer drives the motor
        # The motor is off, or already damping the swing under the agent's reset (≤ 60 % duty).
        assert abs(driver.true_state().duty) <= 0.6
        result = agent.wait_session("job-cancel", timeout_s=30)
        assert result is not None
        assert result.outcome == "cancelled"


def test_ending_a_job_that_never_connected_returns_at_once_even_after_a_cancel() -> None:
    with running_agent(SimDriver(PendulumParams())) as agent:
        agent.expect("job-never")
        agent.cancel("job-never")  # cancelled before its program opened a session
        started = time.monotonic()
        assert agent.end_job("job-never", timeout_s=30) is None
        assert agent.end_job("job-unknown", timeout_s=30) is None
        assert time.monotonic() - started < 1.0


def test_boundaries_while_a_session_closes_are_not_recorded_as_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: between the client's close and the session's end the control loop went on
    recording, replaying the last fresh command as a step (21 steps for a 20-step run)."""
    with running_agent(SimDriver(PendulumParams())) as agent:
        send = agent._send

        def slow_goodbye(connection: object, kind: str, **fields: object) -> None:
            if kind == "bye":
                time.sleep(0.3)  # six boundaries pass between close and the session's end
            send(connection, kind, **fields)  # type: ignore[arg-type]

        monkeypatch.setattr(agent, "_send", slow_goodbye)
        seen = run_session(robot_env(agent, "job-closing", monkeypatch), 10)
        result = agent.wait_session("job-closing", timeout_s=30)
        assert result is not None
        assert result.steps == len(seen) == 10
        assert result.trajectory_path is not None
        rows = read_trajectory(result.trajectory_path)
        assert sum(requested is not None for requested in rows["requested_command"]) == 10


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 30.0), ("5", 5.0), ("0", 0.0), ("2.5", 2.5), ("-1", 30.0), ("nan", 30.0), ("inf", 30.0), ("soon", 30.0)],
)
def test_the_session_wait_comes_from_the_environment_and_bad_values_mean_the_default(
    value: str | None, expected: float
) -> None:
    environ = {} if value is None else {SESSION_WAIT_ENV: value}
    assert session_wait_s(environ) == expected


class _LinkLostDriver(SimDriver):
    """A simulated robot whose link to its hardware breaks (pigpiod gone) after `working` commands:
    every later command raises the OSError a dead socket gives."""

    def __init__(self, params: PendulumParams, working: int) -> None:
        super().__init__(params)
        self.working = working

    def apply_duty(self, duty: float) -> float:
        if duty != 0.0:
            self.working -= 1
            if self.working < 0:
                raise BrokenPipeError(32, "Broken pipe (pigpiod)")
        return super().apply_duty(duty)


def test_a_robot_link_lost_while_applying_a_command_is_the_robots_failure_not_the_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (The virtual-rig retry test failed now and then: the OSError reached the session's handler, which
    # read it as the client's connection lost.)
    with running_agent(_LinkLostDriver(PendulumParams(), working=10)) as agent:
        env = robot_env(agent, "job-link", monkeypatch)
        env.reset()
        with pytest.raises(RobotSessionError, match="robot agent failure"):
            drive_until_refused(env)
        result = agent.wait_session("job-link", timeout_s=30)
        assert result is not None
        assert result.outcome == "agent_error", result
        assert "Broken pipe" in result.message
        assert agent.state is AgentState.FAULT  # no further job until the robot is looked at
