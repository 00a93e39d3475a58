"""The robot agent's Prometheus metrics (prometheus-client), named per the project's style.

Event metrics are created once per `AgentMetrics` with a registry of its own (tests use a fresh
one and ``get_sample_value``); label values known in advance are pre-initialised so that rates
start at zero instead of appearing late. The robot's name is a label: one value per robot, a
bounded set. No per-job or per-user labels.
"""

from __future__ import annotations

import threading
import time
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import start_http_server

from raas_node.agent.safety import SAFETY_EVENTS

ROBOT_STATES = ("idle", "busy", "resetting", "fault", "maintenance")
SESSION_OUTCOMES = ("completed", "client_error", "protocol_error", "safety_stop", "cancelled", "agent_error")


class AgentMetrics:
    """All metrics of one robot agent."""

    def __init__(self, robot: str, registry: CollectorRegistry | None = None) -> None:
        self.robot = robot
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ["robot"]
        self.state = Gauge("raas_robot_state", "1 for the robot's current state, 0 for the others.",
                           [*labels, "state"], registry=self.registry)  # fmt: skip
        self.step_latency = Histogram(
            "raas_control_step_latency_seconds",
            "Time from a control-clock boundary to the motor command being applied.",
            labels,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=self.registry,
        )
        self.actuation_latency = Histogram(
            "raas_actuation_latency_seconds",
            "Time from the boundary of the reading a command answers to the command reaching the driver.",
            labels,
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=self.registry,
        )
        self.deadline_misses = Counter("raas_control_deadline_misses", "Boundaries at which the session's command "
                                       "had not arrived.", labels, registry=self.registry)  # fmt: skip
        self.sessions = Counter("raas_sessions", "Control sessions by outcome.", [*labels, "outcome"],
                                registry=self.registry)  # fmt: skip
        self.safety_trips = Counter("raas_safety_trips", "Commands changed or refused by the safety layer.",
                                    [*labels, "kind"], registry=self.registry)  # fmt: skip
        self.reset_duration = Histogram("raas_reset_duration_seconds", "Time to bring the pendulum to rest.",
                                        labels, buckets=(0.5, 1, 2, 5, 10, 20, 30), registry=self.registry)  # fmt: skip
        self.last_reset_ok = Gauge("raas_reset_last_success", "1 if the last reset succeeded.", labels,
                                   registry=self.registry)  # fmt: skip
        self.resets = Counter("raas_resets", "Resets by result.", [*labels, "result"], registry=self.registry)
        self.motor_duty = Gauge("raas_motor_duty_ratio", "Signed PWM duty applied to the motor.", labels,
                                registry=self.registry)  # fmt: skip
        self.motor_temperature = Gauge("raas_motor_temperature_celsius", "Estimated winding temperature (I²t model).",
                                       labels, registry=self.registry)  # fmt: skip
        self.encoder_stuck = Gauge("raas_encoder_stuck", "1 while the encoder shows no motion under drive.", labels,
                                   registry=self.registry)  # fmt: skip
        self.encoder_glitches = Counter("raas_encoder_glitches", "Impossible encoder jumps.", labels,
                                        registry=self.registry)  # fmt: skip
        self.info = Info("raas_robot", "Robot identity.", labels, registry=self.registry)
        self.last_boundary = Gauge("raas_control_last_boundary_timestamp_seconds", "Unix time of the control loop's "
                                   "last boundary (its liveness).", labels, registry=self.registry)  # fmt: skip
        self.last_boundary_s: float | None = None
        """Unix time of the control loop's last boundary (None before the first)."""
        for state in ROBOT_STATES:
            self.state.labels(robot, state).set(0)
        for outcome in SESSION_OUTCOMES:
            self.sessions.labels(robot, outcome)
        for kind in SAFETY_EVENTS:
            self.safety_trips.labels(robot, kind)
        for result in ("ok", "failed"):
            self.resets.labels(robot, result)
        self.deadline_misses.labels(robot)
        self.encoder_glitches.labels(robot)
        self.encoder_stuck.labels(robot).set(0)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def set_state(self, state: str) -> None:
        if state not in ROBOT_STATES:
            raise ValueError(f"unknown robot state {state!r}; known: {', '.join(ROBOT_STATES)}")
        for known in ROBOT_STATES:
            self.state.labels(self.robot, known).set(1 if known == state else 0)

    def observe_step_latency(self, seconds: float) -> None:
        """Account one control boundary (the agent calls this once per boundary): its latency, and
        the boundary's time as the control loop's liveness."""
        self.step_latency.labels(self.robot).observe(seconds)
        self.last_boundary_s = time.time()
        self.last_boundary.labels(self.robot).set(self.last_boundary_s)

    def observe_actuation_latency(self, seconds: float) -> None:
        """Account one step's actuation latency (the agent calls this once per command)."""
        self.actuation_latency.labels(self.robot).observe(seconds)

    def count_deadline_misses(self, count: int) -> None:
        if count:
            self.deadline_misses.labels(self.robot).inc(count)

    def count_session(self, outcome: str) -> None:
        if outcome not in SESSION_OUTCOMES:
            raise ValueError(f"unknown session outcome {outcome!r}")
        self.sessions.labels(self.robot, outcome).inc()

    def count_safety_trip(self, kind: str) -> None:
        if kind not in SAFETY_EVENTS:
            raise ValueError(f"unknown safety event {kind!r}")
        self.safety_trips.labels(self.robot, kind).inc()

    def observe_reset(self, duration_s: float, ok: bool) -> None:
        self.reset_duration.labels(self.robot).observe(duration_s)
        self.last_reset_ok.labels(self.robot).set(1 if ok else 0)
        self.resets.labels(self.robot, "ok" if ok else "failed").inc()

    def set_motor(self, duty: float, temperature_c: float) -> None:
        self.motor_duty.labels(self.robot).set(duty)
        self.motor_temperature.labels(self.robot).set(temperature_c)

    def set_encoder_health(self, stuck: bool) -> None:
        self.encoder_stuck.labels(self.robot).set(1 if stuck else 0)

    def count_encoder_glitch(self) -> None:
        self.encoder_glitches.labels(self.robot).inc()

    def robot_info(self, robot_type: str, driver: str, version: str) -> None:
        self.info.labels(self.robot).info({"type": robot_type, "driver": driver, "version": version})

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve /metrics over HTTP in a thread; returns the port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._thread = server, thread
        return int(server.server_port)

    def stop_serving(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
