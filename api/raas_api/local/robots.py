"""The local platform's robots: each a rig of its own, simulated or behind a virtual pigpio rig.

``sim`` (the default) drives `SimDriver`, physics inside the driver. ``virtual-rig`` starts a
pigpiod-compatible `VirtualRig` per robot on a free loopback port and drives it through the real
`pigpio` client (`PigpioDriver`): the same code path as a Raspberry Pi, dead-man script included.

Distinct robots. A robot's physics (its *truth*, `robot_truth`) is the platform's reference rig
with the parameters of `ROBOT_SPREAD` drawn from a generator seeded by a hash of the robot's
name: the same name is always the same rig, and the rigs of a platform differ within the spread
of real rigs (`gym_raas.randomization.DEFAULT_RANGES`). What the robot publishes, hands to its
jobs and records with every session is its *calibration* (`robot_calibration`), never its truth:
the robot's recordings of the calibration experiments (`gym_raas.sysid.standard_experiments`,
sampled at the control period with the jitter of the agent's loop) fitted by
`gym_raas.sysid.fit_params` from the reference rig, as ``raas-agent calibrate`` fits a real
robot. So a robot's calibration is close to its truth but not equal to it, and the sim-to-real
gap of a job is a real one. The driver reports the calibration as its ``params``, as a real
robot's driver does, while the physics underneath runs the truth.

A fit takes a few seconds per robot, so each is done once: remembered for the process, and
stored in `cache_dir` (`calibration_cache_dir`: shared by every platform on the machine, so a
second ``raas serve`` or a test's platform starts at once) as a calibration file named after the
robot and a hash of everything the fit depends on (a cached file is what that fit gives).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from gym_raas import sysid
from gym_raas.params import CalibrationError, PendulumParams, load_calibration
from gym_raas.randomization import DEFAULT_RANGES, params_digest, rig_around
from raas_node.drivers.base import RobotDriver
from raas_node.drivers.config import PigpioDriverConfig
from raas_node.drivers.pigpio_driver import PigpioDriver
from raas_node.drivers.sim_driver import SimDriver
from raas_node.virtual_rig.server import VirtualRig

log = logging.getLogger(__name__)

CALIBRATION_CACHE_VARIABLE = "RAAS_CALIBRATION_CACHE"


def calibration_cache_dir() -> Path:
    """``$RAAS_CALIBRATION_CACHE`` when set, else ``~/.cache/raas/calibrations``."""
    configured = os.environ.get(CALIBRATION_CACHE_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "raas" / "calibrations"


ROBOT_SPREAD = {name: spread for name, spread in DEFAULT_RANGES.items() if name != "actuation_latency_s"}
"""How local robots differ from the reference: the default randomisation set without the
latency, which on a local robot is the agent's real timing, not a model parameter (the simulated
physics applies a duty the moment the driver gets it)."""

CALIBRATION_METHOD = "local-robots/v1"
"""Part of the cache key: change it when the recording or the fit of local robots changes."""

_SAMPLE_JITTER_S = 0.002
"""The agent's control loop samples each control period within about ±2 ms on a busy machine."""


class RobotKind(str, Enum):
    """How the local platform's robots are made."""

    SIM = "sim"
    VIRTUAL_RIG = "virtual-rig"


@dataclass
class LocalRobot:
    """One robot's driver, its virtual rig when it has one, and its true physics."""

    name: str
    driver: RobotDriver
    rig: VirtualRig | None = None
    truth: PendulumParams | None = None
    """The physics the robot runs (what no real robot can tell); its calibration is ``driver.params``."""

    def close(self) -> None:
        """Close the driver first (a pigpio client must stop before its daemon), then the rig."""
        with contextlib.suppress(Exception):
            self.driver.close()
        if self.rig is not None:
            self.rig.stop()


class DistinctSimDriver(SimDriver):
    """`SimDriver` running a robot's true physics while reporting its calibration as ``params``."""

    def __init__(self, truth: PendulumParams, calibration: PendulumParams) -> None:
        super().__init__(truth)
        self.truth = truth
        self.params = calibration


def robot_truth(name: str, reference: PendulumParams) -> PendulumParams:
    """The physics of robot `name`: `reference` with `ROBOT_SPREAD` drawn from the name's hash."""
    return rig_around(reference, name, ROBOT_SPREAD)


def robot_calibration(
    name: str, truth: PendulumParams, reference: PendulumParams, cache_dir: Path | None = None
) -> PendulumParams:
    """What the calibration routine fits on robot `name` whose physics is `truth`, starting from
    `reference` (remembered for the process; read from and written to `cache_dir` if given)."""
    if cache_dir is None:
        return _fitted(name, truth, reference).params
    path = cache_dir / f"{_safe(name)}-{_cache_key(name, truth, reference)}.json"
    with contextlib.suppress(CalibrationError):
        return load_calibration(path)
    result = _fitted(name, truth, reference)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    sysid.write_calibration(result, partial, robot=name)
    os.replace(partial, path)
    return result.params


@functools.lru_cache(maxsize=64)
def _fitted(name: str, truth: PendulumParams, reference: PendulumParams) -> sysid.FitResult:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"calibration:{name}".encode()).digest()[:8], "little"))
    period = reference.control_period_s
    recordings = [
        sysid.simulate_experiment(
            truth,
            experiment,
            rng,
            sample_interval_s=(period - _SAMPLE_JITTER_S, period + _SAMPLE_JITTER_S),
            initial_theta_dot_rad_per_s=float(rng.uniform(-0.02, 0.02)),
        )
        for experiment in sysid.standard_experiments(reference)
    ]
    result = sysid.fit_params(recordings, initial=reference)
    log.info("calibrated local robot %s: fit error %.4f rad", name, result.rmse_rad)
    return result


def _cache_key(name: str, truth: PendulumParams, reference: PendulumParams) -> str:
    text = f"{CALIBRATION_METHOD}|{name}|{params_digest(truth)}|{params_digest(reference)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]


def make_robots(
    names: Sequence[str], kind: RobotKind, params: PendulumParams, *, cache_dir: Path | None = None
) -> dict[str, LocalRobot]:
    """`make_robot` for each name, every calibration fitted (or read from the cache) before the
    first driver starts, so that the robots come up together; on an error none is left running."""
    for name in names:
        robot_calibration(name, robot_truth(name, params), params, cache_dir)
    robots: dict[str, LocalRobot] = {}
    try:
        for name in names:
            robots[name] = make_robot(name, kind, params, cache_dir=cache_dir)
    except BaseException:
        for robot in robots.values():
            robot.close()
        raise
    return robots


def make_robot(name: str, kind: RobotKind, params: PendulumParams, *, cache_dir: Path | None = None) -> LocalRobot:
    """A ready driver for robot `name`, a rig of its own around the reference `params`, whose
    ``driver.params`` is its fitted calibration (cached in `cache_dir`, see the module docstring)."""
    truth = robot_truth(name, params)
    calibration = robot_calibration(name, truth, params, cache_dir)
    if kind is RobotKind.SIM:
        return LocalRobot(name, DistinctSimDriver(truth, calibration), truth=truth)
    rig = VirtualRig(truth, host="127.0.0.1", port=0).start()
    try:
        driver = PigpioDriver(PigpioDriverConfig(host=rig.host, port=rig.port), calibration)
    except BaseException:
        rig.stop()
        raise
    return LocalRobot(name, driver, rig, truth=truth)
