"""The real robot agent, killed in the middle of a session, leaves the motor stopped in 200 ms.

The agent (RobotAgent + pigpio driver) runs as its own process against the virtual rig; a
client drives the motor at full command through a session; the agent is SIGKILLed while the
command is applied. The rig (where pigpiod's dead-man script runs) measures the stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gym_raas.backends.robot import RobotBackend, RobotSessionError
from raas_node.virtual_rig import VirtualRig

AGENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from raas_node.agent.agent import AgentConfig, RobotAgent
    from raas_node.drivers.config import PigpioDriverConfig
    from raas_node.drivers.pigpio_driver import PigpioDriver
    folder = Path(sys.argv[2])
    driver = PigpioDriver(PigpioDriverConfig(host="127.0.0.1", port=int(sys.argv[1])))
    agent = RobotAgent(driver, AgentConfig("pendulum-kill", folder / "a.sock", folder / "rec")).start()
    while agent.state.value != "idle":
        time.sleep(0.02)
    agent.expect("job-kill", token="kill-token")
    print("ready", flush=True)
    time.sleep(600)
    """
)


def test_killing_the_agent_mid_session_stops_the_motor_within_200_ms(virtual_rig: VirtualRig) -> None:
    folder = Path(tempfile.mkdtemp(prefix="raas-kill-"))
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(virtual_rig.port), str(folder)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert agent.stdout is not None
        assert agent.stdout.readline().strip() == "ready"
        backend = RobotBackend(str(folder / "a.sock"), token="kill-token")
        backend.reset(np.random.default_rng(), None)
        for _ in range(4):
            backend.step(backend.params.max_command)
        assert virtual_rig.state().motor_duty > 0.9  # the user's full command reaches the motor
        killed_at = virtual_rig.clock()
        os.kill(agent.pid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while virtual_rig.state().motor_duty != 0.0 and time.monotonic() < deadline:
            time.sleep(0.002)
        state = virtual_rig.state()
        assert state.motor_duty == 0.0
        assert 0.0 < state.last_motor_duty_change_s - killed_at <= 0.2
        with pytest.raises(RobotSessionError, match=r"lost the robot agent|ended the session"):
            backend.step(0.0)
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait()
        if agent.stdout is not None:
            agent.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)
