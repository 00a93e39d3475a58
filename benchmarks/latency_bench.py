"""Actuation latency: a command reaching the motor on arrival, against the earlier boundary rule.

A prompt client (`gym_raas.backends.robot.RobotBackend`) runs a session at 100 Hz with a robot
agent on the simulated driver for 60 s (``--quick``: 10 s), once under each rule:

* command sent → duty applied at the driver, p50 / p99 (the client's monotonic time before its
  step, against the agent's recorded ``applied_at_s``; the same clock on one machine);
* actuation latency (boundary of the answered reading → duty applied), p50 / p99;
* deadline misses over the run.

Goals (issue 17): p99 send → applied ≤ 2 ms on an idle machine, 0 misses at 100 Hz; the boundary
rule's figure is a whole period (10 ms at 100 Hz, 50 ms at 20 Hz).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import Report
from gym_raas.backends.robot import RobotBackend
from gym_raas.params import PendulumParams
from raas_node.agent.agent import AgentConfig, AgentState, RobotAgent
from raas_node.agent.recorder import read_trajectory
from raas_node.drivers.sim_driver import SimDriver

SECTION = "Actuation latency (raas_node agent)"
CONTROL_HZ = 100.0


def session(actuation: str, seconds: float) -> dict[str, float]:
    """One session at `CONTROL_HZ` under `actuation`; figures in milliseconds and counts."""
    folder = Path(tempfile.mkdtemp(prefix="raas-latbench-"))
    driver = SimDriver(PendulumParams())
    config = AgentConfig(
        robot="bench-latency", socket_path=folder / "a.sock", recordings_dir=folder / "rec", actuation=actuation
    )
    agent = RobotAgent(driver, config).start()
    try:
        deadline = time.monotonic() + 30
        while agent.state is not AgentState.IDLE and time.monotonic() < deadline:
            time.sleep(0.02)
        backend = RobotBackend(str(config.socket_path), agent.expect("bench"), control_hz=CONTROL_HZ)
        backend.reset(np.random.default_rng(0), None)
        sent: list[float] = []
        steps = int(seconds * CONTROL_HZ)
        for index in range(steps):
            sent.append(time.monotonic())
            backend.step(0.3 if (index // 50) % 2 else -0.3)
        backend.close()
        result = agent.wait_session("bench", timeout_s=60)
        if result is None or result.trajectory_path is None:
            raise RuntimeError(f"the {actuation} session left no recording")
        rows = read_trajectory(result.trajectory_path)
    finally:
        agent.stop()
        driver.close()
    fresh = [index for index, requested in enumerate(rows["requested_command"]) if requested is not None]
    applied = np.array([result.started_monotonic_s + rows["applied_at_s"][index] for index in fresh])
    to_driver = (applied - np.array(sent[: len(applied)]))[1:] * 1e3  # the first waits on the client's start
    actuation_ms = np.array([rows["actuation_latency_s"][index] for index in fresh][1:]) * 1e3
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "send_p50": float(np.percentile(to_driver, 50)),
        "send_p99": float(np.percentile(to_driver, 99)),
        "actuation_p50": float(np.percentile(actuation_ms, 50)),
        "actuation_p99": float(np.percentile(actuation_ms, 99)),
        "misses": float(result.deadline_misses),
        "steps": float(result.steps),
    }


def _run(report: Report, seconds: float) -> None:
    report.section(SECTION)
    for actuation, goal_send, goal_misses in (("arrival", "p99 ≤ 2 ms", "0"), ("boundary", "(earlier rule)", "")):
        figures = session(actuation, seconds)
        label = f"{actuation} rule, {CONTROL_HZ:.0f} Hz, {seconds:.0f} s"
        report.figure(
            SECTION,
            f"{label}: command sent → duty at driver p50 / p99",
            f"{figures['send_p50']:.2f} / {figures['send_p99']:.2f} ms",
            goal_send,
        )
        report.figure(
            SECTION,
            f"{label}: actuation latency (boundary → driver) p50 / p99",
            f"{figures['actuation_p50']:.2f} / {figures['actuation_p99']:.2f} ms",
        )
        misses = f"{figures['misses']:.0f} / {figures['steps']:.0f}"
        report.figure(SECTION, f"{label}: deadline misses / steps", misses, goal_misses)


def run(report: Report) -> None:
    _run(report, 60.0)


def run_quick(report: Report) -> None:
    _run(report, 10.0)
