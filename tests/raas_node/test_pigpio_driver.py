"""The pigpio driver, through the real pigpio client, against the virtual rig."""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polling import wait_until

from gym_raas.params import PendulumParams
from gym_raas.simulator import HANGING_RAD
from raas_node.drivers.base import DriverError, RobotDriver
from raas_node.drivers.config import PWM_REAL_RANGES, BridgeMode, PigpioDriverConfig, PwmResolution, RigWiring
from raas_node.drivers.pigpio_driver import PigpioDriver
from raas_node.virtual_rig import VirtualRig

logger = logging.getLogger(__name__)

STICKY = PendulumParams(coulomb_friction_rad_per_s2=20.0)
"""A rig whose dry friction holds the pendulum up to 45° from hanging."""


@pytest.fixture
def driver(rig_driver_config: PigpioDriverConfig) -> Iterator[PigpioDriver]:
    robot = PigpioDriver(rig_driver_config)
    yield robot
    robot.close()


def test_the_driver_satisfies_the_robot_driver_contract(driver: PigpioDriver) -> None:
    robot: RobotDriver = driver
    assert robot.read().encoder_count == 0


@pytest.mark.slow
def test_encoder_counts_track_the_physics_within_one_count_over_a_long_swing(
    driver: PigpioDriver, virtual_rig: VirtualRig
) -> None:
    resolution = driver.params.encoder_resolution_rad
    virtual_rig.place(0.2)  # lifted by hand almost upright: swings through the bottom at ~10 rad/s
    placed_at = virtual_rig.state().time_s
    assert wait_until(lambda: driver.read().encoder_count < -200)  # the hand's move has arrived
    time.sleep(0.02)
    driver.read()  # from here on the speed estimate has forgotten the hand's quick move
    worst_count_error = worst_speed_error = 0.0  # speed: relative
    top_speed = 0.0
    samples = 0
    while virtual_rig.state().time_s - placed_at < 4.0:
        time.sleep(0.02)
        reading = driver.read()
        samples += 1
        # Edge stamps agree with the rig's within a few µs; edges here are ≥ 1 ms apart.
        truth_at_edge = virtual_rig.encoder_count_at(reading.last_edge_time_s + 50e-6)
        worst_count_error = max(worst_count_error, abs(reading.encoder_count - truth_at_edge))
        state = virtual_rig.state()
        top_speed = max(top_speed, abs(state.theta_dot_rad_per_s))
        # What the encoder cannot know yet: edges still in flight (≤ a few ms of motion).
        in_flight = abs(state.theta_dot_rad_per_s) * (state.time_s - reading.time_s + 0.006) / resolution
        assert abs(reading.encoder_count - state.encoder_count) <= 1 + in_flight
        expected_angle = HANGING_RAD + reading.encoder_count * resolution
        assert math.isclose(reading.theta_rad, (expected_angle + math.pi) % (2 * math.pi) - math.pi, abs_tol=1e-9)
        if abs(state.theta_dot_rad_per_s) > 3.0:  # turning points: edges are too rare to say much
            speed_error = abs(reading.theta_dot_rad_per_s / state.theta_dot_rad_per_s - 1.0)
            worst_speed_error = max(worst_speed_error, speed_error)
    logger.info("encoder_worst_count_error = %.6g", worst_count_error)
    logger.info("speed_worst_relative_error_above_3_rad_per_s = %.6g", worst_speed_error)
    assert samples > 100
    assert top_speed > 8.0  # a real swing, hundreds of edges per second
    assert worst_count_error <= 1
    assert driver.encoder_errors == 0
    assert worst_speed_error < 0.25  # an average over the last 20 ms, so it lags a little


def test_pwm_duty_on_the_bridge_matches_the_command(driver: PigpioDriver, virtual_rig: VirtualRig) -> None:
    wiring = virtual_rig.wiring
    # 500 Hz at pigpiod's 5 µs sampling: 400 samples per cycle, all 255 duty values distinct.
    assert (driver.pwm.frequency_hz, driver.pwm.real_range, driver.pwm.duty_steps) == (500, 400, 255)
    for command in (0.5, 1.0, -0.3, -1.0, 0.123, 0.0):
        applied = driver.apply_duty(command)
        state = virtual_rig.state()
        assert applied == pytest.approx(command, abs=driver.pwm.duty_resolution)
        assert state.motor_duty == pytest.approx(applied, abs=1e-12)
        forward, backward = state.pin_duty[wiring.forward_pwm_pin], state.pin_duty[wiring.backward_pwm_pin]
        assert (forward, backward) == ((applied, 0.0) if applied >= 0 else (0.0, -applied))


def test_effective_duty_resolution_follows_the_pwm_frequency(virtual_rig: VirtualRig) -> None:
    config = PigpioDriverConfig(host=virtual_rig.host, port=virtual_rig.port, pwm_frequency_hz=8000)
    robot = PigpioDriver(config)
    try:
        assert (robot.pwm.frequency_hz, robot.pwm.duty_steps) == (8000, 25)
        assert robot.apply_duty(0.5) in (pytest.approx(0.48), pytest.approx(0.52))
        assert virtual_rig.state().motor_duty == pytest.approx(robot.apply_duty(0.5))
        assert robot.apply_duty(0.01) == 0.0  # below half a step of 1/25
    finally:
        robot.close()


