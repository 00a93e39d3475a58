"""The pendulum moving as recorded, as an animated GIF (frames from `gym_raas.rendering`)."""

from __future__ import annotations

from pathlib import Path

from gym_raas.rendering import draw_pendulum
from gym_raas.trajectory import Trajectory


def animate_trajectory(
    trajectory: Trajectory, path: str | Path, *, fps: int = 20, size: int = 240, max_frames: int = 600
) -> Path:
    """Write a looping GIF; long runs are subsampled to at most `max_frames` frames."""
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("animations need Pillow: pip install 'gym-raas[plot]'") from error
    if len(trajectory) == 0:
        raise ValueError("cannot animate an empty trajectory")
    stride = max(1, -(-len(trajectory) // max_frames))
    frames = [
        Image.fromarray(draw_pendulum(trajectory.theta_rad[index], trajectory.command[index], 2.0, size))
        for index in range(0, len(trajectory), stride)
    ]
    target = Path(path)
    frames[0].save(
        target, save_all=True, append_images=frames[1:], duration=round(1000 * stride / fps), loop=0, optimize=True
    )
    return target
