"""The bundled example controllers: the swing-up balances; the legacy one runs unchanged."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import numpy as np
import pytest

from gym_raas.params import PendulumParams

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_swingup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("swingup_run", EXAMPLES / "swingup" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def final_angles(rig: PendulumParams, model: PendulumParams, seed: int) -> list[float]:
    """|θ| over the last 2 s of an episode on `rig`, controlled with the model `model`."""
    swingup = load_swingup()
    env = gym.make("RaasPendulum-v0", calibration=rig, backend="sim")
    controller = swingup.SwingUpController(model)
    observation, _ = env.reset(seed=seed)
    angles = []
    for _ in range(200):
        observation, *_ = env.step(np.array([controller(observation)], dtype=np.float32))
        angles.append(abs(math.atan2(float(observation[1]), float(observation[0]))))
    env.close()
    return angles[-40:]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_the_swingup_example_balances_upright_within_the_episode(seed: int) -> None:
    params = PendulumParams()
    assert max(final_angles(params, params, seed)) < 0.1


@pytest.mark.parametrize(
    "changes",
    [
        {"natural_frequency_rad_per_s": 5.3 * 1.1},
        {"natural_frequency_rad_per_s": 5.3 * 0.9},
        {"motor_stall_acceleration_rad_per_s2": 16.1 * 1.1},
        {"motor_stall_acceleration_rad_per_s2": 16.1 * 0.9},
    ],
    ids=["w0+10%", "w0-10%", "stall+10%", "stall-10%"],
)
def test_the_swingup_example_tolerates_a_rig_ten_percent_off_its_model(changes: dict[str, float]) -> None:
    rig = PendulumParams().replace(**changes)
    assert max(final_angles(rig, PendulumParams(), seed=0)) < 0.15


def test_the_swingup_example_runs_as_a_script_and_reports_progress() -> None:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "swingup" / "run.py"), "--seed", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "upright" in completed.stdout
    assert "done: 200 steps" in completed.stdout


def test_a_controller_written_for_the_original_service_runs_unchanged() -> None:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "legacy_gym" / "run.py")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("steps: 200 total reward:")
