"""The agent keeps its Robot object in the cluster: created with its spec, heartbeated, following
the lab's maintenance flag, and indifferent to an API server that goes away.

A real `RobotAgent` on the simulated driver talks to the real control plane (``tests/conftest.py``,
charts/raas installed once per session) through the official client, as the agent's own
ServiceAccount (``raas-robots/raas-agent``, a TokenRequest token): the chart's RBAC, the Robot
CRD's schema, defaults and status subresource are the API server's. The lab's writes (a Robot's
spec, its maintenance flag and limits) go as the cluster admin, the bookings as the operator's
ServiceAccount, as in a cluster. The documents the agent writes are also validated here against
the pydantic model the operator reads them with and the CRD's ``openAPIV3Schema`` (jsonschema):
the server prunes unknown fields silently, this says which. Robots are cluster-wide and the
session's control plane is shared: every test's Robots are named ``hb-...`` and deleted after it.
An API server that goes away is a TCP relay to the real one (`Relay`), closed under the agent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from agent_fixtures import running_agent, wait_for_state
from controlplane.chart_install import AGENT, OPERATOR, ServiceAccountClient, token_for, token_kubeconfig
from controlplane.cluster import ControlPlane
from crd_validation import schema_errors
from kubernetes import client
from polling import wait_until

from gym_raas.backends.robot import RobotBackend, RobotSessionError
from gym_raas.params import PendulumParams
from gym_raas.protocol.tokens import session_token
from gym_raas.results.layout import session_key
from gym_raas.results.store import FilesystemResultStore, ResultNotFoundError
from raas_node.agent.agent import AgentState, RobotAgent
from raas_node.agent.cluster import (
    BOOKING_ANNOTATION,
    BOOKING_ATTEMPT_ANNOTATION,
    BOOKING_RATE_ANNOTATION,
    GROUP,
    PLURAL,
    VERSION,
    RobotHeartbeat,
    robot_phase,
)
from raas_node.agent.health import RobotHealth
from raas_node.agent.safety import SafetyLimits
from raas_node.cli import main as agent_cli
from raas_node.drivers.sim_driver import SimDriver
from raas_operator.crds import robot_crd
from raas_operator.robots.model import Robot, RobotPhase

pytestmark = pytest.mark.slow

INTERVAL_S = 0.2
PREFIX = "hb-"
"""Every Robot of these tests is named so, and deleted after its test."""


@pytest.fixture
def api(raas_chart: ControlPlane, service_account_client: ServiceAccountClient) -> Iterator[client.CustomObjectsApi]:
    """The agent's client: the agent's ServiceAccount. The test's Robots are deleted after it."""
    yield client.CustomObjectsApi(service_account_client(AGENT))
    with raas_chart.api_client() as admin:
        objects = client.CustomObjectsApi(admin)
        listed: dict[str, Any] = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)  # type: ignore[assignment]
        for item in listed["items"]:
            if item["metadata"]["name"].startswith(PREFIX):
                objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, item["metadata"]["name"])


@pytest.fixture
def lab(raas_chart: ControlPlane) -> Iterator[client.CustomObjectsApi]:
    """The lab's client (the cluster admin): Robot specs, maintenance flags, limits."""
    with raas_chart.api_client() as admin:
        yield client.CustomObjectsApi(admin)


@pytest.fixture
def operator(service_account_client: ServiceAccountClient) -> client.CustomObjectsApi:
    """The operator's client (its ServiceAccount): it books jobs on Robots."""
    return client.CustomObjectsApi(service_account_client(OPERATOR))


@pytest.fixture
def agent(request: pytest.FixtureRequest) -> Iterator[RobotAgent]:
    """An idle agent named after the test (each test has its own Robot)."""
    name = PREFIX + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    with running_agent(SimDriver(PendulumParams()), robot=name) as running:
        yield running


def heartbeat(agent: RobotAgent, api: client.CustomObjectsApi) -> RobotHeartbeat:
    return RobotHeartbeat(agent, api, robot=agent.config.robot, node="pi-node-1", interval_s=INTERVAL_S)


def get_robot(api: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    document: dict[str, Any] = api.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)  # type: ignore[assignment]
    return document


