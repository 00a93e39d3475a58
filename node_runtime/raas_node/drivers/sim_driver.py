"""The ``sim`` driver: a robot's calibrated physics integrated in real time, behind `RobotDriver`.

The physics (`raas_node.virtual_rig.pendulum.RealTimePendulum`, which runs the gym_raas
equations) is advanced to the driver clock whenever the agent reads or commands, holding the last
applied duty in between. So a simulated robot behaves like a real one in time: a controller that
answers late has its old command acting meanwhile, exactly as on hardware.

Sensors are those of the rig: the encoder count from the true angle, and the speed from the
edge-timing estimator (`gym_raas.encoder.update_velocity`) fed with the exact edge times.

Dead-man switch: the motor duty drops to zero ``deadman_timeout_s`` after the last
`feed_deadman` (or after construction), at that exact moment of simulated time, even if the
agent only calls again much later. There is no process outside the agent here: if the agent dies
the simulated robot dies with it, which is as safe as it gets.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from gym_raas.params import PendulumParams
from gym_raas.simulator import HANGING_RAD
from raas_node.drivers.base import DriverError, SensorReading
from raas_node.drivers.readout import EncoderReadout
from raas_node.virtual_rig.pendulum import EncoderEdge, PendulumState, RealTimePendulum

logger = logging.getLogger(__name__)

DEFAULT_DEADMAN_TIMEOUT_S = 0.14
"""Same default as the pigpio driver's dead-man switch."""


class SimDriver:
    """A simulated robot in real time.

    Arguments:
        params: the robot's calibration (the simulated robot is exactly this model).
        initial_theta_rad: start angle from upright (default hanging, π).
        initial_theta_dot_rad_per_s: start speed.
        deadman_timeout_s: motor stops this long after the last feed.
        clock: monotonic seconds; tests may pass a fake clock to step time by hand.
    """

    def __init__(
        self,
        params: PendulumParams,
        *,
        initial_theta_rad: float = HANGING_RAD,
        initial_theta_dot_rad_per_s: float = 0.0,
        deadman_timeout_s: float = DEFAULT_DEADMAN_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not deadman_timeout_s > 0:
            raise ValueError(f"deadman_timeout_s must be positive, got {deadman_timeout_s}")
        self.params = params
        self.deadman_timeout_s = deadman_timeout_s
        self._clock = clock
        now = clock()
        self._pendulum = RealTimePendulum(
            params, time_s=now, theta_rad=initial_theta_rad, theta_dot_rad_per_s=initial_theta_dot_rad_per_s
        )
        self._steps = params.pwm_duty_steps
        self._last_edge_time_s = now
        self._readout = EncoderReadout(params, self._pendulum.count, now, float(initial_theta_dot_rad_per_s))
        self._last_feed_s = now
        self._deadman_trips = 0
        self._closed = False

    # -- RobotDriver -------------------------------------------------------------------------

    def read(self) -> SensorReading:
        """Advance the physics to now and read the encoder and the speed estimate."""
        now = self._advance()
        count = self._pendulum.count
        return self._readout.reading(count, self._last_edge_time_s, now)

    def apply_duty(self, duty: float) -> float:
        """Quantise to ``params.pwm_duty_steps`` and hold from now on; returns the applied duty."""
        if not math.isfinite(duty):
            raise ValueError(f"duty must be finite, got {duty}")
        self._check_open()
        applied = round(min(max(duty, -1.0), 1.0) * self._steps) / self._steps
        now = self._advance()
        if self._deadman_tripped(now):
            # The switch outside the agent holds the bridge off until the agent feeds it again.
            return 0.0
        self._record(self._pendulum.set_duty(now, applied))
        return applied

    def stop_motor(self) -> None:
        """Duty zero from now on."""
        if self._closed:
            return
        self._record(self._pendulum.set_duty(self._advance(), 0.0))

    def feed_deadman(self) -> None:
        """Restart the dead-man timeout."""
        self._advance()
        self._last_feed_s = self._clock()

    def zero_encoder(self) -> None:
        """Declare the current position as encoder zero (hanging at rest)."""
        self._advance()
        self._readout.zero_count = self._pendulum.count

    def close(self) -> None:
        """Stop the motor; further commands raise `DriverError`. Safe to call twice."""
        if not self._closed:
            self.stop_motor()
            self._closed = True

    # -- extras ------------------------------------------------------------------------------

    def true_state(self) -> PendulumState:
        """The simulated ground truth now (what no real robot can tell)."""
        self._advance()
        return self._pendulum.state()

    @property
    def deadman_trips(self) -> int:
        """How many times the dead-man switch stopped a running motor."""
        return self._deadman_trips

    # -- internals ---------------------------------------------------------------------------

    def _advance(self) -> float:
        """Bring the physics to the clock, applying the dead-man stop where it fell; returns now."""
        now = self._clock()
        deadline = self._last_feed_s + self.deadman_timeout_s
        pendulum = self._pendulum
        if pendulum.duty != 0.0 and pendulum.time_s < deadline <= now:
            self._record(pendulum.set_duty(deadline, 0.0))
            self._deadman_trips += 1
            logger.warning("sim dead-man switch stopped the motor: not fed for %.3f s", self.deadman_timeout_s)
        self._record(pendulum.advance_to(now))
        return now

    def _deadman_tripped(self, now: float) -> bool:
        return now >= self._last_feed_s + self.deadman_timeout_s

    def _record(self, edges: list[EncoderEdge]) -> None:
        if edges:
            self._last_edge_time_s = edges[-1].time_s

    def _check_open(self) -> None:
        if self._closed:
            raise DriverError("the sim driver is closed; create a new one")
