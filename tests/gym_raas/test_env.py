"""RaasPendulum-v0 through Gymnasium: checker, determinism, spaces, reward, errors."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import gym_raas
from gym_raas.envs.pendulum import RaasPendulumEnv
from gym_raas.params import PendulumParams, save_calibration


@pytest.fixture(autouse=True)
def _headless_pygame(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    monkeypatch.delenv("RAAS_AGENT_SOCKET", raising=False)


@pytest.mark.parametrize("env_id", gym_raas.ENV_IDS)
def test_every_registered_env_passes_gymnasiums_env_checker(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


@pytest.mark.parametrize("env_id", gym_raas.ENV_IDS)
def test_same_seed_gives_the_same_trajectory(env_id: str) -> None:
    def rollout(seed: int) -> np.ndarray:
        env = gym.make(env_id, initial_state="random")
        observation, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        rows = [observation]
        for _ in range(100):
            observation, reward, *_ = env.step(env.action_space.sample())
            rows.append(np.append(observation, reward))
        env.close()
        return np.concatenate(rows)

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


@pytest.mark.parametrize("env_id", gym_raas.ENV_IDS)
def test_close_twice_is_harmless(env_id: str) -> None:
    env = gym.make(env_id, render_mode="human")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()
    env.close()


def test_env_is_reachable_with_module_prefix_and_has_pendulum_interface() -> None:
    env = gym.make("gym_raas:RaasPendulum-v0")
    assert env.action_space == gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    assert env.observation_space.shape == (3,)
    assert env.unwrapped.dt == pytest.approx(0.05)  # type: ignore[attr-defined]
    assert env.spec is not None
    assert env.spec.max_episode_steps == 200


def test_episode_is_truncated_after_the_configured_number_of_steps() -> None:
    env = gym.make("RaasPendulum-v0", max_episode_steps=7)
    env.reset(seed=0)
    flags = [env.step(np.zeros(1, dtype=np.float32))[2:4] for _ in range(7)]
    assert flags[-1] == (False, True)
    assert all(flag == (False, False) for flag in flags[:-1])


def test_episode_starts_hanging_at_rest_like_the_robot_after_its_reset() -> None:
    env = gym.make("RaasPendulum-v0")
    for seed in range(5):
        observation, _ = env.reset(seed=seed)
        assert observation[0] < -0.999
        assert abs(observation[2]) <= 0.02 + 1e-6


def test_reward_is_pendulums_cost_of_the_observation_the_action_answers() -> None:
    env = gym.make("RaasPendulum-v0")
    env.reset(seed=0, options={"theta": 0.3, "theta_dot": -1.0})
    first, *_ = env.step(np.array([0.0], dtype=np.float32))
    theta = math.atan2(float(first[1]), float(first[0]))
    _, reward, *_ = env.step(np.array([1.5], dtype=np.float32))
    expected = -(theta**2 + 0.1 * float(first[2]) ** 2 + 0.001 * 1.5**2)
    assert reward == pytest.approx(expected, rel=1e-5)


def test_out_of_range_actions_are_clipped_and_nan_is_refused() -> None:
    env = gym.make("RaasPendulum-v0")
    env.reset(seed=0)
    _, reward, *_ = env.step(np.array([50.0], dtype=np.float32))
    assert reward == pytest.approx(-(math.pi**2) - 0.001 * 4.0, abs=0.05)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan], dtype=np.float32))


def test_observation_is_encoder_quantised() -> None:
    env = gym.make("RaasPendulum-v0")
    env.reset(seed=0, options={"theta": 2.0, "theta_dot": 0.0})
    resolution = 2 * math.pi / 480
    for _ in range(20):
        observation, *_ = env.step(np.zeros(1, dtype=np.float32))
        theta = math.atan2(float(observation[1]), float(observation[0]))
        counts = (theta - math.pi) / resolution
        assert counts == pytest.approx(round(counts), abs=1e-3)


def test_calibration_file_changes_the_simulated_rig(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "robot.json"
    save_calibration(path, PendulumParams(natural_frequency_rad_per_s=3.0, max_command=1.0), robot="pendulum-07")
    env = gym.make("RaasPendulum-v0", calibration=path)
    assert env.unwrapped.params.natural_frequency_rad_per_s == 3.0  # type: ignore[attr-defined]
    assert env.action_space.high[0] == pytest.approx(1.0)


def test_rgb_array_render_draws_the_rod_where_the_pendulum_is() -> None:
    env = RaasPendulumEnv(render_mode="rgb_array", backend="sim")
    env.reset(seed=0, options={"theta": 0.0, "theta_dot": 0.0})
    upright = env.render()
    env.reset(seed=0, options={"theta": math.pi, "theta_dot": 0.0})
    hanging = env.render()
    assert upright is not None
    assert hanging is not None
    assert upright.shape == (500, 500, 3)
    assert upright.dtype == np.uint8
    red = np.array([204, 77, 77])
    above_pivot = np.abs(upright[100:240, 245:255].astype(int) - red).sum(axis=-1) < 30
    below_pivot = np.abs(hanging[260:400, 245:255].astype(int) - red).sum(axis=-1) < 30
    assert above_pivot.mean() > 0.5
    assert below_pivot.mean() > 0.5


def test_unknown_backend_and_render_mode_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        RaasPendulumEnv(backend="gpu")
    with pytest.raises(ValueError, match="render_mode"):
        RaasPendulumEnv(render_mode="ascii")


def test_robot_backend_is_chosen_automatically_only_inside_a_job(monkeypatch: pytest.MonkeyPatch) -> None:
    from gym_raas.backends.base import select_backend_name

    assert select_backend_name("auto", {}) == "sim"
    assert select_backend_name("auto", {"RAAS_AGENT_SOCKET": "/run/raas/agent.sock"}) == "robot"
    assert select_backend_name("sim", {"RAAS_AGENT_SOCKET": "/run/raas/agent.sock"}) == "sim"
