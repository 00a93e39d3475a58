"""RaasPendulum-v0 (sim) against Gymnasium's Pendulum-v1: single env and 1024-env batches, and
the cost of domain randomisation (``randomize="default"``) against the plain batch."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import gym_raas  # noqa: F401  (registers RaasPendulum-v0)
from benchmarks.report import Report, rate

SECTION = "Environment (gym_raas)"
VECTOR_ENVS = 1024


def _single_env_stepper(env_id: str) -> Callable[[int], None]:
    env = gym.make(env_id)
    env.reset(seed=0)
    action = np.array([0.7], dtype=np.float32)

    def run(count: int) -> None:
        for _ in range(count):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()

    return run


def _vector_env_stepper(envs: gym.vector.VectorEnv) -> Callable[[int], None]:  # type: ignore[type-arg]
    envs.reset(seed=0)
    actions = np.full((envs.num_envs, 1), 0.7, dtype=np.float32)

    def run(count: int) -> None:
        for _ in range(count // envs.num_envs):
            envs.step(actions)

    return run


def run(report: Report) -> None:
    report.section(SECTION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raas = rate(_single_env_stepper("RaasPendulum-v0"), 50_000)
        peer = rate(_single_env_stepper("Pendulum-v1"), 50_000)
        report.figure(SECTION, "RaasPendulum-v0 steps/s (gym.make, sim backend)", f"{raas:,.0f}")
        report.figure(SECTION, "Pendulum-v1 steps/s (gym.make)", f"{peer:,.0f}")
        report.figure(SECTION, "single env ratio RaasPendulum-v0 / Pendulum-v1", f"{raas / peer:.2f}x", "≥ 1.0x")
        raas_vec = rate(_vector_env_stepper(gym.make_vec("RaasPendulum-v0", num_envs=VECTOR_ENVS)), 300 * VECTOR_ENVS)
        sync = gym.make_vec("Pendulum-v1", num_envs=VECTOR_ENVS, vectorization_mode="sync")
        peer_vec = rate(_vector_env_stepper(sync), 20 * VECTOR_ENVS)
        report.figure(SECTION, f"RaasPendulum-v0 vector env-steps/s (N={VECTOR_ENVS})", f"{raas_vec:,.0f}")
        report.figure(SECTION, f"Pendulum-v1 SyncVectorEnv env-steps/s (N={VECTOR_ENVS})", f"{peer_vec:,.0f}")
        report.figure(SECTION, "vector ratio RaasPendulum-v0 / SyncVectorEnv", f"{raas_vec / peer_vec:.1f}x", "≥ 20x")
        randomized = gym.make_vec("RaasPendulum-v0", num_envs=VECTOR_ENVS, randomize="default")
        raas_random = rate(_vector_env_stepper(randomized), 300 * VECTOR_ENVS)
        report.figure(
            SECTION, f"RaasPendulum-v0 randomize='default' env-steps/s (N={VECTOR_ENVS})", f"{raas_random:,.0f}"
        )
        report.figure(
            SECTION, "randomised / plain RaasPendulum-v0 vector env", f"{raas_random / raas_vec:.2f}x", "≥ 0.7x"
        )
