"""What the agent tells operators: Prometheus metrics (checked by a real Prometheus) and health."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from agent_fixtures import running_agent, wait_for_state
from prometheus_client import CollectorRegistry
from prometheus_server import running_prometheus

from gym_raas.params import PendulumParams
from raas_node.agent.agent import AgentConfig, AgentState, RobotAgent
from raas_node.agent.health import HealthMonitor
from raas_node.agent.metrics import AgentMetrics
from raas_node.agent.reset import ResetReport
from raas_node.drivers.base import SensorReading
from raas_node.drivers.sim_driver import SimDriver


def test_metrics_start_at_zero_and_count_what_happens() -> None:
    metrics = AgentMetrics("pendulum-1", registry=CollectorRegistry())
    sample = metrics.registry.get_sample_value
    labels = {"robot": "pendulum-1"}
    assert sample("raas_safety_trips_total", {**labels, "kind": "watchdog"}) == 0.0
    assert sample("raas_sessions_total", {**labels, "outcome": "completed"}) == 0.0
    metrics.set_state("busy")
    metrics.count_safety_trip("watchdog")
    metrics.count_session("completed")
    metrics.observe_step_latency(0.0004)
    metrics.observe_reset(2.5, ok=True)
    assert sample("raas_robot_state", {**labels, "state": "busy"}) == 1.0
    assert sample("raas_robot_state", {**labels, "state": "idle"}) == 0.0
    assert sample("raas_safety_trips_total", {**labels, "kind": "watchdog"}) == 1.0
    assert sample("raas_control_step_latency_seconds_bucket", {**labels, "le": "0.0005"}) == 1.0
    assert sample("raas_reset_last_success", labels) == 1.0
    with pytest.raises(ValueError, match="unknown robot state"):
        metrics.set_state("sleepy")


@pytest.mark.prometheus
def test_a_real_prometheus_scraping_the_agent_sees_the_robots_state() -> None:
    with running_agent(SimDriver(PendulumParams()), robot="pendulum-prom") as agent:
        port = agent.metrics.serve("127.0.0.1", 0)
        try:
            with running_prometheus([f"127.0.0.1:{port}"]) as prometheus:
                query = 'raas_robot_state{robot="pendulum-prom",state="idle"}'
                result = prometheus.query_until(query, lambda found: bool(found) and found[0]["value"][1] == "1")
                assert result[0]["metric"]["job"] == "raas"
                agent.set_maintenance(True)
                prometheus.query_until(
                    'raas_robot_state{robot="pendulum-prom",state="maintenance"}',
                    lambda found: bool(found) and found[0]["value"][1] == "1",
                )
                rate = prometheus.query_until(
                    'raas_control_step_latency_seconds_count{robot="pendulum-prom"}',
                    lambda found: bool(found) and float(found[0]["value"][1]) > 0,
                )
                assert float(rate[0]["value"][1]) > 10  # the control loop ticks at 20 Hz
        finally:
            agent.metrics.stop_serving()


def reading(time_s: float, count: int, theta_rad: float = math.pi) -> SensorReading:
    return SensorReading(time_s, count, theta_rad, 0.0, time_s)


def test_a_pendulum_held_still_by_the_motor_where_gravity_balances_it_is_not_stuck() -> None:
    params = PendulumParams()
    monitor = HealthMonitor(params)
    holding = math.pi + params.holding_angle_from_hanging_rad(1.0)  # full duty holds it here
    for index in range(60):
        monitor.observe(reading(index * 0.05, 80, holding), duty=1.0)
    assert not monitor.encoder_stuck


def test_an_encoder_that_does_not_move_under_drive_is_stuck_and_the_robot_not_ready() -> None:
    monitor = HealthMonitor(PendulumParams())
    for index in range(30):
        monitor.observe(reading(index * 0.05, 5), duty=0.8)  # hanging, 80 % duty: it must move
    health = monitor.summary(temperature_celsius=30.0, thermal_stop=False, last_reset=None, state="idle")
    assert monitor.encoder_stuck
    assert not health.ready
    assert "encoder stuck" in health.reasons[0]
    monitor.observe(reading(2.0, 9), duty=0.8)
    assert not monitor.encoder_stuck


def test_a_failed_reset_or_a_hot_motor_makes_the_robot_not_ready() -> None:
    monitor = HealthMonitor(PendulumParams())
    failed = ResetReport(False, 20.0, "the pendulum did not come to rest within 20 s")
    health = monitor.summary(temperature_celsius=30.0, thermal_stop=False, last_reset=failed, state="idle")
    assert not health.ready
    assert "reset failed" in health.reasons[0]
    hot = monitor.summary(temperature_celsius=86.0, thermal_stop=True, last_reset=None, state="idle")
    assert "too hot" in hot.reasons[0]


def test_impossible_encoder_jumps_count_as_glitches() -> None:
    monitor = HealthMonitor(PendulumParams())
    monitor.observe(reading(0.0, 0), 0.0)
    monitor.observe(reading(0.05, 400), 0.0)  # 400 counts in 50 ms: 105 rad/s
    assert monitor.glitches == 1


def test_an_agent_whose_reset_fails_is_in_fault_and_refuses_sessions() -> None:
    class StuckSwinging(SimDriver):
        """A robot whose pendulum never comes to rest (a broken brake, a shaking table)."""

        def read(self) -> SensorReading:
            real = super().read()
            return SensorReading(real.time_s, real.encoder_count, real.theta_rad, 3.0, real.last_edge_time_s)

    driver = StuckSwinging(PendulumParams())
    folder = Path(tempfile.mkdtemp(prefix="raas-agent-"))
    agent = RobotAgent(driver, AgentConfig("pendulum-bad", folder / "a.sock", folder / "rec", reset_timeout_s=1.0))
    agent.start()
    try:
        wait_for_state(agent, AgentState.FAULT, 10)
        health = agent.health()
        assert not health.ready
        assert health.last_reset_ok is False
    finally:
        agent.stop()
