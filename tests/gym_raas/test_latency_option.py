"""`gym.make("RaasPendulum-v0", latency_s=...)` (issue 17): a fixed latency, a (low, high) range
drawn at every step, or a function of the env's generator called at every step; the simulator
applies each step's latency."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import gym_raas  # noqa: F401  (registers the env)

COMMANDS = [2.0, -2.0, 2.0, 2.0, -1.0, 0.5, -2.0, 2.0, 1.0, -0.5] * 3


def run(latency_s: Any, seed: int = 3, control_hz: float | None = None) -> list[np.ndarray]:
    env = gym.make("RaasPendulum-v0", backend="sim", latency_s=latency_s, control_hz=control_hz)
    observations = [env.reset(seed=seed)[0]]
    for command in COMMANDS:
        observations.append(env.step(np.array([command], dtype=np.float32))[0])
    env.close()
    return observations


def same(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_a_function_is_called_once_a_step_with_the_envs_generator_and_its_value_is_the_latency() -> None:
    calls: list[np.random.Generator] = []

    def latency(rng: np.random.Generator) -> float:
        calls.append(rng)
        return 0.02

    env = gym.make("RaasPendulum-v0", backend="sim", latency_s=latency)
    env.reset(seed=1)
    for command in COMMANDS:
        env.step(np.array([command], dtype=np.float32))
    assert len(calls) == len(COMMANDS)
    assert all(rng is env.unwrapped.np_random for rng in calls)
    env.close()
    assert same(run(lambda _rng: 0.02), run(0.02))  # the function's value is each step's latency
    assert not same(run(0.0), run(0.02))  # (and the latency changes what happens)


def test_a_range_draws_a_latency_uniformly_at_every_step_from_the_envs_generator() -> None:
    drawn: list[float] = []

    def uniform(rng: np.random.Generator) -> float:
        drawn.append(float(rng.uniform(0.0, 0.09)))
        return drawn[-1]

    assert same(run((0.0, 0.09)), run(uniform))  # the same draws, step by step
    assert len(drawn) == len(COMMANDS)
    assert all(0.0 <= value <= 0.09 for value in drawn)
    assert len(set(drawn)) == len(drawn)  # a fresh draw each step
    assert same(run((0.0, 0.09), seed=5), run((0.0, 0.09), seed=5))  # seeded: reproducible


@pytest.mark.parametrize("rate", [50.0, 100.0])
def test_a_faster_rate_shortens_the_step_and_bounds_the_latency_by_its_period(rate: float) -> None:
    env = gym.make("RaasPendulum-v0", backend="sim", control_hz=rate, latency_s=(0.0, 1.0 / rate))
    assert env.unwrapped.dt == pytest.approx(1.0 / rate)  # type: ignore[attr-defined]
    env.close()
    with pytest.raises(ValueError, match="latency_s range"):
        gym.make("RaasPendulum-v0", backend="sim", control_hz=rate, latency_s=(0.0, 2.5 / rate))


@pytest.mark.parametrize(
    "bad", [(0.05, 0.01), (-0.01, 0.02), "fast", [0.0, 0.02]], ids=["reversed", "negative", "text", "list"]
)
def test_a_latency_that_is_not_seconds_a_range_or_a_function_is_refused(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="latency_s"):
        gym.make("RaasPendulum-v0", backend="sim", latency_s=bad)


@pytest.mark.parametrize("rate", [0, -20, float("nan"), 10**9, True, "50"])
def test_an_impossible_control_rate_is_refused(rate: Any) -> None:
    with pytest.raises(ValueError, match="control_hz"):
        gym.make("RaasPendulum-v0", backend="sim", control_hz=rate)


def test_the_jobs_rate_from_the_environment_is_the_robot_backends_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from gym_raas.backends.base import job_control_hz

    monkeypatch.setenv("RAAS_CONTROL_HZ", "50")
    assert job_control_hz() == 50.0
    for raw in ("", "fast", "nan", "-5", "0"):
        monkeypatch.setenv("RAAS_CONTROL_HZ", raw)
        assert job_control_hz() is None