def phase_of(api: client.CustomObjectsApi, name: str) -> str | None:
    try:
        phase: str | None = get_robot(api, name).get("status", {}).get("phase")
    except client.ApiException:
        return None
    return phase


def wait_for_phase(api: client.CustomObjectsApi, name: str, phase: str, timeout_s: float = 10.0) -> dict[str, Any]:
    assert wait_until(lambda: phase_of(api, name) == phase, timeout_s, 0.05), f"{name} is {phase_of(api, name)}"
    return get_robot(api, name)


def crd_schema_errors(document: dict[str, Any]) -> list[str]:
    """What the API server's schema check would find wrong with a Robot document."""
    return schema_errors(robot_crd(), document)


def assert_valid(document: dict[str, Any]) -> Robot:
    """The Robot as the cluster holds it passes the CRD schema and the pydantic model."""
    assert crd_schema_errors(document) == []
    return Robot.model_validate(
        {"name": document["metadata"]["name"], "spec": document["spec"], "status": document.get("status", {})}
    )


def test_the_robot_is_created_with_the_agents_spec_and_becomes_ready(
    agent: RobotAgent, api: client.CustomObjectsApi
) -> None:
    name = agent.config.robot
    with heartbeat(agent, api):
        document = wait_for_phase(api, name, "Ready")
    assert document["kind"] == "Robot"
    assert document["metadata"]["labels"] == {"raas.dev/robot": name}
    assert document["spec"] == {
        "node_name": "pi-node-1",
        "robot_type": "pendulum",
        "maintenance": False,
        "limits": {"max_command": 2.0, "max_speed_rad_per_s": 25.0, "watchdog_ms": 200, "thermal_limit_celsius": 85.0},
        "calibration": pytest.approx(PendulumParams().to_dict()),
    }
    robot = assert_valid(document)
    assert robot.status.phase is RobotPhase.READY
    assert robot.status.current_job is None
    assert robot.status.jobs_completed == 0
    assert robot.status.health.reasons == ()
    assert robot.status.health.encoder_ok is True
    assert robot.status.health.last_reset_ok is True
    assert robot.status.health.motor_temperature_celsius == pytest.approx(25.0, abs=1.0)
    assert robot.accepts_jobs(datetime.now(timezone.utc))


def test_a_spec_the_lab_wrote_is_never_overwritten_and_the_job_count_carries_on(
    agent: RobotAgent, api: client.CustomObjectsApi, lab: client.CustomObjectsApi
) -> None:
    """The server fills the limits the lab left out with the CRD's defaults (the emulator stored
    the spec as sent): the spec compared is the one the server stored for the lab."""
    name = agent.config.robot
    admin_spec = {
        "node_name": "pi-lab-7",
        "robot_type": "pendulum",
        "maintenance": False,
        "limits": {"watchdog_ms": 50},
    }
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Robot", "metadata": {"name": name}, "spec": admin_spec}
    created: dict[str, Any] = lab.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)  # type: ignore[assignment]
    lab_spec = created["spec"]
    assert {key: lab_spec[key] for key in admin_spec if key != "limits"} == {
        key: value for key, value in admin_spec.items() if key != "limits"
    }
    assert lab_spec["limits"]["watchdog_ms"] == 50  # (not the agent's 200)
    lab.patch_cluster_custom_object_status(GROUP, VERSION, PLURAL, name, {"status": {"jobs_completed": 41}})
    beat = heartbeat(agent, api)
    assert beat.beat_once()
    assert beat.beat_once()
    document = get_robot(api, name)
    assert document["spec"] == lab_spec
    assert document["status"]["phase"] == "Ready"
    assert document["status"]["jobs_completed"] == 41


