"""The dead-man switch stops the motor within 200 ms when the agent dies or hangs.

The agent is a separate process running the real pigpio driver against the virtual rig; the rig
runs the driver's dead-man script in its daemon, as pigpiod does. Times are measured on the rig's
own clock (`time.monotonic` of this process, where the rig runs).
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from polling import wait_until as poll_until

from raas_node.drivers.config import PigpioDriverConfig
from raas_node.drivers.pigpio_driver import PigpioDriver
from raas_node.virtual_rig import VirtualRig

logger = logging.getLogger(__name__)

DEADLINE_S = 0.2
AGENT = """
import sys, time
from raas_node.drivers.config import PigpioDriverConfig
from raas_node.drivers.pigpio_driver import PigpioDriver

driver = PigpioDriver(PigpioDriverConfig(host="127.0.0.1", port=int(sys.argv[1])))
while True:  # the agent's control loop: feed, command, wait for the next period
    driver.feed_deadman()
    driver.apply_duty(1.0)
    print("driving", flush=True)
    time.sleep(0.02)
"""


@pytest.fixture
def agent(virtual_rig: VirtualRig) -> Iterator[subprocess.Popen[str]]:
    """An agent process driving the motor at full duty with the dead-man fed every 20 ms."""
    process = subprocess.Popen([sys.executable, "-c", AGENT, str(virtual_rig.port)], stdout=subprocess.PIPE, text=True)
    try:
        wait_for_output(process, "driving")
        assert wait_until(lambda: virtual_rig.state().motor_duty == 1.0)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def wait_for_output(process: subprocess.Popen[str], text: str, timeout_s: float = 15.0) -> None:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout=timeout_s) or text not in process.stdout.readline():
        raise AssertionError(f"the agent process did not start driving (exit status {process.poll()})")


def wait_until(condition: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    """Finer polling than the default: these tests time the motor stop."""
    return poll_until(condition, timeout_s, interval_s=0.002)


def stop_latency_after(rig: VirtualRig, event_time_s: float) -> float:
    """Seconds from ``event_time_s`` to the rig's motor duty dropping to zero (rig clock)."""
    assert wait_until(lambda: rig.state().motor_duty == 0.0), "the motor never stopped"
    return rig.state().last_motor_duty_change_s - event_time_s


def test_motor_keeps_running_while_the_agent_feeds_the_deadman(
    agent: subprocess.Popen[str], virtual_rig: VirtualRig
) -> None:
    started = virtual_rig.clock()
    time.sleep(0.5)  # several dead-man timeouts
    assert virtual_rig.state().motor_duty == 1.0
    assert virtual_rig.state().last_motor_duty_change_s < started


def test_motor_stops_within_200_ms_when_the_agent_process_is_killed(
    agent: subprocess.Popen[str], virtual_rig: VirtualRig
) -> None:
    time.sleep(0.3)
    killed_at = virtual_rig.clock()
    os.kill(agent.pid, signal.SIGKILL)
    latency = stop_latency_after(virtual_rig, killed_at)
    logger.info("deadman_stop_latency_after_kill_s = %.6g", latency)
    assert 0.0 < latency <= DEADLINE_S
    assert agent.wait(timeout=5) == -signal.SIGKILL


def test_motor_stops_within_200_ms_when_the_agent_process_hangs(
    agent: subprocess.Popen[str], virtual_rig: VirtualRig
) -> None:
    time.sleep(0.3)
    frozen_at = virtual_rig.clock()
    os.kill(agent.pid, signal.SIGSTOP)
    latency = stop_latency_after(virtual_rig, frozen_at)
    logger.info("deadman_stop_latency_after_hang_s = %.6g", latency)
    assert 0.0 < latency <= DEADLINE_S
    assert agent.poll() is None  # still there, only hung


def test_a_new_agent_removes_the_deadman_script_left_by_a_killed_one(
    agent: subprocess.Popen[str], virtual_rig: VirtualRig, rig_driver_config: PigpioDriverConfig
) -> None:
    agent.kill()
    agent.wait()
    assert virtual_rig.state().running_scripts == 1  # the dead agent's switch lives on in the daemon
    successor = PigpioDriver(rig_driver_config)
    try:
        assert virtual_rig.state().running_scripts == 1  # its own only
        successor.feed_deadman()
        successor.apply_duty(0.5)
        time.sleep(0.1)
        successor.feed_deadman()
        time.sleep(0.1)  # past the old script's timeout: it would have zeroed the bridge
        assert virtual_rig.state().motor_duty == pytest.approx(0.5, abs=0.01)
    finally:
        successor.close()


def test_an_agent_that_stops_feeding_loses_the_motor_and_can_see_why(
    rig_driver_config: PigpioDriverConfig, virtual_rig: VirtualRig
) -> None:
    robot = PigpioDriver(rig_driver_config)
    try:
        robot.feed_deadman()
        robot.apply_duty(-0.8)
        fed_at = virtual_rig.clock()
        latency = stop_latency_after(virtual_rig, fed_at)
        timeout, worst = robot.deadman_timeout_s, robot.config.deadman_worst_case_stop_s
        assert timeout - 0.01 <= latency <= worst + 0.03
        status = robot.deadman_status()
        assert status.running
        assert status.trips >= 1
    finally:
        robot.close()


def test_closing_after_the_notification_stream_died_still_disconnects(
    virtual_rig: VirtualRig, rig_driver_config: PigpioDriverConfig
) -> None:
    """pigpio's stop() sends on the notification socket first: if that socket is already closed
    (its thread saw the stream end), close() must not raise and must still close the command
    socket and remove the dead-man script (seen once in CI: EBADF from pigpio's stop)."""
    driver = PigpioDriver(rig_driver_config)
    assert virtual_rig.state().running_scripts == 1
    driver._pi._notify.sl.s.close()  # (pigpio's own attributes: what its thread does at the end)
    driver.close()
    assert driver._pi.sl.s is None  # the command socket closed
    assert virtual_rig.state().running_scripts == 0
