"""How a robot is wired and how its pigpio daemon is set up: pins, bridge mode, PWM, dead-man.

`RigWiring` describes the cables (shared by the pigpio driver and the virtual rig, which must be
wired alike); `PigpioDriverConfig` adds where the daemon is and how PWM and the dead-man switch
are set up. `PwmResolution` is pigpio's PWM arithmetic, so that the driver and the virtual rig
quantise a duty exactly as pigpiod does.

pigpio's PWM is sampled: at the daemon's sample rate (5 µs by default) each GPIO can use one of
18 frequencies, and each frequency has a *real range* (number of samples per PWM cycle). A duty
of ``d`` out of the configured range ``r`` becomes ``floor(d · R / r)`` samples out of the real
range ``R``, so the distinct duty levels are ``min(r, R)``: 800 Hz gives 250 levels, 8 kHz only 25.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

MAX_USER_GPIO = 31
"""pigpio drives PWM and reports edges only on GPIO 0–31 (bank 1)."""
PWM_RANGE_LIMITS = (25, 40000)
"""Smallest and largest PWM range pigpio accepts."""
DEFAULT_SAMPLE_RATE_US = 5
"""pigpiod's default GPIO sample rate (``pigpiod -s 5``)."""
PWM_REAL_RANGES = (25, 50, 100, 125, 200, 250, 400, 500, 625, 800, 1000, 1250, 2000, 2500, 4000, 5000, 10000, 20000)
"""Samples per PWM cycle of pigpio's 18 PWM frequencies, fastest first (independent of the sample rate)."""
SAMPLE_RATES_US = (1, 2, 4, 5, 8, 10)


class DriverConfigError(ValueError):
    """A wiring or driver setting is impossible (pin out of range, pins shared, bad PWM range...)."""


class BridgeMode(str, enum.Enum):
    """How the H-bridge (L298N-style) inputs are driven."""

    TWO_PWM = "two_pwm"
    """IN1 carries PWM for forward, IN2 PWM for backward, ENA tied high. Net duty = IN1 − IN2."""
    PWM_DIRECTION = "pwm_direction"
    """ENA carries PWM, IN1 the direction (low = forward) and, optionally, IN2 its complement
    (leave ``direction_complement_pin`` as None when an inverter on the board makes IN2)."""


