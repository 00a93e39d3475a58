"""Code written for the original service runs unchanged under legacy Gym 0.26 on numpy 2.

Each check runs in a fresh interpreter so that the order of imports is the user's, not pytest's.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("gym", reason="legacy gym is installed by requirements-dev.txt")


def run_python(source: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_original_service_code_runs_with_the_old_four_tuple_api() -> None:
    output = run_python(
        """
        import gym
        import gym_raas
        import numpy
        env = gym.make('RaasPendulum-v0')
        obs = env.reset()
        assert obs.shape == (3,), obs
        steps = 0
        done = False
        while not done:
            obs, reward, done, info = env.step(env.action_space.sample())
            steps += 1
        print(steps, info.get('TimeLimit.truncated'), numpy.__version__.split('.')[0])
        env.close()
        """
    )
    steps, truncated, numpy_major = output.split()
    assert (steps, truncated) == ("200", "True")
    assert numpy_major == str(np.__version__.split(".")[0])


def test_gym_finds_the_env_even_before_gym_raas_is_imported() -> None:
    output = run_python(
        """
        import gym
        env = gym.make('RaasPendulum-v0')
        print(type(env.unwrapped).__name__)
        """
    )
    assert output.strip() == "LegacyRaasPendulumEnv"


def test_old_style_seeding_makes_runs_repeatable() -> None:
    output = run_python(
        """
        import gym, gym_raas
        def run():
            env = gym.make('RaasPendulum-v0', initial_state='random')
            env.seed(7)
            obs = env.reset()
            for _ in range(20):
                obs, reward, done, info = env.step([1.0])
            return obs.tolist()
        print(run() == run())
        """
    )
    assert output.strip() == "True"


def test_old_style_render_returns_a_frame() -> None:
    output = run_python(
        """
        import gym, gym_raas
        env = gym.make('RaasPendulum-v0')
        env.reset()
        print(env.render(mode='rgb_array').shape)
        """
    )
    assert output.strip() == "(500, 500, 3)"
