"""``raas-agent run`` as a process: it comes up, serves metrics, and stops cleanly on SIGTERM."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


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
