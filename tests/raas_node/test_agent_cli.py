"""``raas-agent run`` as a process: it comes up, serves metrics, and stops cleanly on SIGTERM; in a
cluster (the real control plane with the chart installed, the agent logged in with the chart's agent
ServiceAccount token) it names its robot after its node's label and reads its settings from the
environment."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from controlplane.chart_install import AGENT, JOBS, clear_chart_namespaces, token_for, token_kubeconfig
from controlplane.cluster import ControlPlane
from kubernetes import client

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
