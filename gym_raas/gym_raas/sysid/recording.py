"""A recorded experiment: sample times, encoder angles and the commands the motor received."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

MIN_SAMPLES = 3


@dataclass(frozen=True, eq=False)
class RecordedTrajectory:
    """One experiment on a rig, as the robot agent logs it; validated on construction.

    * ``time_s``: sample times in seconds, strictly increasing, any spacing (irregular is fine).
    * ``theta_rad``: measured (encoder) angle from upright at each sample; wrapped into [-π, π)
      or not, it is stored unwrapped. Consecutive samples must be less than π apart.
    * ``command``: command in action units that the motor received from this sample until the
      next (the last one is not used).
    * ``label``: name of the experiment, used in fit reports.

    Raises `ValueError` naming the trajectory and the problem for arrays that are not 1-D, have
    different lengths or fewer than 3 samples, contain NaN or infinity, or whose times do not
    strictly increase.
    """

    time_s: NDArray[np.float64]
    theta_rad: NDArray[np.float64]
    command: NDArray[np.float64]
    label: str = ""

    def __post_init__(self) -> None:
        columns = {name: np.array(getattr(self, name), dtype=float) for name in ("time_s", "theta_rad", "command")}
        name = self.label or "trajectory"
        if any(values.ndim != 1 for values in columns.values()):
            raise ValueError(f"{name}: time_s, theta_rad and command must be 1-D arrays")
        lengths = [len(values) for values in columns.values()]
        if len(set(lengths)) != 1:
            raise ValueError(f"{name}: time_s, theta_rad and command have different lengths {tuple(lengths)}")
        if lengths[0] < MIN_SAMPLES:
            raise ValueError(f"{name}: needs at least {MIN_SAMPLES} samples, got {lengths[0]}")
        for column, values in columns.items():
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                raise ValueError(f"{name}: {column} contains NaN or infinite values (first at sample {bad[0]})")
        steps = np.diff(columns["time_s"])
        if not np.all(steps > 0):
            index = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise ValueError(
                f"{name}: time_s must be strictly increasing (sample {index} is not later than the one before)"
            )
        columns["theta_rad"] = np.unwrap(columns["theta_rad"])
        for column, values in columns.items():
            values.flags.writeable = False
            object.__setattr__(self, column, values)

    @classmethod
    def from_columns(
        cls, time_s: ArrayLike, theta_rad: ArrayLike, command: ArrayLike, label: str = ""
    ) -> RecordedTrajectory:
        """Build from any array-likes (lists, numpy arrays, columns of a table)."""
        return cls(
            np.asarray(time_s, dtype=float), np.asarray(theta_rad, dtype=float), np.asarray(command, dtype=float), label
        )

    @property
    def duration_s(self) -> float:
        """Time from the first sample to the last."""
        return float(self.time_s[-1] - self.time_s[0])

    def __len__(self) -> int:
        return len(self.time_s)

    def window(self, start_s: float, stop_s: float, label: str | None = None) -> RecordedTrajectory:
        """The samples with ``start_s <= time_s - time_s[0] <= stop_s`` (e.g. to drop a kick)."""
        elapsed = self.time_s - self.time_s[0]
        keep = (elapsed >= start_s) & (elapsed <= stop_s)
        return RecordedTrajectory(
            self.time_s[keep], self.theta_rad[keep], self.command[keep], self.label if label is None else label
        )
