"""The sim driver: a calibrated simulated robot that lives in real time."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from gym_raas.params import PendulumParams
from gym_raas.simulator import HANGING_RAD, PendulumSimulator
from raas_node.drivers.base import DriverError, RobotDriver
from raas_node.drivers.sim_driver import SimDriver
from raas_node.virtual_rig.pendulum import RealTimePendulum

PARAMS = PendulumParams()


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_the_driver_satisfies_the_robot_driver_contract() -> None:
    robot: RobotDriver = SimDriver(PARAMS)
    assert robot.read().encoder_count == 0
    robot.close()


def test_a_reading_after_half_a_second_of_wall_clock_shows_half_a_second_of_physics() -> None:
    robot = SimDriver(PARAMS, initial_theta_rad=HANGING_RAD + 1.0)
    started = robot.true_state().time_s
    time.sleep(0.5)
    reading = robot.read()
    elapsed = reading.time_s - started
    assert 0.5 <= elapsed < 0.7
    reference = RealTimePendulum(PARAMS, time_s=0.0, theta_rad=HANGING_RAD + 1.0)
    reference.advance_to(elapsed)
    assert abs(reading.encoder_count - reference.count) <= 1
    assert reading.encoder_count != round(1.0 / PARAMS.encoder_resolution_rad)  # it did swing


def test_physics_is_the_gym_raas_model_of_the_robot() -> None:
    clock = FakeClock()
    robot = SimDriver(PARAMS, initial_theta_rad=HANGING_RAD + 0.4, clock=clock)
    simulator = PendulumSimulator(PARAMS.replace(actuation_latency_s=0.0))
    simulator.reset(np.random.default_rng(0), HANGING_RAD + 0.4, 0.0)
    for command in (2.0, 2.0, -1.0, 0.5, 0.0, 0.0, -2.0, 1.3):
        robot.feed_deadman()
        robot.apply_duty(command / PARAMS.max_command)
        simulator.step(command)
        clock.advance(PARAMS.control_period_s)
        state = robot.true_state()
        assert state.theta_rad == pytest.approx(simulator.theta, abs=1e-9)
        assert state.theta_dot_rad_per_s == pytest.approx(simulator.theta_dot, abs=1e-9)


def test_a_slow_controller_leaves_its_last_command_acting_until_the_next() -> None:
    clock = FakeClock()
    robot = SimDriver(PARAMS, clock=clock, deadman_timeout_s=10.0)
    robot.apply_duty(1.0)
    clock.advance(0.3)  # the controller is late: 0.3 s instead of 0.05 s
    late = robot.read()
    reference = RealTimePendulum(PARAMS, time_s=0.0)
    reference.set_duty(0.0, 1.0)
    reference.advance_to(0.3)
    assert late.encoder_count == reference.count
    assert late.encoder_count > 20  # full duty pushed it well up meanwhile


def test_duty_is_quantised_to_the_pwm_steps_of_the_calibration() -> None:
    robot = SimDriver(PARAMS.replace(pwm_duty_steps=10))
    assert robot.apply_duty(0.33) == pytest.approx(0.3)
    assert robot.apply_duty(-0.96) == pytest.approx(-1.0)
    assert robot.apply_duty(7.0) == 1.0  # clipped
    assert robot.true_state().duty == 1.0
    with pytest.raises(ValueError, match="finite"):
        robot.apply_duty(math.nan)


def test_the_deadman_stops_the_simulated_motor_at_its_timeout_even_if_nobody_calls() -> None:
    clock = FakeClock()
    robot = SimDriver(PARAMS, clock=clock, deadman_timeout_s=0.14)
    robot.feed_deadman()
    robot.apply_duty(1.0)
    clock.advance(1.0)  # the agent hangs for a second
    state = robot.true_state()
    assert state.duty == 0.0
    assert robot.deadman_trips == 1
    reference = RealTimePendulum(PARAMS, time_s=0.0)
    reference.set_duty(0.0, 1.0)
    reference.set_duty(0.14, 0.0)
    reference.advance_to(1.0)
    assert state.theta_rad == pytest.approx(reference.theta_rad, abs=1e-9)
    assert robot.apply_duty(0.5) == 0.0  # still starved
    robot.feed_deadman()
    assert robot.apply_duty(0.5) == pytest.approx(0.5, abs=1 / PARAMS.pwm_duty_steps)


def test_speed_estimate_follows_the_true_speed_of_a_swing() -> None:
    clock = FakeClock()
    robot = SimDriver(PARAMS, initial_theta_rad=HANGING_RAD + 1.5, clock=clock)
    errors = []
    for _ in range(100):
        clock.advance(0.02)
        reading = robot.read()
        true_speed = robot.true_state().theta_dot_rad_per_s
        if abs(true_speed) > 3.0:
            errors.append(abs(reading.theta_dot_rad_per_s / true_speed - 1.0))
    assert len(errors) > 20
    assert max(errors) < 0.25


def test_zero_encoder_and_stop_motor() -> None:
    clock = FakeClock()
    robot = SimDriver(PARAMS, clock=clock)
    robot.feed_deadman()
    robot.apply_duty(1.0)
    clock.advance(0.1)
    robot.stop_motor()
    assert robot.true_state().duty == 0.0
    robot.zero_encoder()
    assert robot.read().encoder_count == 0
    assert robot.read().theta_rad == -math.pi


def test_a_closed_driver_refuses_commands_and_closes_twice() -> None:
    robot = SimDriver(PARAMS)
    robot.close()
    robot.close()
    with pytest.raises(DriverError, match="closed"):
        robot.apply_duty(0.2)
