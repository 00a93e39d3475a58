"""The safety layer between user commands and the motor, alone and inside the agent."""

from __future__ import annotations

import math
import socket
import time

import numpy as np
import pytest
from agent_fixtures import running_agent
from hypothesis import given, settings
from hypothesis import strategies as st

from gym_raas.backends.robot import RobotBackend
from gym_raas.params import PendulumParams
from gym_raas.protocol import FrameReader, decode_message, encode_frame
from raas_node.agent.recorder import read_trajectory
from raas_node.agent.safety import SafetyLayer, SafetyLimits
from raas_node.drivers.sim_driver import SimDriver

DT = 0.05


def layer(**limits: float) -> SafetyLayer:
    return SafetyLayer(SafetyLimits(**limits), max_command=2.0)


@pytest.mark.parametrize("command", [math.nan, math.inf, -math.inf])
def test_nan_and_infinite_commands_never_reach_the_motor(command: float) -> None:
    safe = layer().filter(command, 0.0, 0.0, DT)
    assert safe.duty == 0.0
    assert safe.events == ("nan",)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(-50, 50))
def test_any_command_sequence_stays_inside_the_envelope(command: float, speed: float) -> None:
    safety = layer(max_duty=0.8)
    for _ in range(3):  # rapid repeats of the same extreme command
        duty = safety.filter(command, speed, 0.0, DT).duty
        assert math.isfinite(duty)
        assert abs(duty) <= 0.8


def test_huge_commands_are_clamped_and_reported() -> None:
    safe = layer(max_duty=0.9).filter(1e9, 0.0, 0.0, DT)
    assert safe.duty == pytest.approx(0.9)
    assert safe.events == ("clamp",)


def test_motor_is_cut_above_the_velocity_limit_until_the_pendulum_slows() -> None:
    safety = layer(velocity_limit_rad_per_s=10.0)
    assert safety.filter(2.0, 11.0, 0.0, DT).events == ("velocity",)
    assert safety.filter(2.0, 9.0, 0.0, DT).duty == 0.0  # hysteresis: still above 80 %
    assert safety.filter(2.0, 7.0, 0.0, DT).duty == pytest.approx(1.0)


def test_the_watchdog_stops_the_motor_when_commands_stop() -> None:
    safety = layer()
    assert safety.filter(2.0, 0.0, 0.15, DT).duty == pytest.approx(1.0)
    safe = safety.filter(2.0, 0.0, 0.25, DT)
    assert safe.duty == 0.0
    assert safe.events == ("watchdog",)


def test_the_thermal_model_throttles_then_stops_then_lets_the_motor_cool() -> None:
    safety = layer(heating_celsius_per_s_at_full_duty=40.0)
    duties, temperatures = [], []
    for _ in range(int(30 / DT)):  # 30 s at full command: a sustained overload
        duties.append(safety.filter(2.0, 0.0, 0.0, DT).duty)
        temperatures.append(safety.temperature_celsius)
    assert duties[0] == pytest.approx(1.0)
    assert any(0.0 < duty < 1.0 for duty in duties)  # throttled on the way up
    assert duties[-1] == 0.0
    assert safety.hot
    assert max(temperatures) < 90.0
    for _ in range(int(300 / DT)):  # five minutes of rest
        safety.filter(0.0, 0.0, 0.0, DT)
    assert not safety.hot
    assert safety.filter(2.0, 0.0, 0.0, DT).duty > 0.0


def test_inside_the_agent_a_nan_command_is_refused_and_the_session_goes_on() -> None:
    with running_agent(SimDriver(PendulumParams())) as agent:
        backend = RobotBackend(str(agent.config.socket_path), token=agent.expect("job-nan"))
        backend.reset(np.random.default_rng(), None)
        connection: socket.socket = backend._socket
        # The env refuses NaN itself; send one on the wire as hostile code would.
        connection.sendall(encode_frame(b'{"type":"step","v":1,"action":NaN}'))
        reply = decode_message(FrameReader(connection).read() or b"")
        assert reply["type"] == "observation"
        assert reply["safety"] == ["nan"]
        assert reply["applied"] == 0.0
        assert backend.step(1.0).info["applied_command"] == pytest.approx(1.0, abs=0.01)  # type: ignore[index]
        backend.close()
        result = agent.wait_session("job-nan", timeout_s=30)
        assert result is not None
        assert result.safety_events == {"nan": 1}


def test_inside_the_agent_the_watchdog_stops_the_motor_within_200_ms_of_the_last_command() -> None:
    driver = SimDriver(PendulumParams())
    with running_agent(driver) as agent:
        backend = RobotBackend(str(agent.config.socket_path), token=agent.expect("job-quiet"))
        backend.reset(np.random.default_rng(), None)
        backend.step(2.0)
        last_command = time.monotonic()
        time.sleep(0.6)  # the client goes quiet, connection open
        backend.close()
        result = agent.wait_session("job-quiet", timeout_s=30)
        assert result is not None
        assert result.trajectory_path is not None
        rows = read_trajectory(result.trajectory_path)
        assert "watchdog" in ",".join(rows["safety_events"])
        driven = [time_s for time_s, duty in zip(rows["time_s"], rows["applied_duty"], strict=True) if duty != 0.0]
        started = result.started_monotonic_s
        assert max(driven) + started - last_command <= 0.2 + DT
