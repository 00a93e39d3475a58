"""Control rates (issue 17): a session runs at the rate its job asks for, among the robot's; a
hello's rate is checked; a version-1 client runs at 20 Hz; and safety (watchdog, velocity cut,
dead-man, thermal model) keeps its guarantees at every supported rate."""

from __future__ import annotations

import itertools
import math
import socket
import time
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from agent_fixtures import running_agent

from gym_raas.backends.robot import RobotBackend, RobotSessionError
from gym_raas.params import PendulumParams
from gym_raas.protocol import FrameReader, ProtocolError, decode_message, encode_frame, encode_message
from raas_node.agent.agent import RobotAgent
from raas_node.agent.recorder import read_trajectory
from raas_node.agent.safety import SafetyLayer, SafetyLimits
from raas_node.drivers.sim_driver import SimDriver

RATES = (20.0, 50.0, 100.0)


@pytest.fixture(scope="module")
def agent() -> Iterator[RobotAgent]:
    with running_agent(SimDriver(PendulumParams()), robot="pendulum-rates") as running:
        yield running


def exchange_hello(agent: RobotAgent, payload: bytes) -> dict[str, Any]:
    """Send one raw hello frame; the agent's first answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(10)
        connection.connect(str(agent.config.socket_path))
        connection.sendall(encode_frame(payload))
        answer = FrameReader(connection).read()
        assert answer is not None
        reply = decode_message(answer)
        if reply["type"] == "welcome":
            connection.sendall(encode_frame(encode_message("close", version=reply["v"])))
        return reply


# --- the protocol ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rate", [b"0", b"-20", b"1000000000", b"NaN", b"Infinity", b"1e400", b'"fast"', b"true", b"[50]"]
)
def test_a_version_2_hello_with_a_rate_no_robot_could_run_is_a_protocol_error(rate: bytes) -> None:
    with pytest.raises(ProtocolError) as refused:
        decode_message(b'{"type": "hello", "v": 2, "token": "t", "control_hz": ' + rate + b"}")
    assert refused.value.code in ("range", "schema")


def test_a_version_1_hello_cannot_carry_a_rate() -> None:
    with pytest.raises(ProtocolError, match="unexpected field"):
        decode_message(b'{"type": "hello", "v": 1, "token": "t", "control_hz": 50}')


@pytest.mark.parametrize(("rate", "code"), [(b"0", "range"), (b"NaN", "range"), (b"-50", "range"), (b"33", None)])
def test_the_agent_refuses_a_bad_or_unsupported_rate_and_keeps_the_job_expected(
    agent: RobotAgent, rate: bytes, code: str | None
) -> None:
    token = agent.expect("job-bad-rate")
    reply = exchange_hello(
        agent, b'{"type":"hello","v":2,"token":"' + token.encode() + b'","control_hz":' + rate + b"}"
    )
    assert reply["type"] == "error"
    if code is None:
        assert reply["code"] == "unsupported-rate"
        assert "20, 50, 100" in reply["message"]
    else:
        assert reply["code"] == code
    assert agent.current_job() is None
    reply = exchange_hello(agent, encode_message("hello", token=token, control_hz=50.0))
    assert reply["type"] == "welcome"
    assert reply["control_hz"] == 50.0
    assert reply["dt"] == pytest.approx(0.02)
    assert agent.wait_session("job-bad-rate", timeout_s=30) is not None


def test_a_version_1_client_runs_at_20_hz_even_when_the_robot_offers_more(agent: RobotAgent) -> None:
    token = agent.expect("job-old-client")
    welcome = exchange_hello(agent, encode_message("hello", version=1, token=token))
    assert welcome["v"] == 1
    assert welcome["dt"] == pytest.approx(0.05)
    assert "control_hz" not in welcome
    result = agent.wait_session("job-old-client", timeout_s=30)
    assert result is not None
    assert result.control_period_s == pytest.approx(0.05)


def test_the_rate_the_platform_expects_a_job_at_is_the_sessions_rate(agent: RobotAgent) -> None:
    backend = RobotBackend(str(agent.config.socket_path), token=agent.expect("job-expected-50", control_hz=50.0))
    assert backend.params.control_period_s == pytest.approx(0.02)
    backend.close()
    with pytest.raises(ValueError, match="does not run at 33 Hz"):
        agent.expect("job-expected-33", control_hz=33.0)


# --- sessions at each rate through the env ---------------------------------------------------------


def gaps_in_periods(times: list[float], period: float) -> list[float]:
    return [(later - earlier) / period for earlier, later in itertools.pairwise(times)]


@pytest.mark.parametrize("rate", [50.0, 100.0])
def test_a_session_at_a_faster_rate_spaces_its_observations_by_the_period(
    agent: RobotAgent, rate: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = f"job-{rate:g}-hz"
    monkeypatch.setenv("RAAS_AGENT_SOCKET", str(agent.config.socket_path))
    monkeypatch.setenv("RAAS_SESSION_TOKEN", agent.expect(job))
    monkeypatch.setenv("RAAS_CONTROL_HZ", f"{rate:g}")  # as the platform sets it for the job
    env = gym.make("RaasPendulum-v0")
    assert env.unwrapped.dt == pytest.approx(1.0 / rate)  # type: ignore[attr-defined]
    env.reset()
    boundaries = [env.step(np.array([0.2], dtype=np.float32))[4]["boundary_time"] for _ in range(30)]
    env.close()
    result = agent.wait_session(job, timeout_s=30)
    assert result is not None
    assert result.control_period_s == pytest.approx(1.0 / rate)
    assert result.trajectory_path is not None
    rows = read_trajectory(result.trajectory_path)
    # Each reply is the reading of a boundary, a whole number of periods after the previous one
    # (one, unless the client was late), and so is every recorded row.
    for gaps in (gaps_in_periods(boundaries, 1.0 / rate), gaps_in_periods(list(rows["time_s"]), 1.0 / rate)):
        assert all(gap >= 1.0 - 1e-6 and abs(gap - round(gap)) < 1e-6 for gap in gaps)


# --- safety at every rate: the safety layer alone ----------------------------------------------------


def layer(**limits: float) -> SafetyLayer:
    return SafetyLayer(SafetyLimits(**limits), max_command=2.0)


def run_for(safety: SafetyLayer, seconds: float, rate: float, command: float = 2.0) -> list[float]:
    return [safety.filter(command, 0.0, 0.0, 1.0 / rate).duty for _ in range(round(seconds * rate))]


@pytest.mark.parametrize("rate", RATES)
def test_the_winding_temperature_after_some_seconds_does_not_depend_on_the_rate(rate: float) -> None:
    safety = layer()
    run_for(safety, 10.0, rate)
    heated = safety.temperature_celsius
    run_for(safety, 30.0, rate, command=0.0)
    reference = layer()
    reference.filter(2.0, 0.0, 0.0, 10.0)  # the same 10 s in one step
    assert heated == pytest.approx(reference.temperature_celsius, rel=1e-9)
    reference.filter(0.0, 0.0, 0.0, 30.0)
    assert safety.temperature_celsius == pytest.approx(reference.temperature_celsius, rel=1e-9)


@pytest.mark.parametrize("rate", RATES)
def test_a_sustained_overload_stops_the_motor_after_the_same_time_at_every_rate(rate: float) -> None:
    safety = layer(heating_celsius_per_s_at_full_duty=40.0)
    duties = run_for(safety, 30.0, rate)
    stopped_after_s = duties.index(0.0) / rate
    reference = layer(heating_celsius_per_s_at_full_duty=40.0)
    reference_duties = run_for(reference, 30.0, 1000.0)
    assert stopped_after_s == pytest.approx(reference_duties.index(0.0) / 1000.0, abs=0.5)
    assert safety.hot


@pytest.mark.parametrize("rate", RATES)
def test_the_watchdog_trips_after_the_same_silence_at_every_rate(rate: float) -> None:
    safety = layer()
    silences = [index / rate for index in range(1, round(0.5 * rate))]
    tripped = [silence for silence in silences if "watchdog" in safety.filter(2.0, 0.0, silence, 1.0 / rate).events]
    assert tripped
    assert 0.2 < tripped[0] <= 0.2 + 1.0 / rate  # the first boundary past 200 ms of silence


@pytest.mark.parametrize("rate", RATES)
def test_the_velocity_cut_and_its_hysteresis_do_not_depend_on_the_rate(rate: float) -> None:
    safety = layer(velocity_limit_rad_per_s=10.0)
    speeds = [5.0, 11.0, 9.0, 9.0, 7.0]
    duties = [safety.filter(2.0, speed, 0.0, 1.0 / rate).duty for speed in speeds]
    assert duties == [pytest.approx(1.0), 0.0, 0.0, 0.0, pytest.approx(1.0)]


def test_an_overheated_motor_cools_between_sessions_and_is_usable_again() -> None:
    safety = layer(heating_celsius_per_s_at_full_duty=40.0)
    run_for(safety, 30.0, 20.0)
    assert safety.hot
    for _ in range(300 * 20):  # five idle minutes: boundaries outside any session
        safety.rest(0.0, 0.05)
    assert not safety.hot
    assert safety.temperature_celsius < 60.0


# --- safety at every rate: inside the agent ----------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
def test_at_every_rate_the_agent_feeds_the_deadman_and_the_watchdog_stops_a_silent_client(rate: float) -> None:
    driver = SimDriver(PendulumParams())
    with running_agent(driver, robot="pendulum-wd") as agent:
        backend = RobotBackend(str(agent.config.socket_path), token=agent.expect("job-wd"), control_hz=rate)
        backend.reset(np.random.default_rng(), None)
        for _ in range(round(0.5 * rate)):
            backend.step(1.0)
        time.sleep(0.6)  # the client goes quiet, its connection open
        backend.close()
        result = agent.wait_session("job-wd", timeout_s=30)
        assert result is not None
        assert result.trajectory_path is not None
        rows = read_trajectory(result.trajectory_path)
        assert driver.deadman_trips == 0  # fed at every boundary, at every rate
    assert result.control_period_s == pytest.approx(1.0 / rate)
    driven = [t for t, duty in zip(rows["time_s"], rows["applied_duty"], strict=True) if duty != 0.0]
    commanded = [t for t, requested in zip(rows["time_s"], rows["requested_command"], strict=True)
                 if requested is not None]  # fmt: skip
    events = [t for t, kinds in zip(rows["time_s"], rows["safety_events"], strict=True) if "watchdog" in kinds]
    assert events  # the watchdog tripped
    assert max(driven) <= max(commanded) + 0.2 + 1.0 / rate + 1e-6  # and the motor stopped by then


@pytest.mark.parametrize("rate", RATES)
def test_at_every_rate_the_velocity_cut_stops_a_pendulum_driven_too_fast(rate: float) -> None:
    limits = SafetyLimits(velocity_limit_rad_per_s=1.5)
    with running_agent(SimDriver(PendulumParams()), robot="pendulum-fast", limits=limits) as agent:
        backend = RobotBackend(str(agent.config.socket_path), token=agent.expect("job-fast"), control_hz=rate)
        backend.reset(np.random.default_rng(), None)
        readings = [backend.step(2.0) for _ in range(round(1.0 * rate))]
        backend.close()
        result = agent.wait_session("job-fast", timeout_s=30)
    assert result is not None
    assert result.safety_events.get("velocity", 0) > 0
    assert result.outcome == "safety_stop"
    for reading in readings:  # whenever the cut is in force, the motor is off
        info = reading.info or {}
        if "velocity" in info["safety"]:
            assert info["applied_command"] == 0.0
    assert all(math.isfinite(reading.theta_dot_rad_per_s) for reading in readings)


def test_a_robot_session_error_names_the_rates_the_robot_offers(agent: RobotAgent) -> None:
    with pytest.raises(RobotSessionError, match="ask for one of 20, 50, 100 Hz"):
        RobotBackend(str(agent.config.socket_path), token=agent.expect("job-33"), control_hz=33.0, wait_s=0)
