"""Robot agent: protocol round trip, 50 Hz control-loop timing, and the agent's memory.

* Protocol round trip: a step frame encoded, sent over a Unix socket pair, decoded, answered
  with an observation frame and decoded again (the per-step cost of the protocol itself).
* Reply latency: in a real session, from the agent's clock boundary to the client holding the
  reading.
* Control loop at 50 Hz for 60 s (``--quick``: 10 s) with a prompt client: loop timing (boundary
  to duty applied, i.e. the jitter of actuation against the ideal clock) p99, and deadline misses.
* Resident memory of an agent process (sim driver) after serving a session and writing its
  recording, read from /proc.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from benchmarks.report import Report
from gym_raas.backends.robot import RobotBackend
from gym_raas.params import PendulumParams
from gym_raas.protocol import FrameReader, decode_message, encode_frame, encode_message
from raas_node.agent.agent import AgentConfig, AgentState, RobotAgent
from raas_node.agent.recorder import read_trajectory
from raas_node.drivers.sim_driver import SimDriver

SECTION = "Robot agent (raas_node)"


def _percentile(values: list[float], percent: float) -> float:
    return float(np.percentile(np.asarray(values), percent))


def protocol_round_trip(count: int = 20_000) -> list[float]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left_reader, right_reader = FrameReader(left), FrameReader(right)
    observation = {
        "theta": 3.14, "theta_dot": 0.0, "step": 1, "boundary_time": 0.05, "late_by": 0.0,
        "deadline_misses": 0, "applied": 0.5, "safety": [],
    }  # fmt: skip
    timings = []
    for _ in range(count):
        start = time.perf_counter()
        left.sendall(encode_frame(encode_message("step", action=0.5)))
        decode_message(right_reader.read() or b"")
        right.sendall(encode_frame(encode_message("observation", **observation)))
        decode_message(left_reader.read() or b"")
        timings.append(time.perf_counter() - start)
    left.close()
    right.close()
    return timings


def control_loop(seconds: float) -> dict[str, float]:
    """An agent at 50 Hz with a prompt client for `seconds`."""
    params = PendulumParams(control_period_s=0.02, physics_substeps=4, actuation_latency_s=0.02)
    folder = Path(tempfile.mkdtemp(prefix="raas-bench-"))
    agent = RobotAgent(SimDriver(params), AgentConfig("bench", folder / "a.sock", folder / "rec")).start()
    deadline = time.monotonic() + 15
    while agent.state is not AgentState.IDLE and time.monotonic() < deadline:
        time.sleep(0.02)
    backend = RobotBackend(str(agent.config.socket_path), token=agent.expect("bench"))
    backend.reset(np.random.default_rng(), None)
    received: list[tuple[float, float]] = []
    steps = int(seconds / params.control_period_s)
    for _ in range(steps):
        reading = backend.step(0.0)
        received.append((time.monotonic(), float(reading.info["boundary_time"])))  # type: ignore[index]
    backend.close()
    result = agent.wait_session("bench", timeout_s=60)
    agent.stop()
    if result is None or result.trajectory_path is None:
        raise RuntimeError("the benchmark session left no recording")
    rows = read_trajectory(result.trajectory_path)
    loop = [value for value in rows["loop_latency_s"] if value is not None]
    replies = [now - (result.started_monotonic_s + boundary) for now, boundary in received]
    return {
        "loop_p99_us": _percentile(loop, 99) * 1e6,
        "loop_p50_us": _percentile(loop, 50) * 1e6,
        "reply_p50_us": _percentile(replies, 50) * 1e6,
        "reply_p99_us": _percentile(replies, 99) * 1e6,
        "misses": float(result.deadline_misses),
        "steps": float(result.steps),
    }


AGENT_PROCESS = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gym_raas.params import PendulumParams
    from raas_node.agent.agent import AgentConfig, RobotAgent
    from raas_node.drivers.sim_driver import SimDriver
    folder = Path(sys.argv[1])
    agent = RobotAgent(SimDriver(PendulumParams()), AgentConfig("rss", folder / "a.sock", folder / "rec")).start()
    agent.expect("rss", token="bench-token")
    print("ready", flush=True)
    agent.wait_session("rss", timeout_s=120)
    rss = [line for line in open("/proc/self/status") if line.startswith("VmRSS")][0].split()[1]
    print(rss, flush=True)
    agent.stop()
    """
)


def agent_rss_mb() -> float:
    folder = Path(tempfile.mkdtemp(prefix="raas-rss-"))
    process = subprocess.Popen([sys.executable, "-c", AGENT_PROCESS, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 20
    while True:
        try:
            backend = RobotBackend(str(folder / "a.sock"), token="bench-token")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    backend.reset(np.random.default_rng(), None)
    for _ in range(100):
        backend.step(0.5)
    backend.close()
    rss_kb = float(process.stdout.readline())
    process.wait(timeout=30)
    return rss_kb / 1024


def _run(report: Report, seconds: float) -> None:
    report.section(SECTION)
    round_trips = protocol_round_trip()
    report.figure(
        SECTION, "protocol round trip over a Unix socket, p50", f"{statistics.median(round_trips) * 1e6:.0f} µs"
    )
    report.figure(
        SECTION,
        "protocol round trip over a Unix socket, p99",
        f"{_percentile(round_trips, 99) * 1e6:.0f} µs",
        "< 1000 µs",
    )
    loop = control_loop(seconds)
    report.figure(SECTION, "boundary → client has the reading, p50 (session)", f"{loop['reply_p50_us']:.0f} µs")
    report.figure(
        SECTION, "boundary → client has the reading, p99 (session)", f"{loop['reply_p99_us']:.0f} µs", "< 1000 µs"
    )
    report.figure(
        SECTION,
        f"50 Hz loop over {seconds:.0f} s: jitter (boundary → duty applied) p99",
        f"{loop['loop_p99_us']:.0f} µs",
    )
    report.figure(SECTION, f"50 Hz loop over {seconds:.0f} s: deadline misses / steps",
                  f"{loop['misses']:.0f} / {loop['steps']:.0f}", "0")  # fmt: skip
    report.figure(SECTION, "agent resident memory after a session (sim driver)", f"{agent_rss_mb():.0f} MB", "< 80 MB")


def run(report: Report) -> None:
    _run(report, 60.0)


def run_quick(report: Report) -> None:
    _run(report, 10.0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run_quick(Report())
