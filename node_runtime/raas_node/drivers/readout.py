"""From encoder counts and edge times to a `SensorReading` (shared by every driver)."""

from __future__ import annotations

from gym_raas.array_ops import SCALAR_OPS
from gym_raas.encoder import update_velocity
from gym_raas.params import PendulumParams
from gym_raas.simulator import HANGING_RAD, wrap_angle
from raas_node.drivers.base import SensorReading


class EncoderReadout:
    """Angle relative to the encoder's zero, and speed from the edge-timing estimator
    (`gym_raas.encoder.update_velocity`, with the rig's acceleration bound), saturated at the
    velocity limit like the simulator's."""

    def __init__(self, params: PendulumParams, count: int, edge_time_s: float, velocity: float = 0.0) -> None:
        self.params = params
        self.zero_count = 0
        self._count = count
        self._edge_time_s = edge_time_s
        self._velocity = velocity

    def restart(self, edge_time_s: float) -> None:
        """Forget edge history (e.g. after the driver re-synchronised its clock)."""
        self._edge_time_s = edge_time_s

    def reading(self, count: int, edge_time_s: float, now_s: float) -> SensorReading:
        """The reading at `now_s` given the raw count and the time of its latest edge."""
        params = self.params
        velocity, remembered = update_velocity(
            self._count,
            self._edge_time_s,
            self._velocity,
            count,
            edge_time_s,
            now_s,
            params.encoder_resolution_rad,
            SCALAR_OPS,
            params.max_acceleration_rad_per_s2,
        )
        self._velocity, self._edge_time_s, self._count = velocity, remembered, count
        limit = params.velocity_limit_rad_per_s
        relative = count - self.zero_count
        return SensorReading(
            time_s=now_s,
            encoder_count=relative,
            theta_rad=float(wrap_angle(HANGING_RAD + relative * params.encoder_resolution_rad)),
            theta_dot_rad_per_s=min(max(velocity, -limit), limit),
            last_edge_time_s=edge_time_s,
        )
