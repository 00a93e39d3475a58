"""Fixtures of the robot node tests: virtual rigs (pigpiod-compatible servers) on 127.0.0.1.

Trap (see TESTING.md): stop every pigpio client (``pi.stop()`` / ``driver.close()``) before the
rig stops; a client whose notification socket is closed under it spins at 100% CPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from raas_node.drivers.config import PigpioDriverConfig
from raas_node.virtual_rig import VirtualRig

logger = logging.getLogger(__name__)


@pytest.fixture
def virtual_rig_factory() -> Iterator[Callable[..., VirtualRig]]:
    """Start virtual rigs with your own physics or wiring; all are stopped after the test.

    ``make(**kwargs)`` passes its arguments to `VirtualRig` (``params``, ``wiring``,
    ``initial_theta_rad``, ...), always on 127.0.0.1 with a free port, and returns the started
    rig (``rig.host``, ``rig.port``).
    """
    rigs: list[VirtualRig] = []

    def make(**kwargs: Any) -> VirtualRig:
        rig = VirtualRig(host="127.0.0.1", port=0, **kwargs).start()
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        deadline = time.monotonic() + 1.0  # the rig sees closed sockets a moment later
        while rig.state().clients and time.monotonic() < deadline:
            time.sleep(0.005)
        clients = rig.state().clients
        if clients:
            logger.warning(
                "%d pigpio client(s) still connected to the virtual rig at teardown: call pi.stop()", clients
            )
        rig.stop()


@pytest.fixture
def virtual_rig(virtual_rig_factory: Callable[..., VirtualRig]) -> VirtualRig:
    """A running virtual rig: reference-rig physics, default `RigWiring`, pendulum hanging at rest.

    It listens on ``rig.host``:``rig.port`` (127.0.0.1, a free port) and speaks pigpiod's protocol:
    connect with ``pigpio.pi(rig.host, rig.port)`` or ``PigpioDriver(PigpioDriverConfig(host=rig.host,
    port=rig.port))`` — or use the ``rig_driver_config`` fixture. Inspect the ground truth with
    ``rig.state()`` (angle, speed, encoder count, motor duty, per-pin PWM duty and change times,
    clients, running scripts), ``rig.encoder_count_at(t)`` and ``rig.motor_duty_log()``; move the
    pendulum by hand with ``rig.place(theta_rad, theta_dot)``. Times are `time.monotonic` seconds.
    Stopped after the test: stop your pigpio clients first.
    """
    return virtual_rig_factory()


@pytest.fixture
def rig_driver_config(virtual_rig: VirtualRig) -> PigpioDriverConfig:
    """A `PigpioDriverConfig` pointing at the ``virtual_rig`` fixture (default wiring and PWM)."""
    return PigpioDriverConfig(host=virtual_rig.host, port=virtual_rig.port, wiring=virtual_rig.wiring)
