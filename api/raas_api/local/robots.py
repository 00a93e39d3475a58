"""The local platform's robots: a simulated pendulum per robot, or a virtual pigpio rig.

``sim`` (the default) drives `SimDriver`, physics inside the driver. ``virtual-rig`` starts a
pigpiod-compatible `VirtualRig` per robot on a free loopback port and drives it through the real
`pigpio` client (`PigpioDriver`): the same code path as a Raspberry Pi, dead-man script included.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from enum import Enum

from gym_raas.params import PendulumParams
from raas_node.drivers.base import RobotDriver
from raas_node.drivers.config import PigpioDriverConfig
from raas_node.drivers.pigpio_driver import PigpioDriver
from raas_node.drivers.sim_driver import SimDriver
from raas_node.virtual_rig.server import VirtualRig


class RobotKind(str, Enum):
    """How the local platform's robots are made."""

    SIM = "sim"
    VIRTUAL_RIG = "virtual-rig"


@dataclass
class LocalRobot:
    """One robot's driver, and its virtual rig when it has one."""

    name: str
    driver: RobotDriver
    rig: VirtualRig | None = None

    def close(self) -> None:
        """Close the driver first (a pigpio client must stop before its daemon), then the rig."""
        with contextlib.suppress(Exception):
            self.driver.close()
        if self.rig is not None:
            self.rig.stop()


def make_robot(name: str, kind: RobotKind, params: PendulumParams) -> LocalRobot:
    """A ready driver for robot `name`."""
    if kind is RobotKind.SIM:
        return LocalRobot(name, SimDriver(params))
    rig = VirtualRig(params, host="127.0.0.1", port=0).start()
    try:
        driver = PigpioDriver(PigpioDriverConfig(host=rig.host, port=rig.port), params)
    except BaseException:
        rig.stop()
        raise
    return LocalRobot(name, driver, rig)