def test_direction_pins_follow_the_sign_of_the_duty_in_pwm_direction_mode(
    virtual_rig_factory: Callable[..., VirtualRig],
) -> None:
    wiring = RigWiring(bridge_mode=BridgeMode.PWM_DIRECTION, pwm_pin=18, direction_pin=23, direction_complement_pin=24)
    rig = virtual_rig_factory(wiring=wiring)
    robot = PigpioDriver(PigpioDriverConfig(host=rig.host, port=rig.port, wiring=wiring))
    try:
        for command, direction in ((0.6, 0.0), (-0.4, 1.0), (-0.8, 1.0), (0.2, 0.0)):
            applied = robot.apply_duty(command)
            state = rig.state()
            assert state.pin_duty[23] == direction
            assert state.pin_duty[24] == 1.0 - direction
            assert state.pin_duty[18] == pytest.approx(abs(applied))
            assert state.motor_duty == pytest.approx(applied)
        robot.stop_motor()
        assert rig.state().motor_duty == 0.0
    finally:
        robot.close()


def test_zero_encoder_makes_the_current_position_count_zero(virtual_rig_factory: Callable[..., VirtualRig]) -> None:
    rig = virtual_rig_factory(params=STICKY)  # friction holds the pendulum where it is put
    robot = PigpioDriver(PigpioDriverConfig(host=rig.host, port=rig.port), STICKY)
    try:
        resolution = STICKY.encoder_resolution_rad
        rig.place(HANGING_RAD + 30 * resolution)
        assert wait_until(lambda: robot.read().encoder_count == 30)
        assert robot.read().theta_rad == pytest.approx(-math.pi + 30 * resolution)
        robot.zero_encoder()
        reading = robot.read()
        assert (reading.encoder_count, reading.theta_rad) == (0, -math.pi)
    finally:
        robot.close()


def test_speed_reads_zero_once_the_pendulum_rests(virtual_rig_factory: Callable[..., VirtualRig]) -> None:
    rig = virtual_rig_factory(params=STICKY)
    robot = PigpioDriver(PigpioDriverConfig(host=rig.host, port=rig.port), STICKY)
    try:
        rig.place(HANGING_RAD, 3.0)  # a push: friction stops it within a few hundred ms
        moving = []
        for _ in range(5):
            time.sleep(0.02)
            moving.append(robot.read().theta_dot_rad_per_s)
        assert max(moving) > 1.0
        assert wait_until(lambda: rig.state().theta_dot_rad_per_s == 0.0)
        time.sleep(0.5)
        assert abs(robot.read().theta_dot_rad_per_s) < 0.05
    finally:
        robot.close()


def test_close_stops_the_motor_and_removes_the_deadman_script(
    rig_driver_config: PigpioDriverConfig, virtual_rig: VirtualRig
) -> None:
    robot = PigpioDriver(rig_driver_config)
    robot.feed_deadman()
    robot.apply_duty(0.7)
    assert virtual_rig.state().running_scripts == 1
    robot.close()
    robot.close()
    state = virtual_rig.state()
    assert (state.motor_duty, state.running_scripts) == (0.0, 0)
    with pytest.raises(DriverError, match="closed"):
        robot.apply_duty(0.1)


def test_an_unreachable_daemon_raises_a_driver_error_that_says_what_to_start() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with pytest.raises(DriverError, match="pigpiod"):
        PigpioDriver(PigpioDriverConfig(host="127.0.0.1", port=free_port), connect_timeout_s=1.0)


def test_a_vanished_daemon_turns_commands_into_driver_errors(virtual_rig_factory: Callable[..., VirtualRig]) -> None:
    rig = virtual_rig_factory()
    robot = PigpioDriver(PigpioDriverConfig(host=rig.host, port=rig.port))
    try:
        rig.stop()
        with pytest.raises(DriverError, match="lost pigpiod"):
            robot.apply_duty(0.5)
    finally:
        robot.close()


def test_non_finite_duties_are_refused(driver: PigpioDriver) -> None:
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            driver.apply_duty(bad)


@settings(max_examples=60, deadline=None)
@given(
    real_range=st.sampled_from(PWM_REAL_RANGES),
    pwm_range=st.integers(min_value=25, max_value=40000),
    duty=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_quantised_duty_is_the_nearest_level_pigpio_can_make(real_range: int, pwm_range: int, duty: float) -> None:
    resolution = PwmResolution(500, pwm_range, real_range)
    chosen = resolution.effective_duty(resolution.dutycycle_for(duty))
    best = min(abs(resolution.effective_duty(value) - duty) for value in range(pwm_range + 1))
    assert abs(chosen - duty) == pytest.approx(best, abs=1e-12)
    assert resolution.duty_steps == min(pwm_range, real_range)
