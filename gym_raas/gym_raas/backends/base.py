"""The seam between the environment and whatever moves the pendulum.

The environment owns spaces, rewards and episode bookkeeping; a backend only turns commands
into sensor readings, one control period at a time. Two implementations:

* ``sim`` (`gym_raas.backends.sim.SimBackend`): the rig simulator, instantly.
* ``robot`` (`gym_raas.backends.robot.RobotBackend`): a real (or simulated-in-real-time) robot
  through the robot agent's session socket.

Selection rule (`select_backend_name`): an explicit ``backend=`` argument wins; otherwise the
robot backend is used exactly when the ``RAAS_AGENT_SOCKET`` environment variable is set, which
the platform does only inside a job on a robot.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np

from gym_raas.params import PendulumParams

AGENT_SOCKET_ENV = "RAAS_AGENT_SOCKET"
"""Environment variable holding the path of the robot agent's Unix socket inside a job."""

CONTROL_HZ_ENV = "RAAS_CONTROL_HZ"
"""Environment variable holding the job's control rate (Hz) inside a job: the platform sets it from
the job's ``control_hz``, and the robot backend asks the robot for that rate unless told another."""

BackendName = Literal["auto", "sim", "robot"]
BACKEND_NAMES: tuple[str, ...] = ("auto", "sim", "robot")


class Reading(NamedTuple):
    """Sensor values at the end of a control period (a tuple: it is built at every step)."""

    theta_rad: float
    """Angle from upright in [-π, π)."""
    theta_dot_rad_per_s: float
    """Angular speed estimated from encoder edge timing."""
    info: dict[str, Any] | None
    """Backend-specific extras merged into the env's ``info`` (e.g. timing on a robot)."""


class PendulumBackend(Protocol):
    """Moves one pendulum, one control period per `step`."""

    params: PendulumParams

    def reset(self, rng: np.random.Generator, options: dict[str, Any] | None) -> Reading:
        """Start an episode and return the first reading."""
        ...

    def step(self, command: float) -> Reading:
        """Apply a command (action units, already clipped to the action space) for one period."""
        ...

    def close(self) -> None:
        """Release resources; safe to call twice."""
        ...


def select_backend_name(requested: str, environ: dict[str, str] | None = None) -> Literal["sim", "robot"]:
    """Resolve ``"auto"`` to ``"sim"`` or ``"robot"`` by the rule in this module's docstring."""
    if requested not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got {requested!r}")
    if requested == "sim":
        return "sim"
    if requested == "robot":
        return "robot"
    variables = os.environ if environ is None else environ
    return "robot" if variables.get(AGENT_SOCKET_ENV) else "sim"


def job_control_hz(environ: dict[str, str] | None = None) -> float | None:
    """The job's control rate from `CONTROL_HZ_ENV` (None when unset, or not a finite positive
    number: then the robot's default rate applies)."""
    raw = (os.environ if environ is None else environ).get(CONTROL_HZ_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None