@dataclass(frozen=True)
class RigWiring:
    """Which Broadcom GPIO goes where (all in 0–31, no pin used twice).

    Only the pins of the chosen ``bridge_mode`` are used; the others are ignored.
    """

    bridge_mode: BridgeMode = BridgeMode.TWO_PWM
    forward_pwm_pin: int = 12
    """TWO_PWM: the bridge input that drives the motor forward (positive duty, θ increasing)."""
    backward_pwm_pin: int = 13
    """TWO_PWM: the bridge input that drives the motor backward."""
    pwm_pin: int = 12
    """PWM_DIRECTION: the bridge enable input (ENA) that carries the PWM."""
    direction_pin: int = 5
    """PWM_DIRECTION: IN1; low drives forward, high backward."""
    direction_complement_pin: int | None = 6
    """PWM_DIRECTION: IN2, always the opposite of IN1; None when the board derives it."""
    encoder_a_pin: int = 17
    """Encoder channel A (leads B when θ increases)."""
    encoder_b_pin: int = 27
    """Encoder channel B."""
    encoder_pull_up: bool = True
    """Enable the Pi's pull-ups on the encoder inputs (open-collector encoders need them)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "bridge_mode", BridgeMode(self.bridge_mode))
        pins = self.used_pins
        bad = [pin for pin in pins if not 0 <= pin <= MAX_USER_GPIO]
        if bad:
            raise DriverConfigError(f"GPIO {bad} out of range: pigpio PWM and edge reports need GPIO 0–31")
        if len(set(pins)) != len(pins):
            raise DriverConfigError(
                f"a GPIO is wired twice in {pins}: give every bridge and encoder signal its own pin"
            )

    @property
    def pwm_pins(self) -> tuple[int, ...]:
        """Pins that carry PWM (the ones the dead-man switch zeroes)."""
        if self.bridge_mode is BridgeMode.TWO_PWM:
            return (self.forward_pwm_pin, self.backward_pwm_pin)
        return (self.pwm_pin,)

    @property
    def direction_pins(self) -> tuple[int, ...]:
        """Plain output pins that select the direction (empty in TWO_PWM mode)."""
        if self.bridge_mode is BridgeMode.TWO_PWM:
            return ()
        if self.direction_complement_pin is None:
            return (self.direction_pin,)
        return (self.direction_pin, self.direction_complement_pin)

    @property
    def bridge_pins(self) -> tuple[int, ...]:
        """Every pin wired to the bridge."""
        return self.pwm_pins + self.direction_pins

    @property
    def encoder_pins(self) -> tuple[int, int]:
        return (self.encoder_a_pin, self.encoder_b_pin)

    @property
    def used_pins(self) -> tuple[int, ...]:
        return self.bridge_pins + self.encoder_pins


def pwm_frequencies_hz(sample_rate_us: int = DEFAULT_SAMPLE_RATE_US) -> tuple[int, ...]:
    """The 18 PWM frequencies pigpiod offers at a sample rate, fastest first (pigpio's table)."""
    if sample_rate_us not in SAMPLE_RATES_US:
        raise DriverConfigError(f"pigpio sample rate must be one of {SAMPLE_RATES_US} µs, got {sample_rate_us}")
    return tuple(int(1_000_000.0 / (sample_rate_us * real_range) + 0.5) for real_range in PWM_REAL_RANGES)


def closest_pwm_frequency(requested_hz: int, sample_rate_us: int = DEFAULT_SAMPLE_RATE_US) -> tuple[int, int]:
    """(frequency, real range) pigpiod picks for a requested frequency, as ``set_PWM_frequency`` does."""
    table = pwm_frequencies_hz(sample_rate_us)
    if requested_hz > table[0]:
        index = 0
    elif requested_hz < table[-1]:
        index = len(table) - 1
    else:
        index = min(range(len(table)), key=lambda i: (abs(requested_hz - table[i]), i))
    return table[index], PWM_REAL_RANGES[index]


@dataclass(frozen=True)
class PwmResolution:
    """pigpio's duty arithmetic for one GPIO: configured range and the real range of its frequency."""

    frequency_hz: int
    range: int
    """Duty cycle values 0..range accepted by ``set_PWM_dutycycle``."""
    real_range: int
    """Samples per PWM cycle at this frequency (``get_PWM_real_range``)."""

    def __post_init__(self) -> None:
        if not PWM_RANGE_LIMITS[0] <= self.range <= PWM_RANGE_LIMITS[1]:
            raise DriverConfigError(
                f"PWM range must be in {PWM_RANGE_LIMITS[0]}–{PWM_RANGE_LIMITS[1]}, got {self.range}"
            )
        if self.real_range <= 0:
            raise DriverConfigError(f"PWM real range must be positive, got {self.real_range}")

    @property
    def duty_steps(self) -> int:
        """Distinct non-zero duty levels that reach the pin: min(range, real range)."""
        return min(self.range, self.real_range)

    @property
    def duty_resolution(self) -> float:
        """Smallest duty change that reaches the pin (fraction of full)."""
        return 1.0 / self.duty_steps

    def effective_duty(self, dutycycle: int) -> float:
        """Fraction of time the pin is high for a duty cycle value (pigpio's integer division)."""
        return (dutycycle * self.real_range // self.range) / self.real_range

    def dutycycle_for(self, duty: float) -> int:
        """Duty cycle value (0..range) whose effective duty is nearest to ``duty`` in [0, 1]."""
        duty = min(max(duty, 0.0), 1.0)
        if self.range > self.real_range:
            # Several values map onto one real level: take the smallest that reaches the nearest level.
            level = round(duty * self.real_range)
            return math.ceil(level * self.range / self.real_range)
        guess = round(duty * self.range)
        candidates = [value for value in range(guess - 2, guess + 3) if 0 <= value <= self.range]
        return min(candidates, key=lambda value: (abs(self.effective_duty(value) - duty), value))

    @classmethod
    def expected(cls, frequency_hz: int, pwm_range: int, sample_rate_us: int = DEFAULT_SAMPLE_RATE_US) -> PwmResolution:
        """The resolution pigpiod will give for a requested frequency and range."""
        actual, real_range = closest_pwm_frequency(frequency_hz, sample_rate_us)
        return cls(actual, pwm_range, real_range)


@dataclass(frozen=True)
class PigpioDriverConfig:
    """Settings of the pigpio driver (the calibration, `PendulumParams`, is passed separately).

    Dead-man switch: a script inside pigpiod checks every ``deadman_check_interval_s`` whether
    the agent's heartbeat changed and zeroes the bridge PWM once it has not changed for
    ``deadman_timeout_s``. The agent must feed it more often than the timeout; the motor stops at
    most ``deadman_worst_case_stop_s`` after the last feed.
    """

    host: str = "localhost"
    port: int = 8888
    wiring: RigWiring = field(default_factory=RigWiring)
    pwm_frequency_hz: int = 500
    """Requested PWM frequency; pigpiod picks the nearest of its 18. At the default 5 µs sampling
    500 Hz has 400 samples per cycle, so all 255 values of the default range are distinct (the
    reference calibration's ``pwm_duty_steps``); 800 Hz would give 250, 8 kHz only 25."""
    pwm_range: int = 255
    """Duty cycle range set on the PWM pins (25–40000)."""
    deadman_timeout_s: float = 0.14
    deadman_check_interval_s: float = 0.02

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise DriverConfigError(f"pigpiod port must be 1–65535, got {self.port}")
        if self.pwm_frequency_hz <= 0:
            raise DriverConfigError(f"PWM frequency must be positive, got {self.pwm_frequency_hz} Hz")
        if not PWM_RANGE_LIMITS[0] <= self.pwm_range <= PWM_RANGE_LIMITS[1]:
            raise DriverConfigError(
                f"PWM range must be in {PWM_RANGE_LIMITS[0]}–{PWM_RANGE_LIMITS[1]}, got {self.pwm_range}"
            )
        if not 0.001 <= self.deadman_check_interval_s <= 1.0:
            raise DriverConfigError(
                f"dead-man check interval must be 1 ms – 1 s, got {self.deadman_check_interval_s} s"
            )
        if self.deadman_timeout_s < self.deadman_check_interval_s:
            raise DriverConfigError(
                f"dead-man timeout ({self.deadman_timeout_s} s) must be at least one check interval "
                f"({self.deadman_check_interval_s} s)"
            )

    @property
    def deadman_check_interval_ms(self) -> int:
        return max(1, round(self.deadman_check_interval_s * 1000))

    @property
    def deadman_missed_checks(self) -> int:
        """Consecutive checks without a heartbeat change that stop the motor."""
        return max(1, math.ceil(self.deadman_timeout_s * 1000 / self.deadman_check_interval_ms - 1e-9))

    @property
    def deadman_worst_case_stop_s(self) -> float:
        """Longest time from the last feed to the motor stopping (timeout plus one check)."""
        return (self.deadman_missed_checks + 1) * self.deadman_check_interval_ms / 1000.0
