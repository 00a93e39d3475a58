"""The numpy-batched vector env matches the single env and Gymnasium's vector API."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from gym_raas.envs.vector import RaasPendulumVectorEnv


def test_make_vec_uses_the_batched_implementation() -> None:
    envs = gym.make_vec("RaasPendulum-v0", num_envs=8)
    assert isinstance(envs.unwrapped, RaasPendulumVectorEnv)
    observations, _ = envs.reset(seed=1)
    assert observations.shape == (8, 3)
    assert envs.observation_space.contains(observations)
    envs.close()


def test_each_batch_member_follows_the_same_physics_as_the_single_env() -> None:
    actions = np.random.default_rng(0).uniform(-2, 2, size=(60, 1)).astype(np.float32)
    single = gym.make("RaasPendulum-v0")
    single.reset(seed=0, options={"theta": 2.5, "theta_dot": 0.5})
    envs = RaasPendulumVectorEnv(num_envs=3)
    envs.reset(seed=0, options={"initial_state": "random"})
    envs.simulator.reset(np.random.default_rng(0), theta_rad=2.5, theta_dot_rad_per_s=0.5)
    # Edge-timing noise differs between the two; the physics itself must agree exactly.
    for action in actions:
        single.step(action)
        envs.step(np.repeat(action[None, :], 3, axis=0))
    true_single = single.unwrapped.backend.simulator  # type: ignore[attr-defined]
    np.testing.assert_allclose(envs.simulator.theta, true_single.theta, atol=1e-9)
    np.testing.assert_allclose(envs.simulator.theta_dot, true_single.theta_dot, atol=1e-9)


def test_truncated_members_are_reset_on_the_next_step() -> None:
    envs = gym.make_vec("RaasPendulum-v0", num_envs=4, max_episode_steps=3)
    envs.reset(seed=0)
    zero = np.zeros((4, 1), dtype=np.float32)
    for _ in range(2):
        _, _, _, truncations, _ = envs.step(zero)
        assert not truncations.any()
    _, _, _, truncations, _ = envs.step(zero)
    assert truncations.all()
    observations, rewards, _, truncations, _ = envs.step(np.full((4, 1), 2.0, dtype=np.float32))
    assert not truncations.any()
    np.testing.assert_array_equal(rewards, np.zeros(4))
    assert (observations[:, 0] < -0.999).all()


def test_nan_actions_are_refused_for_the_whole_batch() -> None:
    envs = RaasPendulumVectorEnv(num_envs=2)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        envs.step(np.array([[0.0], [np.nan]], dtype=np.float32))


def test_rgb_array_render_returns_one_frame_per_member() -> None:
    envs = RaasPendulumVectorEnv(num_envs=2, render_mode="rgb_array")
    envs.reset(seed=0)
    frames = envs.render()
    assert frames is not None
    assert len(frames) == 2
    assert frames[0].shape == (500, 500, 3)
