"""What a robot's recording shows: the boundaries the controller acted on, the sim-to-real replay
of its commands in the robot's calibrated simulator, and the summary figures.

Shared by the local platform's result bundle and the robot agent's pictures in a cluster.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gym_raas.params import PendulumParams
from gym_raas.results.replay import replay_commands
from gym_raas.trajectory import Trajectory

REPLAY_HORIZON_S = 0.25
"""The simulator is re-synchronised to the robot's measured state every 0.25 s of the replay: near the
unstable upright, errors grow about e^(ω₀ t), so longer open-loop horizons measure chaos, not the model."""


@dataclass(frozen=True)
class Analysis:
    """What the bundle shows of a recording, computed once."""

    viewing: Trajectory
    """The boundaries at which the client's commands were applied."""
    simulated_theta_rad: NDArray[np.float64]
    """The sim-to-real replay's angle at those same boundaries."""
    summary: dict[str, Any]


def analyse(columns: dict[str, list[Any]], params: PendulumParams) -> Analysis:
    """Viewing trajectory, sim-to-real replay and summary figures of a recording."""
    fresh = [index for index, requested in enumerate(columns["requested_command"]) if requested is not None]
    viewing = Trajectory()
    for index in fresh:
        viewing.append(
            columns["time_s"][index],
            columns["theta_rad"][index],
            columns["theta_dot_rad_per_s"][index],
            columns["applied_command"][index],
            columns["reward"][index],
        )
    replay = replay_commands(
        np.asarray(columns["time_s"], dtype=float),
        np.asarray(columns["theta_rad"], dtype=float),
        np.asarray(columns["applied_command"], dtype=float),
        params,
        theta_dot_rad_per_s=np.asarray(columns["theta_dot_rad_per_s"], dtype=float),
        resync_every_s=REPLAY_HORIZON_S,
        applied_at_s=_optional_column(columns, "applied_at_s"),
    )
    latencies = [value for value in columns.get("loop_latency_s", []) if value is not None and math.isfinite(value)]
    summary = viewing.summary()
    summary.update(
        sim_to_real_rmse_rad=replay.rmse_rad if columns["time_s"] else None,
        loop_latency_p99_s=float(np.percentile(latencies, 99)) if latencies else None,
    )
    return Analysis(viewing, replay.theta_rad[fresh], summary)


def _optional_column(columns: dict[str, list[Any]], name: str) -> NDArray[np.float64] | None:
    """A float column (None → NaN), or None when the recording predates it."""
    if name not in columns:
        return None
    return np.array([math.nan if value is None else value for value in columns[name]], dtype=float)


def draw_pictures(analysis: Analysis, folder: Path, *, title: str) -> tuple[Path, Path] | None:
    """``plot.png`` (with the sim-to-real overlay) and ``animation.gif`` of `analysis` in `folder`
    (None for a recording without a single controller step). Needs the ``plot`` extra."""
    from gym_raas.viz import animate_trajectory, plot_trajectory

    if not len(analysis.viewing):
        return None
    with ThreadPoolExecutor(1) as pictures:
        # Both are mostly numpy and Pillow work that releases the GIL: drawn side by side.
        plotting = pictures.submit(
            plot_trajectory,
            analysis.viewing,
            folder / "plot.png",
            simulated_theta_rad=analysis.simulated_theta_rad,
            title=title,
        )
        animation = animate_trajectory(analysis.viewing, folder / "animation.gif")
        return plotting.result(), animation