def test_a_session_makes_the_robot_busy_with_its_job_then_resetting_then_ready(
    agent: RobotAgent, api: client.CustomObjectsApi
) -> None:
    name = agent.config.robot
    beat = heartbeat(agent, api)  # beats by hand, at the moments that matter
    assert beat.beat_once()
    assert get_robot(api, name)["status"]["phase"] == "Ready"

    backend = RobotBackend(str(agent.config.socket_path), token=agent.expect("job-hb-1"))
    backend.reset(np.random.default_rng(0), None)
    backend.step(0.5)
    assert beat.beat_once()
    busy = get_robot(api, name)
    assert busy["status"]["phase"] == "Busy"
    assert busy["status"]["current_job"] == "raas/job-hb-1"
    assert "robot is busy" in busy["status"]["health"]["reasons"]
    live = busy["status"]["live"]  # the session as of this beat, for the web page's live view
    assert live["steps"] == 1
    assert live["time_s"] >= 0
    assert isinstance(live["theta_rad"], float)
    assert_valid(busy)

    backend.close()
    assert agent.wait_session("job-hb-1", timeout_s=30) is not None
    assert beat.beat_once()  # the reset takes at least half a second of stillness
    resetting = get_robot(api, name)
    assert resetting["status"]["phase"] == "Resetting"
    assert "current_job" not in resetting["status"]
    assert "live" not in resetting["status"]
    assert resetting["status"]["jobs_completed"] == 1
    assert_valid(resetting)

    assert agent.wait_reset("job-hb-1", timeout_s=30) is not None
    wait_for_state(agent, AgentState.IDLE, 10)
    assert beat.beat_once()
    ready = get_robot(api, name)
    assert ready["status"]["phase"] == "Ready"
    assert ready["status"]["jobs_completed"] == 1
    assert_valid(ready)


def test_the_labs_maintenance_flag_takes_the_robot_out_and_back(
    agent: RobotAgent, api: client.CustomObjectsApi, lab: client.CustomObjectsApi
) -> None:
    name = agent.config.robot
    with heartbeat(agent, api):
        wait_for_phase(api, name, "Ready")
        lab.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, {"spec": {"maintenance": True}})
        wait_for_state(agent, AgentState.MAINTENANCE, 5)
        document = wait_for_phase(api, name, "Maintenance")
        robot = assert_valid(document)
        assert not robot.accepts_jobs(datetime.now(timezone.utc))
        token = agent.expect("job-refused")
        with pytest.raises(RobotSessionError, match="maintenance"):
            RobotBackend(str(agent.config.socket_path), token=token).reset(np.random.default_rng(0), None)
        agent.cancel("job-refused")

        lab.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, {"spec": {"maintenance": False}})
        wait_for_state(agent, AgentState.IDLE, 15)  # after a reset
        assert_valid(wait_for_phase(api, name, "Ready"))


class Relay:
    """A TCP relay on 127.0.0.1 to the API server at `port`: the API server as the agent reaches
    it, lost for real (connections reset, then refused) when the relay is `close`d. TLS passes
    through untouched (the server's certificate names 127.0.0.1)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            downstream.setblocking(True)
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._sockets += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Refuse new connections and reset the open ones."""
        self._closed.set()
        self.listener.close()
        with self._lock:
            for open_socket in self._sockets:
                with contextlib.suppress(OSError):
                    open_socket.shutdown(socket.SHUT_RDWR)
                open_socket.close()


