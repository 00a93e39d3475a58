"""A run at a glance: angle, speed, command and reward over time (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from gym_raas.trajectory import Trajectory


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError as error:
        raise ImportError("plots need matplotlib: pip install 'gym-raas[plot]'") from error
    return pyplot


def _break_at_wraps(angle_deg: Any) -> Any:
    """No line across the ±180° seam: a NaN where the wrapped angle jumps by more than 180°."""
    broken = np.array(angle_deg, dtype=float)
    jumps = np.nonzero(np.abs(np.diff(broken)) > 180.0)[0]
    broken[jumps + 1] = np.nan
    return broken


def plot_trajectory(
    trajectory: Trajectory,
    path: str | Path,
    *,
    simulated_theta_rad: Any = None,
    title: str = "RaasPendulum run",
) -> Path:
    """Write a PNG with four stacked panels; `simulated_theta_rad` overlays a simulated angle
    (the sim-to-real replay) on the angle panel."""
    pyplot = _pyplot()
    time = trajectory.column("time_s")
    figure, axes = pyplot.subplots(4, 1, figsize=(8, 8), sharex=True, constrained_layout=True)
    angle = _break_at_wraps(np.degrees(trajectory.column("theta_rad")))
    axes[0].plot(time, angle, color="tab:red", label="robot" if simulated_theta_rad is not None else "angle")
    if simulated_theta_rad is not None:
        simulated = _break_at_wraps(np.degrees(np.asarray(simulated_theta_rad)))
        axes[0].plot(time, simulated, color="tab:gray", linestyle="--", label="simulator (same commands)")
        axes[0].legend(loc="lower right")
    axes[0].axhline(0.0, color="black", linewidth=0.5)
    axes[0].set_ylabel("angle θ (°)\n0 = upright")
    axes[0].set_ylim(-190, 190)
    axes[0].set_yticks([-180, -90, 0, 90, 180])
    axes[1].plot(time, trajectory.column("theta_dot_rad_per_s"), color="tab:purple")
    axes[1].set_ylabel("speed θ̇ (rad/s)")
    axes[2].step(time, trajectory.column("command"), where="post", color="tab:blue")
    axes[2].set_ylabel("command")
    axes[2].set_ylim(-2.2, 2.2)
    axes[3].plot(time, trajectory.column("reward"), color="tab:green")
    axes[3].set_ylabel("reward")
    axes[3].set_xlabel("time (s)")
    summary = trajectory.summary()
    swing = summary["swing_up_time_s"]
    subtitle = f"{summary['steps']} steps, total reward {summary['total_reward']:.1f}"
    if swing is not None and math.isfinite(swing):
        subtitle += f", upright from {swing:.2f} s"
    figure.suptitle(f"{title}\n{subtitle}")
    for axis in axes:
        axis.grid(alpha=0.3)
    target = Path(path)
    figure.savefig(target, dpi=100)
    pyplot.close(figure)
    return target
