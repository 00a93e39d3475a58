"""Pictures of the pendulum drawn with numpy alone (no pygame, no display).

`draw_pendulum` returns an RGB frame (H, W, 3) uint8 with the rod at angle θ from upright
(counter-clockwise positive, as in Gymnasium's Pendulum), the bob, the pivot and an arc whose
length and direction show the motor command. Shapes are anti-aliased by their signed distance.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

BACKGROUND = (255, 255, 255)
ROD_COLOUR = (204, 77, 77)
PIVOT_COLOUR = (40, 40, 40)
COMMAND_COLOUR = (60, 110, 200)
TARGET_COLOUR = (200, 200, 200)

Frame = NDArray[np.uint8]


def draw_pendulum(theta_rad: float, command: float = 0.0, max_command: float = 2.0, size: int = 500) -> Frame:
    """One frame of the pendulum; `command` is drawn as an arc around the pivot."""
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[:] = BACKGROUND
    centre = size / 2.0
    rod_length = size * 0.38
    rod_half_width = max(size * 0.02, 1.0)
    # Screen y grows downwards: upright (θ = 0) points to the top of the picture.
    tip_x = centre - rod_length * math.sin(theta_rad)
    tip_y = centre - rod_length * math.cos(theta_rad)
    _blend_disc_outline(canvas, centre, centre, rod_length, 1.0, TARGET_COLOUR)
    if math.isfinite(command) and command != 0.0:
        fraction = max(-1.0, min(1.0, command / max_command))
        _blend_arc(canvas, centre, centre, size * 0.12, size * 0.012, fraction, COMMAND_COLOUR)
    _blend_capsule(canvas, centre, centre, tip_x, tip_y, rod_half_width, ROD_COLOUR)
    _blend_disc(canvas, tip_x, tip_y, size * 0.045, ROD_COLOUR)
    _blend_disc(canvas, centre, centre, size * 0.015, PIVOT_COLOUR)
    frame: Frame = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return frame


def _window(
    canvas: NDArray[np.float32], x0: float, y0: float, x1: float, y1: float, margin: float
) -> tuple[slice, slice, NDArray[np.float64], NDArray[np.float64]]:
    """Pixel-centre coordinates of the bounding box of a shape (clipped to the canvas)."""
    height, width = canvas.shape[:2]
    left = max(int(min(x0, x1) - margin), 0)
    right = min(int(max(x0, x1) + margin) + 2, width)
    top = max(int(min(y0, y1) - margin), 0)
    bottom = min(int(max(y0, y1) + margin) + 2, height)
    ys, xs = np.mgrid[top:bottom, left:right].astype(np.float64) + 0.5
    return slice(top, bottom), slice(left, right), xs, ys


def _blend(
    canvas: NDArray[np.float32], rows: slice, cols: slice, coverage: NDArray[np.float64], colour: tuple[int, int, int]
) -> None:
    alpha = np.clip(coverage, 0.0, 1.0)[..., None].astype(np.float32)
    region = canvas[rows, cols]
    region *= 1.0 - alpha
    region += alpha * np.asarray(colour, dtype=np.float32)


def _blend_capsule(
    canvas: NDArray[np.float32], x0: float, y0: float, x1: float, y1: float, radius: float, colour: tuple[int, int, int]
) -> None:
    rows, cols, xs, ys = _window(canvas, x0, y0, x1, y1, radius + 1)
    dx, dy = x1 - x0, y1 - y0
    length_sq = max(dx * dx + dy * dy, 1e-12)
    along = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length_sq, 0.0, 1.0)
    distance = np.hypot(xs - (x0 + along * dx), ys - (y0 + along * dy))
    _blend(canvas, rows, cols, radius + 0.5 - distance, colour)


def _blend_disc(canvas: NDArray[np.float32], x: float, y: float, radius: float, colour: tuple[int, int, int]) -> None:
    rows, cols, xs, ys = _window(canvas, x, y, x, y, radius + 1)
    _blend(canvas, rows, cols, radius + 0.5 - np.hypot(xs - x, ys - y), colour)


def _blend_disc_outline(
    canvas: NDArray[np.float32], x: float, y: float, radius: float, half_width: float, colour: tuple[int, int, int]
) -> None:
    rows, cols, xs, ys = _window(canvas, x, y, x, y, radius + half_width + 1)
    ring_distance = np.abs(np.hypot(xs - x, ys - y) - radius)
    _blend(canvas, rows, cols, half_width + 0.5 - ring_distance, colour)


def _blend_arc(
    canvas: NDArray[np.float32],
    x: float,
    y: float,
    radius: float,
    half_width: float,
    fraction: float,
    colour: tuple[int, int, int],
) -> None:
    """Arc starting at the top of the pivot, sweeping |fraction|·270° in the command's sense."""
    rows, cols, xs, ys = _window(canvas, x, y, x, y, radius + half_width + 1)
    ring_distance = np.abs(np.hypot(xs - x, ys - y) - radius)
    # Angle measured like θ: from straight up, counter-clockwise on screen.
    angle = np.arctan2(-(xs - x), -(ys - y))
    sweep = abs(fraction) * 1.5 * math.pi
    signed = angle if fraction > 0 else -angle
    inside = np.mod(signed, 2 * math.pi) <= sweep
    coverage = np.where(inside, half_width + 0.5 - ring_distance, 0.0)
    _blend(canvas, rows, cols, coverage, colour)
