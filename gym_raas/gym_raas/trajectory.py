"""A recorded run: time, angle, speed, command and reward per control step.

`Trajectory` is the in-memory table (CSV on disk) that the viewers (`gym_raas.viz`) draw and
`summary` sums up. `RecordTrajectory` records any RaasPendulum env as it runs.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

COLUMNS = ("time_s", "theta_rad", "theta_dot_rad_per_s", "command", "reward")
UPRIGHT_RAD = 0.1
"""|θ| below which the pendulum counts as upright."""
HELD_S = 1.0
"""How long it must stay upright for the swing-up to count."""


@dataclass
class Trajectory:
    """Columns of equal length; row k is the observation at ``time_s[k]`` and the command sent
    in answer to it (with the reward of that step)."""

    time_s: list[float] = field(default_factory=list)
    theta_rad: list[float] = field(default_factory=list)
    theta_dot_rad_per_s: list[float] = field(default_factory=list)
    command: list[float] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)

    def append(self, time_s: float, theta_rad: float, theta_dot: float, command: float, reward: float) -> None:
        self.time_s.append(time_s)
        self.theta_rad.append(theta_rad)
        self.theta_dot_rad_per_s.append(theta_dot)
        self.command.append(command)
        self.reward.append(reward)

    def __len__(self) -> int:
        return len(self.time_s)

    def column(self, name: str) -> NDArray[np.float64]:
        """One column as a numpy array."""
        if name not in COLUMNS:
            raise KeyError(f"unknown column {name!r}; columns: {', '.join(COLUMNS)}")
        return np.asarray(getattr(self, name), dtype=float)

    def to_csv(self, path: str | Path) -> Path:
        target = Path(path)
        with target.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            writer.writerows(zip(*(getattr(self, name) for name in COLUMNS), strict=True))
        return target

    @classmethod
    def from_csv(cls, path: str | Path) -> Trajectory:
        with Path(path).open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or tuple(header) != COLUMNS:
                raise ValueError(f"{path} is not a trajectory CSV (expected columns {', '.join(COLUMNS)})")
            trajectory = cls()
            for row in reader:
                trajectory.append(*(float(value) for value in row))
        return trajectory

    def summary(self) -> dict[str, Any]:
        """Steps, total reward, swing-up time (first time upright for ≥ 1 s) and final angle."""
        time = self.column("time_s")
        theta = np.abs(self.column("theta_rad"))
        swing_up: float | None = None
        start: float | None = None
        for moment, angle in zip(time, theta, strict=True):
            if angle < UPRIGHT_RAD:
                start = moment if start is None else start
                if moment - start >= HELD_S:
                    swing_up = float(start)
                    break
            else:
                start = None
        return {
            "steps": len(self),
            "total_reward": float(np.sum(self.column("reward"))) if len(self) else 0.0,
            "swing_up_time_s": swing_up,
            "final_angle_rad": float(self.theta_rad[-1]) if len(self) else None,
        }


class RecordTrajectory(gym.Wrapper[Any, Any, Any, Any]):
    """Records every step of a RaasPendulum env into ``self.trajectory``."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.trajectory = Trajectory()
        self._observation: Any = None
        self._time_s = 0.0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        self._observation = observation
        return observation, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        previous = self._observation
        command = float(np.asarray(action, dtype=float).reshape(-1)[0])
        self.trajectory.append(
            self._time_s,
            math.atan2(float(previous[1]), float(previous[0])),
            float(previous[2]),
            command,
            float(reward),
        )
        self._time_s += float(self.env.unwrapped.dt)  # type: ignore[attr-defined]
        self._observation = observation
        return observation, reward, terminated, truncated, info
