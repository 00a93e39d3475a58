"""Trajectories, their pictures, and ``raas demo`` end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image, ImageSequence

from gym_raas.cli.demo import CHECKOUT_EXAMPLE, PACKAGED_EXAMPLE
from gym_raas.trajectory import RecordTrajectory, Trajectory
from gym_raas.viz import animate_trajectory, plot_trajectory
from gym_raas.viz.animation import frame_indices


def recorded_run(steps: int = 60) -> Trajectory:
    env = RecordTrajectory(gym.make("RaasPendulum-v0", backend="sim"))
    env.reset(seed=0)
    for index in range(steps):
        env.step(np.array([2.0 if index < 15 else -2.0], dtype=np.float32))
    env.close()
    return env.trajectory


def test_the_recorder_logs_each_step_with_the_observation_it_answered() -> None:
    trajectory = recorded_run(10)
    assert len(trajectory) == 10
    assert trajectory.time_s[:3] == pytest.approx([0.0, 0.05, 0.1])
    assert abs(trajectory.theta_rad[0]) > 3.1  # hanging at the start
    assert trajectory.command[0] == 2.0


def test_a_trajectory_round_trips_through_csv_and_sums_up(tmp_path: Path) -> None:
    trajectory = Trajectory()
    for step in range(60):
        trajectory.append(step * 0.05, 0.02 if step >= 20 else 2.0, 0.0, 0.1, -0.5)
    loaded = Trajectory.from_csv(trajectory.to_csv(tmp_path / "t.csv"))
    assert loaded == trajectory
    summary = loaded.summary()
    assert summary["steps"] == 60
    assert summary["total_reward"] == pytest.approx(-30.0)
    assert summary["swing_up_time_s"] == pytest.approx(1.0)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a trajectory CSV"):
        Trajectory.from_csv(tmp_path / "bad.csv")


def test_plot_and_animation_are_images_of_the_run(tmp_path: Path) -> None:
    trajectory = recorded_run()
    plot = plot_trajectory(trajectory, tmp_path / "plot.png", simulated_theta_rad=trajectory.column("theta_rad"))
    with Image.open(plot) as image:
        assert image.format == "PNG"
        assert image.size == (800, 800)
    animation = animate_trajectory(trajectory, tmp_path / "animation.gif", size=120)
    with Image.open(animation) as image:
        assert image.format == "GIF"
        assert image.size == (120, 120)
        assert image.n_frames > 30
        played_s = sum(frame.info["duration"] for frame in ImageSequence.Iterator(image)) / 1000
    recorded_s = trajectory.time_s[-1] - trajectory.time_s[0]
    assert abs(played_s - recorded_s) < 0.15 * recorded_s + 0.2  # real time, not slow motion


def test_long_runs_play_in_real_time_with_fewer_frames_per_second() -> None:
    ten_seconds = np.arange(500) * 0.02
    rows, rate = frame_indices(ten_seconds, fps=15, max_frames=450)
    assert rate == 15
    assert len(rows) == 150
    assert list(rows[:3]) == [0, 3, 6]  # the latest recorded state at each frame's instant
    sixty_seconds = np.arange(3000) * 0.02
    rows, rate = frame_indices(sixty_seconds, fps=15, max_frames=450)
    assert len(rows) <= 451
    assert abs(len(rows) / rate - 60) < 0.5


def test_the_packaged_example_is_the_checkouts_example() -> None:
    assert PACKAGED_EXAMPLE.read_bytes() == CHECKOUT_EXAMPLE.read_bytes()


def test_the_simulator_only_demo_runs_the_example_and_writes_every_result(tmp_path: Path) -> None:
    """What ``raas demo`` does where only gym-raas is installed (no local platform)."""
    completed = subprocess.run(
        [sys.executable, "-c", "import sys; from argparse import Namespace; from pathlib import Path;"
         "from gym_raas.cli.demo import run; sys.exit(run(Namespace(output=Path(sys.argv[1]), seed=0)))",
         str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    output = tmp_path / "out"
    for name in ("trajectory.csv", "plot.png", "animation.gif", "stdout.txt", "stderr.txt", "summary.json"):
        assert (output / name).is_file(), name
    summary = json.loads((output / "summary.json").read_text())
    assert summary["steps"] == 200
    assert summary["swing_up_time_s"] is not None
    assert "swung up at" in completed.stdout
    assert str(output / "plot.png") in completed.stdout
    # The data is the environment's own record, not the controller's printout.
    trajectory = Trajectory.from_csv(output / "trajectory.csv")
    assert abs(trajectory.theta_rad[-1]) < 0.1
    assert math.isclose(trajectory.time_s[1], 0.05)
    assert "upright" in (output / "stdout.txt").read_text()
