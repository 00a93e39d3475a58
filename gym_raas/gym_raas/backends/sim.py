"""The ``sim`` backend: the rig simulator, stepped as fast as the caller asks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gym_raas.backends.base import Reading
from gym_raas.params import PendulumParams
from gym_raas.simulator import HANGING_RAD, PendulumSimulator

Latency = float | tuple[float, float] | Callable[[np.random.Generator], float] | None
"""A fixed actuation latency (s), a (low, high) range drawn uniformly at each step, or a function
of the env's random generator called at each step; None: the calibration's."""

RESTING_JITTER_RAD = 0.02
"""Half-width of the uniform spread of the start angle and speed around hanging at rest: what
the robot agent's reset leaves within its stillness tolerance."""


class SimBackend:
    """One simulated pendulum behind the `PendulumBackend` seam.

    Starting states (``initial_state`` or ``options["initial_state"]`` at reset):

    * ``"hanging"`` (default, like the robot after its reset): θ = π ± 0.02 rad, θ̇ = ±0.02 rad/s.
    * ``"random"`` (like Gymnasium's Pendulum): θ ~ U[-π, π], θ̇ ~ U[-1, 1] rad/s.

    ``options={"theta": ..., "theta_dot": ...}`` sets an exact start (rad, rad/s).

    ``latency_s`` (`Latency`) sets when each command reaches the motor after the reading it
    answers, to rehearse a slower controller (below two control periods).
    """

    def __init__(self, params: PendulumParams, initial_state: str = "hanging", latency_s: Latency = None) -> None:
        _check_initial_state(initial_state)
        self._draw_latency: Callable[[np.random.Generator], float] | None = None
        if isinstance(latency_s, (int, float)):
            params = params.replace(actuation_latency_s=float(latency_s))
        elif isinstance(latency_s, tuple):
            low, high = (float(value) for value in latency_s)
            if not 0.0 <= low <= high < 2.0 * params.control_period_s:
                raise ValueError(f"latency_s range must lie in [0, {2 * params.control_period_s:g}) s, got {latency_s}")
            self._draw_latency = lambda rng: float(rng.uniform(low, high))
        elif callable(latency_s):
            self._draw_latency = latency_s
        elif latency_s is not None:
            raise TypeError(
                f"latency_s must be seconds, a (low, high) range or a function of a Generator, got {latency_s!r}"
            )
        self.params = params
        self.initial_state = initial_state
        self.simulator = PendulumSimulator(params)
        self._rng = np.random.default_rng()

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
        self._rng = rng
        return self._reading()

    def step(self, command: float) -> Reading:
        latency = None if self._draw_latency is None else float(self._draw_latency(self._rng))
        self.simulator.step(command, latency_s=latency)
        return self._reading()

    def _reading(self) -> Reading:
        simulator = self.simulator
        return Reading(simulator.measured_theta, simulator.measured_theta_dot, None)

    def close(self) -> None:
        """Nothing to release."""


def _check_initial_state(mode: str) -> None:
    if mode not in ("hanging", "random"):
        raise ValueError(f"initial_state must be 'hanging' or 'random', got {mode!r}")
