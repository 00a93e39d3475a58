"""``raas-agent run`` as a process: it comes up, serves metrics, and stops cleanly on SIGTERM; in a
cluster (the real control plane with the chart installed, the agent logged in with the chart's agent
ServiceAccount token) it names its robot after its node's label and reads its settings from the
environment."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from controllers import steady_controller
from controlplane.chart_install import AGENT, JOBS, clear_chart_namespaces, token_for, token_kubeconfig
from controlplane.cluster import ControlPlane
from kubernetes import client

from gym_raas.params import PendulumParams, save_calibration
from gym_raas.protocol.tokens import session_token
from raas_node.agent.settings import ClusterSettings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_agent_process_serves_its_socket_and_metrics_and_stops_on_sigterm() -> None:
    folder = Path(tempfile.mkdtemp(prefix="raas-cli-"))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "raas_node.cli", "run", "--robot", "pendulum-cli", "--driver", "sim",
            "--socket", str(folder / "agent.sock"), "--recordings", str(folder / "rec"),
            "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
        ],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
                    body = response.read().decode()
                if 'raas_robot_state{robot="pendulum-cli",state="idle"} 1.0' in body:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert 'raas_robot_state{robot="pendulum-cli",state="idle"} 1.0' in body
        assert 'raas_robot_info{driver="sim"' in body
        assert (folder / "agent.sock").is_socket()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert not (folder / "agent.sock").exists()
    finally:
        if process.poll() is None:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cluster(raas_chart: ControlPlane) -> Iterator[ControlPlane]:
    """The chart's control plane without Robots before and after."""
    clear_chart_namespaces(raas_chart)
    yield raas_chart
    clear_chart_namespaces(raas_chart)


@contextlib.contextmanager
def node(cluster: ControlPlane, name: str, labels: dict[str, str]) -> Iterator[None]:
    """A Node object (as the admin; no kubelet behind it) for the span of the ``with``."""
    with cluster.api_client() as admin:
        core = client.CoreV1Api(admin)
        core.create_node({"metadata": {"name": name, "labels": labels}})
        try:
            yield
        finally:
            core.delete_node(name)


