"""The pendulum moving as recorded, as an animated GIF (frames from `gym_raas.rendering`).

The GIF plays in real time: frames are taken from the trajectory at ``fps`` frames per second of
recorded time (lowered for long runs so that there are at most ``max_frames``), each frame the
latest recorded state at its instant. All frames share one 32-colour palette: the drawing has a
handful of colours and their anti-aliased blends, and one palette is ~10× faster to encode than
Pillow's per-frame optimisation, with a smaller file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gym_raas.rendering import draw_pendulum
from gym_raas.trajectory import Trajectory

PALETTE_COLOURS = 32


def frame_indices(time_s: np.ndarray, fps: float, max_frames: int) -> tuple[np.ndarray, float]:
    """Rows to draw and the frame rate that plays them in real time (``fps`` or lower)."""
    duration = float(time_s[-1] - time_s[0]) if len(time_s) > 1 else 0.0
    rate = min(fps, max_frames / duration) if duration > 0 else fps
    instants = time_s[0] + np.arange(max(1, int(duration * rate) + 1)) / rate
    rows = np.searchsorted(time_s, instants, side="right") - 1
    return np.clip(rows, 0, len(time_s) - 1), rate


def animate_trajectory(
    trajectory: Trajectory, path: str | Path, *, fps: int = 15, size: int = 200, max_frames: int = 450
) -> Path:
    """Write a looping real-time GIF of the recorded motion; returns its path."""
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("animations need Pillow: pip install 'gym-raas[plot]'") from error
    if len(trajectory) == 0:
        raise ValueError("cannot animate an empty trajectory")
    rows, rate = frame_indices(trajectory.column("time_s"), fps, max_frames)
    pictures = [
        Image.fromarray(draw_pendulum(trajectory.theta_rad[row], trajectory.command[row], 2.0, size)) for row in rows
    ]
    palette = pictures[0].quantize(colors=PALETTE_COLOURS)
    frames = [picture.quantize(palette=palette, dither=Image.Dither.NONE) for picture in pictures]
    target = Path(path)
    frames[0].save(target, save_all=True, append_images=frames[1:], duration=round(1000 / rate), loop=0)
    return target
