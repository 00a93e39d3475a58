"""The GPIO header of the virtual Pi: modes, pulls, output latches and pigpio's software PWM.

Validation and results follow pigpiod (gpio 0–53, PWM only on 0–31, range 25–40000, 18 PWM
frequencies per sample rate, duty out of range refused). What the bridge sees of a PWM pin is
its effective duty, quantised as pigpio does (`PwmResolution`). Inputs read the level an outside
circuit drives (the encoder) or else their pull.

Simplifications: a PWM pin reads high only at full duty (it toggles faster than anyone polls);
servo pulses, hardware PWM, clocks and waves do not exist here.
"""

from __future__ import annotations

from dataclasses import dataclass

from raas_node.drivers.config import (
    DEFAULT_SAMPLE_RATE_US,
    PWM_RANGE_LIMITS,
    PWM_REAL_RANGES,
    PwmResolution,
    closest_pwm_frequency,
    pwm_frequencies_hz,
)
from raas_node.virtual_rig.protocol import Error

MAX_GPIO = 53
MAX_USER_GPIO = 31
INPUT = 0
OUTPUT = 1
PUD_UP = 2
_DEFAULT_PWM_INDEX = 5
"""pigpio's default PWM frequency index (800 Hz at 5 µs, real range 250)."""


@dataclass
class PinState:
    """One GPIO as the daemon knows it."""

    mode: int = INPUT
    pull: int = 0
    latch: int = 0
    pwm_active: bool = False
    dutycycle: int = 0
    range: int = 255
    frequency_hz: int = 0
    real_range: int = PWM_REAL_RANGES[_DEFAULT_PWM_INDEX]

    def resolution(self) -> PwmResolution:
        return PwmResolution(self.frequency_hz, self.range, self.real_range)


class GpioBank:
    """GPIO 0–53 with pigpio's semantics; methods return pigpio results (negative = error code)."""

    def __init__(self, sample_rate_us: int = DEFAULT_SAMPLE_RATE_US) -> None:
        self.sample_rate_us = sample_rate_us
        default_frequency = pwm_frequencies_hz(sample_rate_us)[_DEFAULT_PWM_INDEX]
        self.pins = [PinState(frequency_hz=default_frequency) for _ in range(MAX_GPIO + 1)]
        self.external_levels: dict[int, int] = {}
        """Levels driven onto input pins by the rig's circuits (the encoder), by GPIO."""

    # -- commands ----------------------------------------------------------------------------

    def set_mode(self, gpio: int, mode: int) -> int:
        if gpio > MAX_GPIO:
            return Error.BAD_GPIO
        if mode > 7:
            return Error.BAD_MODE
        pin = self.pins[gpio]
        if mode != OUTPUT:
            pin.pwm_active = False
        pin.mode = mode
        return 0

    def get_mode(self, gpio: int) -> int:
        return Error.BAD_GPIO if gpio > MAX_GPIO else self.pins[gpio].mode

    def set_pull(self, gpio: int, pull: int) -> int:
        if gpio > MAX_GPIO:
            return Error.BAD_GPIO
        if pull > 2:
            return Error.BAD_PUD
        self.pins[gpio].pull = pull
        return 0

    def read(self, gpio: int) -> int:
        return Error.BAD_GPIO if gpio > MAX_GPIO else self.level(gpio)

    def write(self, gpio: int, level: int) -> int:
        if gpio > MAX_GPIO:
            return Error.BAD_GPIO
        if level > 1:
            return Error.BAD_LEVEL
        pin = self.pins[gpio]
        pin.pwm_active = False
        pin.mode = OUTPUT
        pin.latch = level
        return 0

    def set_pwm(self, gpio: int, dutycycle: int) -> int:
        if gpio > MAX_USER_GPIO:
            return Error.BAD_USER_GPIO
        pin = self.pins[gpio]
        if dutycycle > pin.range:
            return Error.BAD_DUTYCYCLE
        pin.mode = OUTPUT
        pin.pwm_active = True
        pin.dutycycle = dutycycle
        return 0

    def get_dutycycle(self, gpio: int) -> int:
        if gpio > MAX_USER_GPIO:
            return Error.BAD_USER_GPIO
        pin = self.pins[gpio]
        return pin.dutycycle if pin.pwm_active else Error.NOT_PWM_GPIO

    def set_range(self, gpio: int, pwm_range: int) -> int:
        if gpio > MAX_USER_GPIO:
            return Error.BAD_USER_GPIO
        if not PWM_RANGE_LIMITS[0] <= pwm_range <= PWM_RANGE_LIMITS[1]:
            return Error.BAD_DUTYRANGE
        pin = self.pins[gpio]
        if pin.pwm_active and pin.dutycycle:
            pin.dutycycle = pwm_range * pin.dutycycle // pin.range  # pigpio keeps the proportion
        pin.range = pwm_range
        return pin.real_range

    def get_range(self, gpio: int) -> int:
        return Error.BAD_USER_GPIO if gpio > MAX_USER_GPIO else self.pins[gpio].range

    def get_real_range(self, gpio: int) -> int:
        return Error.BAD_USER_GPIO if gpio > MAX_USER_GPIO else self.pins[gpio].real_range

    def set_frequency(self, gpio: int, frequency_hz: int) -> int:
        if gpio > MAX_USER_GPIO:
            return Error.BAD_USER_GPIO
        pin = self.pins[gpio]
        pin.frequency_hz, pin.real_range = closest_pwm_frequency(frequency_hz, self.sample_rate_us)
        return pin.frequency_hz

    def get_frequency(self, gpio: int) -> int:
        return Error.BAD_USER_GPIO if gpio > MAX_USER_GPIO else self.pins[gpio].frequency_hz

    # -- what the circuits see ---------------------------------------------------------------

    def output_duty(self, gpio: int) -> float | None:
        """Fraction of time an output is high (PWM quantised as pigpio does); None for an input."""
        pin = self.pins[gpio]
        if pin.mode != OUTPUT:
            return None
        if pin.pwm_active:
            return pin.resolution().effective_duty(pin.dutycycle)
        return float(pin.latch)

    def level(self, gpio: int) -> int:
        pin = self.pins[gpio]
        if pin.mode == OUTPUT:
            if pin.pwm_active:
                return 1 if pin.resolution().effective_duty(pin.dutycycle) >= 1.0 else 0
            return pin.latch
        if gpio in self.external_levels:
            return self.external_levels[gpio]
        return 1 if pin.pull == PUD_UP else 0

    def bank_1_levels(self) -> int:
        """Levels of GPIO 0–31 as pigpio's bitmask (bit n = GPIO n)."""
        bits = 0
        for gpio in range(MAX_USER_GPIO + 1):
            if self.level(gpio):
                bits |= 1 << gpio
        return bits
