"""N simulated RaasPendulums stepped as one numpy batch (``gymnasium.make_vec``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from gym_raas.backends.sim import RESTING_JITTER_RAD
from gym_raas.envs.pendulum import (
    Calibration,
    action_space_for,
    observation_space_for,
    resolve_params,
    swing_cost,
)
from gym_raas.randomization import Randomization, resolve_randomization, sample_parameters
from gym_raas.rendering import Frame, draw_pendulum
from gym_raas.simulator import HANGING_RAD, PendulumSimulator


class RaasPendulumVectorEnv(VectorEnv[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]):
    """`RaasPendulumEnv` × ``num_envs`` on the simulator, stepped in one numpy batch.

    Same spaces, reward, dynamics and starting states as the single env (the physics code is
    shared). Autoreset is Gymnasium's ``NEXT_STEP`` mode: the step after an episode ends resets
    that sub-environment (its action is ignored, reward 0). ``reset(options={"reset_mask": m})``
    resets only the sub-environments where the boolean mask ``m`` is true.

    ``randomize`` (domain randomisation, see `gym_raas.randomization`): a mapping of parameter
    names to ranges — ``(low, high)`` or ``{"scale": (low, high)}`` as factors of the
    calibration's value, ``{"range": (low, high)}`` as absolute values — or ``"default"``
    (`gym_raas.randomization.DEFAULT_RANGES`, the spread of real rigs). Every sub-environment
    draws its own values at each reset of its episode, from the env's generator (so the reset
    seed fixes them); they act as numpy arrays in the batch step. ``infos["params"]`` (at reset
    and every step) maps each randomised name to its current values, one per sub-environment.

    >>> import gymnasium as gym
    >>> import gym_raas
    >>> envs = gym.make_vec("RaasPendulum-v0", num_envs=4)
    >>> observations, infos = envs.reset(seed=0)
    >>> observations.shape
    (4, 3)
    >>> envs.close()
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20, "autoreset_mode": AutoresetMode.NEXT_STEP}  # noqa: RUF012

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = 200,
        render_mode: str | None = None,
        calibration: Calibration = None,
        initial_state: str = "hanging",
        backend: str = "sim",
        randomize: Randomization = None,
    ) -> None:
        if backend != "sim":
            raise ValueError("the vector env only simulates; use gym.make('RaasPendulum-v0') for a robot")
        if num_envs < 1:
            raise ValueError(f"num_envs must be ≥ 1, got {num_envs}")
        if initial_state not in ("hanging", "random"):
            raise ValueError(f"initial_state must be 'hanging' or 'random', got {initial_state!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.initial_state = initial_state
        self.params = resolve_params(calibration)
        self.randomization = resolve_randomization(randomize, self.params)
        self._sample = {
            item.name: np.full(num_envs, float(getattr(self.params, item.name))) for item in self.randomization
        }
        self.dt = self.params.control_period_s
        self.single_action_space = action_space_for(self.params)
        self.single_observation_space = observation_space_for(self.params)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.simulator = PendulumSimulator(self.params, batch_size=num_envs)
        self._theta = np.full(num_envs, HANGING_RAD)
        self._theta_dot = np.zeros(num_envs)
        self._commands = np.zeros(num_envs)
        self._elapsed_steps = np.zeros(num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(num_envs, dtype=bool)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0] if seed else None
        if seed is not None or not hasattr(self, "_np_random") or self._np_random is None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        options = options or {}
        mask = np.asarray(options.get("reset_mask", np.ones(self.num_envs, dtype=bool)), dtype=bool)
        self._reset_where(mask, options.get("initial_state", self.initial_state))
        return self._observations(), self._infos()

    def _reset_where(self, mask: NDArray[np.bool_], initial_state: str) -> None:
        rng = self.np_random
        size = self.num_envs
        if initial_state == "random":
            theta = rng.uniform(-np.pi, np.pi, size)
            theta_dot = rng.uniform(-1.0, 1.0, size)
        else:
            theta = HANGING_RAD + rng.uniform(-RESTING_JITTER_RAD, RESTING_JITTER_RAD, size)
            theta_dot = rng.uniform(-RESTING_JITTER_RAD, RESTING_JITTER_RAD, size)
        if self.randomization:
            drawn = sample_parameters(self.randomization, rng, size)
            for name, values in self._sample.items():
                values[mask] = drawn[name][mask]
            self.simulator.vary(self._sample)
        self.simulator.reset(rng, theta, theta_dot, mask=mask)
        self._commands[mask] = 0.0
        self._elapsed_steps[mask] = 0
        self._needs_reset[mask] = False

    def step(  # type: ignore[override]
        self, actions: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_], dict[str, Any]]:
        commands = np.asarray(actions, dtype=np.float64).reshape(self.num_envs)
        if not np.all(np.isfinite(commands)):
            raise ValueError("actions must be finite numbers; got NaN or infinity")
        limit = self.params.max_command
        commands = np.clip(commands, -limit, limit)
        restarting = self._needs_reset.copy()
        commands[restarting] = 0.0
        rewards = -swing_cost(self._theta, self._theta_dot, commands)
        self.simulator.step(commands)
        self._commands = commands
        self._elapsed_steps += 1
        if restarting.any():
            self._reset_where(restarting, self.initial_state)
            rewards[restarting] = 0.0
        truncations = self._elapsed_steps >= self.max_episode_steps
        self._needs_reset = truncations.copy()
        terminations = np.zeros(self.num_envs, dtype=bool)
        return self._observations(), rewards, terminations, truncations, self._infos()

    def _infos(self) -> dict[str, Any]:
        """The current randomised parameters, one value per sub-environment (copies)."""
        if not self.randomization:
            return {}
        return {"params": {name: values.copy() for name, values in self._sample.items()}}

    def _observations(self) -> NDArray[np.float32]:
        theta = self._theta = self.simulator.measured_theta
        theta_dot = self._theta_dot = self.simulator.measured_theta_dot
        observations = np.empty((self.num_envs, 3), dtype=np.float32)
        observations[:, 0] = np.cos(theta)
        observations[:, 1] = np.sin(theta)
        observations[:, 2] = theta_dot
        return observations

    def render(self) -> tuple[Frame, ...] | None:
        if self.render_mode is None:
            return None
        limit = self.params.max_command
        return tuple(
            draw_pendulum(float(theta), float(command), limit)
            for theta, command in zip(self._theta, self._commands, strict=True)
        )

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release (no sub-processes, no windows)."""
