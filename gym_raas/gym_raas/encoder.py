"""Quadrature encoder: quantised angle, and speed estimated from edge timing as the rig does it.

The robot's driver timestamps every encoder edge. At each control step it knows the count and
the time of the latest edge; its speed estimate is the counts moved between the latest edges of
two successive steps divided by the time between those edges. When no edge arrived during a
step, the pendulum cannot be faster than one count since the last edge, so the previous
estimate is bounded by that (the estimate decays to zero when the pendulum stops).

`update_velocity` is that estimator, shared by the simulator and the real driver;
`encoder_count` and `time_since_last_edge` produce the same inputs from a simulated angle.
"""

from __future__ import annotations

from typing import Any

from gym_raas.array_ops import ArrayOps

SHORTEST_EDGE_INTERVAL_S = 1e-6
"""pigpio timestamps have a resolution of 1 µs; no two edges are closer than that."""

_SLOWEST_SPEED_RAD_PER_S = 1e-9


def encoder_count(shaft_angle_rad: Any, resolution_rad: float, ops: ArrayOps) -> Any:
    """Counts of an encoder zeroed at angle 0 (edges at half-count angles)."""
    return ops.round(shaft_angle_rad / resolution_rad)


def time_since_last_edge(
    shaft_angle_rad: Any, speed_rad_per_s: Any, count: Any, resolution_rad: float, ops: ArrayOps
) -> Any:
    """Seconds since the shaft crossed the edge into `count`, assuming constant speed meanwhile."""
    direction = ops.where(speed_rad_per_s >= 0.0, 1.0, -1.0)
    last_edge_angle = (count - 0.5 * direction) * resolution_rad
    travelled = ops.abs(shaft_angle_rad - last_edge_angle)
    speed = ops.maximum(ops.abs(speed_rad_per_s), _SLOWEST_SPEED_RAD_PER_S)
    return travelled / speed


def update_velocity(
    previous_count: Any,
    previous_edge_time_s: Any,
    previous_velocity: Any,
    count: Any,
    edge_time_s: Any,
    now_s: Any,
    resolution_rad: float,
    ops: ArrayOps,
    max_acceleration_rad_per_s2: float | None = None,
) -> tuple[Any, Any]:
    """One step of the edge-timing speed estimator.

    With `max_acceleration_rad_per_s2`, a new estimate is also bounded by physics: since the
    previous edge, the shaft moved less than |Δcount| + 1 counts, and its speed cannot differ
    from that average by more than the largest acceleration times the time span. This removes
    the spikes of two edges close together when the pendulum dithers across an edge.
    Returns (velocity in rad/s, edge time to remember for the next step).
    """
    moved = count != previous_count
    interval = ops.maximum(edge_time_s - previous_edge_time_s, SHORTEST_EDGE_INTERVAL_S)
    measured = (count - previous_count) * resolution_rad / interval
    since_edge = ops.maximum(now_s - previous_edge_time_s, SHORTEST_EDGE_INTERVAL_S)
    if max_acceleration_rad_per_s2 is not None:
        plausible = (ops.abs(count - previous_count) + 1.0) * resolution_rad / since_edge
        plausible = plausible + max_acceleration_rad_per_s2 * since_edge
        measured = ops.sign(measured) * ops.minimum(ops.abs(measured), plausible)
    bound = resolution_rad / since_edge
    held = ops.sign(previous_velocity) * ops.minimum(ops.abs(previous_velocity), bound)
    velocity = ops.where(moved, measured, held)
    remembered_edge_time = ops.where(moved, edge_time_s, previous_edge_time_s)
    return velocity, remembered_edge_time