def test_an_unreachable_api_server_does_not_crash_the_agent_and_beats_resume(
    agent: RobotAgent,
    raas_chart: ControlPlane,
    api: client.CustomObjectsApi,
    lab: client.CustomObjectsApi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The emulator-era test lost a second emulator and then pointed the client at the first; here
    the agent reaches the real API server through a relay that is closed under it, and the
    client is then pointed at the API server itself (``api`` only names the agent's ServiceAccount
    and cleans up)."""
    name = agent.config.robot
    caplog.set_level(logging.INFO, logger="raas_node.agent.cluster")
    relay = Relay(raas_chart.api_port)
    api_client = raas_chart.api_client(token_for(raas_chart, *AGENT))
    api_client.configuration.host = relay.url
    relayed = client.CustomObjectsApi(api_client)
    beat = heartbeat(agent, relayed).start()
    try:
        try:
            wait_for_phase(relayed, name, "Ready")
        finally:
            relay.close()
        # the API server is gone
        time.sleep(6 * INTERVAL_S)
        assert beat.running
        assert agent.state is AgentState.IDLE
        warnings = [
            record
            for record in caplog.records
            if record.name == "raas_node.agent.cluster" and record.levelno >= logging.WARNING
        ]
        assert len(warnings) == 1, [record.getMessage() for record in warnings]
        assert "cannot heartbeat Robot" in warnings[0].getMessage()
        beats = beat.beats

        api_client.configuration.host = raas_chart.server  # the API server is back
        assert_valid(wait_for_phase(lab, name, "Ready"))
        assert wait_until(lambda: beat.beats > beats + 1, 5)
        assert any("resumed" in record.getMessage() for record in caplog.records)
    finally:
        beat.stop()
        api_client.close()  # type: ignore[no-untyped-call]


def test_the_heartbeat_advances_while_the_agent_beats_and_goes_stale_when_it_stops(
    agent: RobotAgent, api: client.CustomObjectsApi
) -> None:
    name = agent.config.robot

    def last_heartbeat() -> datetime | None:
        document = get_robot(api, name) if phase_of(api, name) else None
        return None if document is None else assert_valid(document).status.last_heartbeat

    with heartbeat(agent, api):
        assert wait_until(lambda: last_heartbeat() is not None, 10, 0.05)
        first = last_heartbeat()
        assert first is not None
        assert first.tzinfo is not None
        assert abs(datetime.now(timezone.utc) - first) < timedelta(seconds=5)
        assert wait_until(lambda: (last_heartbeat() or first) > first, 5, 0.05)
    stopped_at = last_heartbeat()
    time.sleep(3 * INTERVAL_S)
    assert last_heartbeat() == stopped_at
    robot = assert_valid(get_robot(api, name))
    assert robot.heartbeat_is_stale(datetime.now(timezone.utc), timeout=timedelta(seconds=2 * INTERVAL_S))


def health(state: str, reasons: tuple[str, ...] = ()) -> RobotHealth:
    return RobotHealth(
        ready=not reasons and state == "idle", state=state, reasons=reasons, encoder_ok=True, encoder_glitches=0,
        motor_temperature_celsius=30.0, last_reset_ok=True, last_reset_duration_s=1.0,
    )  # fmt: skip


def test_the_phase_says_unhealthy_for_a_fault_or_an_idle_robot_with_a_health_problem() -> None:
    assert robot_phase(health("idle"), maintenance=False) == "Ready"
    assert robot_phase(health("idle", ("motor too hot (90 °C): cooling down",)), maintenance=False) == "Unhealthy"
    assert robot_phase(health("fault", ("robot is fault",)), maintenance=False) == "Unhealthy"
    assert robot_phase(health("busy", ("robot is busy",)), maintenance=False) == "Busy"
    assert robot_phase(health("resetting", ("robot is resetting",)), maintenance=False) == "Resetting"
    assert robot_phase(health("maintenance", ("robot is maintenance",)), maintenance=False) == "Maintenance"
    assert robot_phase(health("busy", ("robot is busy",)), maintenance=True) == "Maintenance"


def test_custom_safety_limits_go_into_the_spec_of_a_new_robot(api: client.CustomObjectsApi) -> None:
    limits = SafetyLimits(max_duty=0.5, velocity_limit_rad_per_s=12.0, watchdog_timeout_s=0.1, stop_celsius=70.0)
    with running_agent(SimDriver(PendulumParams()), robot="hb-custom-limits", limits=limits) as agent:
        assert heartbeat(agent, api).beat_once()
    document = get_robot(api, "hb-custom-limits")
    assert document["spec"]["limits"] == {
        "max_command": 1.0, "max_speed_rad_per_s": 12.0, "watchdog_ms": 100, "thermal_limit_celsius": 70.0,
    }  # fmt: skip
    assert_valid(document)


def test_kubernetes_mode_needs_the_node_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        agent_cli(["run", "--robot", "pendulum-x", "--driver", "sim", "--kubernetes"])
    assert exit_info.value.code == 2
    assert "NODE_NAME" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_raas_agent_run_with_kubernetes_heartbeats_its_robot_from_the_kubeconfig(
    raas_chart: ControlPlane, api: client.CustomObjectsApi
) -> None:
    """``raas-agent run --kubernetes`` outside a pod logs in from its kubeconfig: here one holding
    the agent ServiceAccount's token, as the DaemonSet's projected token would be."""
    folder = Path(tempfile.mkdtemp(prefix="raas-hb-"))
    kubeconfig = token_kubeconfig(raas_chart, folder / "kubeconfig", token_for(raas_chart, *AGENT))
    environment = {key: value for key, value in os.environ.items() if not key.startswith("KUBERNETES_SERVICE")}
    environment.update(KUBECONFIG=str(kubeconfig), NODE_NAME="pi-node-cli")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "raas_node.cli", "run", "--robot", "hb-cli", "--driver", "sim",
            "--socket", str(folder / "agent.sock"), "--recordings", str(folder / "rec"),
            "--metrics-host", "127.0.0.1", "--metrics-port", str(free_port()),
            "--kubernetes", "--heartbeat-interval", str(INTERVAL_S),
        ],
        env=environment,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        document = wait_for_phase(api, "hb-cli", "Ready", timeout_s=30)
        assert document["spec"]["node_name"] == "pi-node-cli"
        assert_valid(document)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def test_the_lab_can_tighten_a_robots_limits_from_its_spec_but_never_loosen_them(
    api: client.CustomObjectsApi, lab: client.CustomObjectsApi
) -> None:
    own = SafetyLimits(velocity_limit_rad_per_s=12.0, stop_celsius=70.0)
    with running_agent(SimDriver(PendulumParams()), robot="hb-tighten", limits=own) as agent:
        beat = heartbeat(agent, api)
        assert beat.beat_once()
        assert agent.limits == own  # the spec it wrote itself changes nothing

        def set_limits(**limits: float) -> None:
            lab.patch_cluster_custom_object(
                "raas.dev", "v1alpha1", "robots", "hb-tighten", {"spec": {"limits": limits}}
            )
            assert beat.beat_once()

        set_limits(max_speed_rad_per_s=5.0, thermal_limit_celsius=60.0)
        assert agent.limits.velocity_limit_rad_per_s == 5.0
        assert (agent.limits.stop_celsius, agent.limits.throttle_celsius, agent.limits.resume_celsius) == (60, 55, 50)
        # (looser than the node's envelope, within the CRD's bounds: the server refuses beyond them)
        set_limits(max_speed_rad_per_s=100.0, thermal_limit_celsius=150.0, max_command=10.0, watchdog_ms=5000)
        assert agent.limits == own  # looser than the node's own envelope: the node's stands


SESSION_KEY = b"test-session-key"


def book(operator: client.CustomObjectsApi, robot: str, job: str | None, attempt: int | None) -> None:
    """What the operator writes on the Robot it gives a job (as the operator's ServiceAccount)."""
    annotations = {BOOKING_ANNOTATION: job, BOOKING_ATTEMPT_ANNOTATION: None if attempt is None else str(attempt)}
    operator.patch_cluster_custom_object(GROUP, VERSION, PLURAL, robot, {"metadata": {"annotations": annotations}})


def run_steps(agent: RobotAgent, job: str, steps: int) -> None:
    backend = RobotBackend(str(agent.config.socket_path), token=session_token(SESSION_KEY, agent.config.robot, job))
    backend.reset(np.random.default_rng(0), None)
    for _ in range(steps):
        backend.step(0.2)
    backend.close()


def session_record(results: FilesystemResultStore, job: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(results.get_bytes(session_key(job))))
    except ResultNotFoundError:
        return None


def test_a_booked_job_the_robot_turns_away_gets_a_refused_session_record(
    agent: RobotAgent, api: client.CustomObjectsApi, operator: client.CustomObjectsApi, tmp_path: Path
) -> None:
    name, results = agent.config.robot, FilesystemResultStore(tmp_path / "results")
    beat = RobotHeartbeat(agent, api, robot=name, node="pi-1", session_key=SESSION_KEY, results=results)
    assert beat.beat_once()
    book(operator, name, "job-turned-away", 1)
    assert beat.beat_once()  # the agent reads the booking
    agent.set_maintenance(True)  # (as the lab's flag would, between the booking and the job's hello)
    with pytest.raises(RobotSessionError, match="maintenance"):
        run_steps(agent, "job-turned-away", 1)
    assert beat.beat_once()
    record = session_record(results, "job-turned-away")
    assert record is not None
    assert (record["outcome"], record["robot"], record["steps"]) == ("refused", name, 0)
    assert "maintenance" in record["message"]


def test_a_retry_booked_on_the_same_robot_is_a_new_session_even_unseen_in_between(
    agent: RobotAgent, api: client.CustomObjectsApi, operator: client.CustomObjectsApi, tmp_path: Path
) -> None:
    """The operator frees the robot and books the job's retry on it again between two beats: the
    agent sees the attempt change, expects the job again and uploads the new session's record."""
    name, results = agent.config.robot, FilesystemResultStore(tmp_path / "results")
    beat = RobotHeartbeat(agent, api, robot=name, node="pi-1", session_key=SESSION_KEY, results=results)
    assert beat.beat_once()
    book(operator, name, "job-twice", 1)
    assert beat.beat_once()
    run_steps(agent, "job-twice", 3)
    assert agent.wait_session("job-twice", timeout_s=30) is not None
    assert beat.beat_once()  # starts the upload
    assert wait_until(lambda: (session_record(results, "job-twice") or {}).get("steps") == 3, timeout_s=60)
    assert agent.wait_reset("job-twice", timeout_s=30) is not None

    book(operator, name, "job-twice", 2)  # no beat saw the booking freed in between
    assert beat.beat_once()
    run_steps(agent, "job-twice", 7)
    assert agent.wait_session("job-twice", timeout_s=30) is not None
    assert beat.beat_once()
    assert wait_until(lambda: (session_record(results, "job-twice") or {}).get("steps") == 7, timeout_s=60)


class RefusingStore(FilesystemResultStore):
    """A result store that refuses every write (as an S3 server with a wrong policy would)."""

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        raise PermissionError(f"AccessDenied: {key}")


def test_a_refusal_the_store_will_not_take_never_stops_the_heartbeat(
    agent: RobotAgent, api: client.CustomObjectsApi, operator: client.CustomObjectsApi, tmp_path: Path
) -> None:
    name = agent.config.robot
    beat = RobotHeartbeat(
        agent, api, robot=name, node="pi-1", session_key=SESSION_KEY, results=RefusingStore(tmp_path / "results")
    )
    assert beat.beat_once()
    book(operator, name, "job-unstored", 1)
    assert beat.beat_once()
    agent.set_maintenance(True)
    with pytest.raises(RobotSessionError, match="maintenance"):
        run_steps(agent, "job-unstored", 1)
    assert beat.beat_once()  # the report failed (and is tried again next beat); the status went out
    assert beat.beat_once()
    assert get_robot(api, name)["status"]["phase"] == "Maintenance"


def test_the_robot_advertises_its_rates_and_a_booking_sets_the_sessions_rate(
    agent: RobotAgent, api: client.CustomObjectsApi, operator: client.CustomObjectsApi, tmp_path: Path
) -> None:
    """The status lists the rates the agent runs (the scheduler places jobs by them); the booked
    job's rate, when the operator writes it, is the session's rate even for a client asking none."""
    name, results = agent.config.robot, FilesystemResultStore(tmp_path / "results")
    beat = RobotHeartbeat(agent, api, robot=name, node="pi-1", session_key=SESSION_KEY, results=results)
    assert beat.beat_once()
    robot = assert_valid(get_robot(api, name))
    assert robot.status.supported_control_hz == (20.0, 50.0, 100.0)
    assert robot.supports_control_hz(50.0)
    assert not robot.supports_control_hz(33.0)
    operator.patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, name,
        {"metadata": {"annotations": {BOOKING_ANNOTATION: "job-fast", BOOKING_ATTEMPT_ANNOTATION: "1",
                                      BOOKING_RATE_ANNOTATION: "100"}}},
    )  # fmt: skip
    assert beat.beat_once()
    run_steps(agent, "job-fast", 3)
    result = agent.wait_session("job-fast", timeout_s=30)
    assert result is not None
    assert result.control_period_s == pytest.approx(0.01)
