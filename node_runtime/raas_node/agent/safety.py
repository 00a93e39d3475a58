"""The safety layer between every command and the motor (independent of user code).

Every control boundary the agent passes the requested command and the latest sensor reading
through `SafetyLayer.filter`, which returns the duty that may reach the motor and the safety
events of that boundary:

* ``nan``: a NaN or infinite command is rejected (motor off for that boundary);
* ``clamp``: a command outside the envelope is clamped to it;
* ``velocity``: above the velocity limit the motor is cut until the pendulum slows to 80 % of it;
* ``watchdog``: no command for ``watchdog_timeout_s`` (200 ms) ⇒ motor off;
* ``thermal``: an I²t model of the winding temperature throttles the duty linearly between
  ``throttle_celsius`` and ``stop_celsius``; it stops the motor at ``stop_celsius``, or when
  the overload lasts longer than ``max_throttle_s``, and keeps it stopped until the winding has
  cooled to ``resume_celsius``.

A command applied the moment it arrives (between boundaries) goes through `SafetyLayer.admit`
first: NaN refusal and clamp, then the velocity cut and the thermal limit in the state the last
boundary left, without advancing that state. The boundary's `filter` of the command in force
then keeps the cadence of the velocity latch, the watchdog and the thermal model, so they behave
the same whatever the rule and the rate: the watchdog compares real time since the last command,
the velocity cut looks at each reading, and the thermal model integrates real time exactly
(``dt``, the time since the previous boundary). Between sessions `rest` keeps the thermal model
running (the reset routine heats, idling cools).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

SAFETY_EVENTS = ("nan", "clamp", "velocity", "watchdog", "thermal")


@dataclass(frozen=True)
class SafetyLimits:
    """The envelope of one robot (part of its Robot spec in the cluster)."""

    max_duty: float = 1.0
    velocity_limit_rad_per_s: float = 25.0
    watchdog_timeout_s: float = 0.2
    ambient_celsius: float = 25.0
    heating_celsius_per_s_at_full_duty: float = 2.0
    """Temperature rise rate with full duty² (I²t: heating ∝ current² ∝ duty²)."""
    cooling_time_constant_s: float = 120.0
    throttle_celsius: float = 70.0
    stop_celsius: float = 85.0
    resume_celsius: float = 60.0
    max_throttle_s: float = 20.0
    """A motor still throttled after this long is stopped to cool down."""


def tightened(
    limits: SafetyLimits,
    *,
    max_duty: float | None = None,
    velocity_limit_rad_per_s: float | None = None,
    watchdog_timeout_s: float | None = None,
    stop_celsius: float | None = None,
) -> SafetyLimits:
    """`limits`, made stricter where a given value is stricter, never looser (a lab can tighten a
    robot's envelope from its Robot spec, not widen what its node was configured with). A lower
    stop temperature pulls the throttle and resume temperatures below it."""

    def stricter(current: float, wanted: float | None) -> float:
        if wanted is None or not wanted > 0 or wanted >= current * (1 - 1e-9):  # (a unit round trip's noise)
            return current
        return wanted

    stop = stricter(limits.stop_celsius, stop_celsius)
    throttle = limits.throttle_celsius if stop == limits.stop_celsius else min(limits.throttle_celsius, stop - 5.0)
    resume = limits.resume_celsius if stop == limits.stop_celsius else min(limits.resume_celsius, throttle - 5.0)
    return replace(
        limits,
        max_duty=stricter(limits.max_duty, max_duty),
        velocity_limit_rad_per_s=stricter(limits.velocity_limit_rad_per_s, velocity_limit_rad_per_s),
        watchdog_timeout_s=stricter(limits.watchdog_timeout_s, watchdog_timeout_s),
        stop_celsius=stop,
        throttle_celsius=throttle,
        resume_celsius=resume,
    )


@dataclass(frozen=True)
class SafeCommand:
    duty: float
    events: tuple[str, ...]


class SafetyLayer:
    """Stateful filter of commands: velocity latch, thermal model, watchdog."""

    def __init__(self, limits: SafetyLimits, max_command: float) -> None:
        self.limits = limits
        self.max_command = max_command
        self.temperature_celsius = limits.ambient_celsius
        self._velocity_latched = False
        self._thermal_stopped = False
        self._throttled_for_s = 0.0

    def filter(self, command: float | None, theta_dot: float, since_last_command_s: float, dt: float) -> SafeCommand:
        """Duty allowed for the next period. `command` None means "hold": no new command came."""
        limits = self.limits
        events: list[str] = []
        duty = 0.0
        if since_last_command_s > limits.watchdog_timeout_s:
            events.append("watchdog")
        elif command is not None and not math.isfinite(command):
            events.append("nan")
        elif command is not None:
            duty = command / self.max_command
            if abs(duty) > limits.max_duty:
                duty = math.copysign(limits.max_duty, duty)
                events.append("clamp")
        if abs(theta_dot) > limits.velocity_limit_rad_per_s:
            self._velocity_latched = True
        elif abs(theta_dot) < 0.8 * limits.velocity_limit_rad_per_s:
            self._velocity_latched = False
        if self._velocity_latched and duty != 0.0:
            duty = 0.0
            events.append("velocity")
        duty, thermal = self._thermal(duty, dt)
        if thermal:
            events.append("thermal")
        self._heat(duty, dt)
        return SafeCommand(duty, tuple(events))

    def admit(self, command: float) -> tuple[float, SafeCommand]:
        """A command arriving between boundaries: (the command the boundaries hold from now on,
        the duty allowed now). The held command is finite and within the envelope (0 for a NaN
        or infinite one), so holding it raises no ``nan`` or ``clamp`` event again; the duty
        also obeys the velocity cut and thermal limit as the last boundary left them. Only
        ``nan`` and ``clamp`` are events here: the others are counted at boundaries, as ever."""
        limits = self.limits
        events: list[str] = []
        duty = 0.0
        if not math.isfinite(command):
            events.append("nan")
        else:
            duty = command / self.max_command
            if abs(duty) > limits.max_duty:
                duty = math.copysign(limits.max_duty, duty)
                events.append("clamp")
        held = duty * self.max_command
        if self._velocity_latched or self._thermal_stopped:
            duty = 0.0
        elif self.temperature_celsius > limits.throttle_celsius:
            scale = (limits.stop_celsius - self.temperature_celsius) / (limits.stop_celsius - limits.throttle_celsius)
            duty *= max(scale, 0.0)
        return held, SafeCommand(duty, tuple(events))

    def rest(self, duty: float, dt: float) -> None:
        """A boundary outside a session: the motor ran at `duty` (the agent's own reset routine, or
        0) for `dt` seconds. The thermal model heats or cools by that time, and its stop releases
        once the winding has cooled, so a robot that overheated becomes usable again."""
        self._thermal(0.0, dt)
        self._heat(duty, dt)

    def _thermal(self, duty: float, dt: float) -> tuple[float, bool]:
        limits = self.limits
        temperature = self.temperature_celsius
        self._throttled_for_s = self._throttled_for_s + dt if temperature > limits.throttle_celsius else 0.0
        if temperature >= limits.stop_celsius or self._throttled_for_s > limits.max_throttle_s:
            self._thermal_stopped = True
        elif temperature <= limits.resume_celsius:
            self._thermal_stopped = False
        if self._thermal_stopped:
            return 0.0, duty != 0.0
        if temperature > limits.throttle_celsius:
            scale = (limits.stop_celsius - temperature) / (limits.stop_celsius - limits.throttle_celsius)
            return duty * max(scale, 0.0), duty != 0.0
        return duty, False

    def _heat(self, duty: float, dt: float) -> None:
        """Advance the winding temperature by `dt` seconds at `duty`, exactly (first-order model:
        the temperature relaxes towards ambient + heating × time constant), so the temperature
        after a given time is the same whatever the control rate splits it into."""
        limits = self.limits
        steady = limits.ambient_celsius + limits.heating_celsius_per_s_at_full_duty * duty * duty * (
            limits.cooling_time_constant_s
        )
        decay = math.exp(-dt / limits.cooling_time_constant_s)
        self.temperature_celsius = steady + (self.temperature_celsius - steady) * decay

    @property
    def hot(self) -> bool:
        """True while the thermal stop holds the motor off."""
        return self._thermal_stopped