def agent_in_cluster(cluster: ControlPlane, folder: Path, node: str, **environment: str) -> subprocess.Popen[bytes]:
    """``raas-agent run --kubernetes`` as the DaemonSet runs it: no --robot, settings from the
    environment, the agent's ServiceAccount token."""
    kubeconfig = token_kubeconfig(cluster, folder / "kubeconfig", token_for(cluster, *AGENT))
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), NODE_NAME=node, **environment)
    return subprocess.Popen(
        [
            sys.executable, "-m", "raas_node.cli", "run", "--kubernetes", "--driver", "sim",
            "--socket", str(folder / "agent.sock"), "--recordings", str(folder / "rec"),
            "--metrics-host", "127.0.0.1", "--metrics-port", str(free_port()), "--heartbeat-interval", "0.2",
        ],
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_in_a_cluster_the_agent_takes_its_robot_name_from_its_nodes_label(
    cluster: ControlPlane, tmp_path: Path
) -> None:
    with node(cluster, "cli-pi-7", {"raas.dev/robot": "pendulum-7"}), cluster.api_client() as admin:
        process = agent_in_cluster(cluster, tmp_path, "cli-pi-7", RAAS_AGENT_JOB_NAMESPACE=JOBS)
        try:
            custom = client.CustomObjectsApi(admin)
            deadline = time.monotonic() + 20
            robot: dict[str, object] = {}
            while time.monotonic() < deadline and process.poll() is None:
                listing = custom.list_cluster_custom_object("raas.dev", "v1alpha1", "robots")["items"]
                robot = next((item for item in listing if (item.get("status") or {}).get("phase") == "Ready"), {})
                if robot:
                    break
                time.sleep(0.2)
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert robot["metadata"]["name"] == "pendulum-7"  # type: ignore[index]
            assert robot["spec"]["node_name"] == "cli-pi-7"  # type: ignore[index]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()


def test_on_a_node_without_a_robot_label_the_agent_refuses_to_start(cluster: ControlPlane, tmp_path: Path) -> None:
    with node(cluster, "cli-worker-1", {}):
        process = agent_in_cluster(cluster, tmp_path, "cli-worker-1")
        try:
            assert process.wait(timeout=20) != 0
            assert process.stderr is not None
            assert "node cli-worker-1 has no raas.dev/robot label" in process.stderr.read().decode()
        finally:
            if process.poll() is None:
                process.kill()


def test_the_cluster_settings_come_from_the_environment() -> None:
    settings = ClusterSettings.from_environment(
        {
            "RAAS_AGENT_SESSION_KEY": "k3y",
            "RAAS_AGENT_JOB_NAMESPACE": "raas-jobs",
            "RAAS_AGENT_S3_ENDPOINT": "minio:9000",
            "RAAS_AGENT_S3_SECURE": "false",
        }
    )
    assert settings.session_key == b"k3y"
    assert settings.job_namespace == "raas-jobs"
    assert settings.robot is None
    assert settings.s3_secure is False
    assert settings.result_store() is not None
    assert ClusterSettings.from_environment({}).result_store() is None
    assert ClusterSettings.from_environment({}).session_key is None
    with pytest.raises(ValueError, match="RAAS_AGENT_S3_SECURE"):
        ClusterSettings.from_environment({"RAAS_AGENT_S3_SECURE": "maybe"})


def test_the_wiring_is_set_on_the_command_line_and_an_impossible_one_is_refused(tmp_path: Path) -> None:
    from raas_node.cli import main
    from raas_node.drivers.config import BridgeMode, RigWiring
    from raas_node.drivers.wiring_arguments import add_wiring_arguments, wiring_from_arguments

    parser = argparse.ArgumentParser()
    add_wiring_arguments(parser)
    flags = ["--bridge-mode", "pwm_direction", "--pwm-pin", "18", "--direction-complement-pin", "-1"]
    wiring = wiring_from_arguments(parser.parse_args(flags))
    assert wiring == RigWiring(bridge_mode=BridgeMode.PWM_DIRECTION, pwm_pin=18, direction_complement_pin=None)
    assert wiring_from_arguments(parser.parse_args([])) == RigWiring()  # the reference wiring by default
    with pytest.raises(SystemExit) as refused:  # the encoder on a bridge pin: said before touching pigpiod
        main(["run", "--robot", "p", "--socket", str(tmp_path / "a.sock"), "--encoder-a-pin", "12"])
    assert refused.value.code == 2


def robot_phase(custom: client.CustomObjectsApi, name: str) -> str | None:
    try:
        robot = custom.get_cluster_custom_object("raas.dev", "v1alpha1", "robots", name)
    except client.exceptions.ApiException:
        return None
    return (robot.get("status") or {}).get("phase")  # type: ignore[no-any-return]


def start_booked_session(
    custom: client.CustomObjectsApi, folder: Path, robot: str, job: str, key: str, *, steps: int
) -> subprocess.Popen[bytes]:
    """Book `job` on `robot` as the operator does and start its controller (`steps` steps) as its
    job pod would, against the agent's socket in `folder`; returns once the session runs."""
    custom.patch_cluster_custom_object(
        "raas.dev", "v1alpha1", "robots", robot, {"metadata": {"annotations": {"raas.dev/booked-job": job}}}
    )
    (folder / "run.py").write_text(steady_controller(steps, torque=0.3))
    environment = dict(
        os.environ, RAAS_AGENT_SOCKET=str(folder / "agent.sock"), RAAS_JOB=job,
        RAAS_SESSION_TOKEN=session_token(key.encode(), robot, job),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:  # the agent expects the job from its next beat on: until then it refuses the session
        controller = subprocess.Popen(
            [sys.executable, str(folder / "run.py")], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        wait_until(
            lambda: controller.poll() is not None or robot_phase(custom, robot) == "Busy",  # noqa: B023
            60,
            "the session to start or be refused",
        )
        if controller.poll() is None:
            return controller
        assert time.monotonic() < deadline, controller.communicate()[1].decode()


def test_a_stopping_agent_drains_takes_no_new_job_and_lets_the_running_session_finish(
    cluster: ControlPlane, tmp_path: Path
) -> None:
    key, robot, job = "drain-test-key", "pendulum-8", "drained-job"
    with node(cluster, "cli-pi-8", {"raas.dev/robot": robot}), cluster.api_client() as admin:
        custom = client.CustomObjectsApi(admin)
        process = agent_in_cluster(
            cluster, tmp_path, "cli-pi-8", RAAS_AGENT_JOB_NAMESPACE=JOBS, RAAS_AGENT_SESSION_KEY=key
        )
        controller: subprocess.Popen[bytes] | None = None
        try:
            wait_until(lambda: robot_phase(custom, robot) == "Ready", 30, "the robot to be Ready")
            controller = start_booked_session(custom, tmp_path, robot, job, key, steps=400)  # 20 s at 20 Hz

            process.send_signal(signal.SIGTERM)  # a DaemonSet rollout

            wait_until(lambda: robot_phase(custom, robot) == "Maintenance", 10, "the robot to say it takes no job")
            assert controller.poll() is None, "the session was cut short"
            assert process.poll() is None, "the agent exited before its session ended"
            output, errors = controller.communicate(timeout=60)
            assert controller.returncode == 0, errors.decode()
            assert b"done after 400 steps" in output
            assert process.wait(timeout=30) == 0
        finally:
            for child in (controller, process):
                if child is not None and child.poll() is None:
                    child.kill()


def test_the_drain_timeout_must_be_a_sane_number_of_seconds(tmp_path: Path) -> None:
    for bad in ("-1", "nan", "7200"):
        refused = subprocess.run(
            [sys.executable, "-m", "raas_node.cli", "run", "--robot", "r", "--driver", "sim", "--drain-timeout", bad,
             "--socket", str(tmp_path / "a.sock")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert "--drain-timeout must be between 0 and 3600 seconds" in refused.stderr


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_in_a_cluster_the_robot_runs_and_records_the_calibration_in_its_state_folder(
    cluster: ControlPlane, tmp_path: Path
) -> None:
    # As the DaemonSet runs it: RAAS_AGENT_CALIBRATION names <stateDir>/calibration.json (issue 18, item 12).
    fitted = dataclasses.replace(
        PendulumParams(), natural_frequency_rad_per_s=4.7, motor_stall_acceleration_rad_per_s2=14.2
    )
    calibration = save_calibration(tmp_path / "calibration.json", fitted, robot="pendulum-9")
    key, robot, job = "calibration-test-key", "pendulum-9", "calibrated-job"
    with node(cluster, "cli-pi-9", {"raas.dev/robot": robot}), cluster.api_client() as admin:
        custom = client.CustomObjectsApi(admin)
        process = agent_in_cluster(
            cluster, tmp_path, "cli-pi-9", RAAS_AGENT_JOB_NAMESPACE=JOBS, RAAS_AGENT_SESSION_KEY=key,
            RAAS_AGENT_CALIBRATION=str(calibration),
        )  # fmt: skip
        controller: subprocess.Popen[bytes] | None = None
        try:
            wait_until(lambda: robot_phase(custom, robot) == "Ready", 30, "the robot to be Ready")
            spec = custom.get_cluster_custom_object("raas.dev", "v1alpha1", "robots", robot)["spec"]
            assert spec["calibration"]["natural_frequency_rad_per_s"] == 4.7
            assert spec["calibration"]["motor_stall_acceleration_rad_per_s2"] == 14.2
            controller = start_booked_session(custom, tmp_path, robot, job, key, steps=20)
            assert controller.wait(timeout=60) == 0, controller.communicate()[1].decode()
            wait_until(lambda: any((tmp_path / "rec").rglob("session.json")), 30, "the session's record")
            record = next((tmp_path / "rec").rglob("session.json"))
            recorded = json.loads(record.read_text())["calibration"]
            assert recorded["natural_frequency_rad_per_s"] == 4.7  # the session ran on, and recorded, the fit
            assert recorded["motor_stall_acceleration_rad_per_s2"] == 14.2
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            for child in (controller, process):
                if child is not None and child.poll() is None:
                    child.kill()
