"""The ``sim`` backend: the rig simulator, stepped as fast as the caller asks."""

from __future__ import annotations

from typing import Any

import numpy as np

from gym_raas.backends.base import Reading
from gym_raas.params import PendulumParams
from gym_raas.simulator import HANGING_RAD, PendulumSimulator

RESTING_JITTER_RAD = 0.02
"""Half-width of the uniform spread of the start angle and speed around hanging at rest: what
the robot agent's reset leaves within its stillness tolerance."""


class SimBackend:
    """One simulated pendulum behind the `PendulumBackend` seam.

    Starting states (``initial_state`` or ``options["initial_state"]`` at reset):

    * ``"hanging"`` (default, like the robot after its reset): θ = π ± 0.02 rad, θ̇ = ±0.02 rad/s.
    * ``"random"`` (like Gymnasium's Pendulum): θ ~ U[-π, π], θ̇ ~ U[-1, 1] rad/s.

    ``options={"theta": ..., "theta_dot": ...}`` sets an exact start (rad, rad/s).
    """

    def __init__(self, params: PendulumParams, initial_state: str = "hanging") -> None:
        _check_initial_state(initial_state)
        self.params = params
        self.initial_state = initial_state
        self.simulator = PendulumSimulator(params)

    def reset(self, rng: np.random.Generator, options: dict[str, Any] | None) -> Reading:
        options = options or {}
        mode = options.get("initial_state", self.initial_state)
        _check_initial_state(mode)
        if mode == "random":
            theta, theta_dot = rng.uniform(-np.pi, np.pi), rng.uniform(-1.0, 1.0)
        else:
            theta = HANGING_RAD + rng.uniform(-RESTING_JITTER_RAD, RESTING_JITTER_RAD)
            theta_dot = rng.uniform(-RESTING_JITTER_RAD, RESTING_JITTER_RAD)
        theta = float(options.get("theta", theta))
        theta_dot = float(options.get("theta_dot", theta_dot))
        if not (np.isfinite(theta) and np.isfinite(theta_dot)):
            raise ValueError(f"initial theta and theta_dot must be finite, got {theta}, {theta_dot}")
        self.simulator.reset(rng, theta, theta_dot)
        return self._reading()

    def step(self, command: float) -> Reading:
        self.simulator.step(command)
        return self._reading()

    def _reading(self) -> Reading:
        simulator = self.simulator
        return Reading(simulator.measured_theta, simulator.measured_theta_dot, None)

    def close(self) -> None:
        """Nothing to release."""


def _check_initial_state(mode: str) -> None:
    if mode not in ("hanging", "random"):
        raise ValueError(f"initial_state must be 'hanging' or 'random', got {mode!r}")
