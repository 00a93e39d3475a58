"""Helpers to run a robot agent in tests (imported by the agent test modules)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gym_raas.params import PendulumParams
from raas_node.agent.agent import SUPPORTED_CONTROL_HZ, AgentConfig, AgentState, RobotAgent
from raas_node.agent.safety import SafetyLimits
from raas_node.drivers.base import RobotDriver


@contextmanager
def running_agent(
    driver: RobotDriver,
    *,
    limits: SafetyLimits | None = None,
    robot: str = "pendulum-t1",
    actuation: str = "arrival",
    supported_control_hz: tuple[float, ...] = SUPPORTED_CONTROL_HZ,
) -> Iterator[RobotAgent]:
    """An agent on a socket in a short /tmp folder (Unix socket paths are limited to 107 bytes),
    idle (first reset done) when yielded, stopped afterwards; `actuation` and
    `supported_control_hz` as in `AgentConfig`."""
    folder = Path(tempfile.mkdtemp(prefix="raas-agent-"))
    config = AgentConfig(
        robot=robot, socket_path=folder / "agent.sock", recordings_dir=folder / "recordings",
        limits=limits or SafetyLimits(), actuation=actuation, supported_control_hz=supported_control_hz,
    )  # fmt: skip
    agent = RobotAgent(driver, config).start()
    try:
        wait_for_state(agent, AgentState.IDLE, 15)
        yield agent
    finally:
        agent.stop()
        driver.close()
        shutil.rmtree(folder, ignore_errors=True)


def wait_for_state(agent: RobotAgent, state: AgentState, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while agent.state is not state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"agent stayed {agent.state.value}, expected {state.value}")
        time.sleep(0.02)


def reference_params() -> PendulumParams:
    return PendulumParams()
