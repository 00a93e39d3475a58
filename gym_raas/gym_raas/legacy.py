"""Legacy Gym support: code written for the original service runs unchanged.

The original RaaS users wrote::

    import gym
    import gym_raas
    env = gym.make('RaasPendulum-v0')
    obs = env.reset()
    obs, reward, done, info = env.step(action)

Gym 0.26's ``make`` returns the 5-tuple API and its env checker and ``TimeLimit`` break on numpy 2
(``np.bool8``) and on 4-tuples. So ``RaasPendulum-v0`` is registered in Gym's registry with the
checker off and no ``TimeLimit``; `LegacyRaasPendulumEnv` keeps the old API itself (``reset()``
returns the observation, ``step`` a 4-tuple with ``done`` at the time limit and
``info["TimeLimit.truncated"]``, ``seed(n)``, ``render(mode=...)``). Gym loads
`register_legacy_envs` on import through the ``gym.envs`` entry point of the gym-raas
distribution, and ``import gym_raas`` calls it when ``gym`` is already imported.
"""

from __future__ import annotations

from typing import Any

import gym
import numpy as np
from numpy.typing import NDArray

from gym_raas.envs.pendulum import RaasPendulumEnv, action_space_for, observation_space_for

LEGACY_ENV_ID = "RaasPendulum-v0"


def register_legacy_envs() -> None:
    """Register ``RaasPendulum-v0`` in legacy Gym's registry (idempotent)."""
    from gym.envs.registration import register, registry

    if LEGACY_ENV_ID in registry:
        return
    register(
        id=LEGACY_ENV_ID,
        entry_point="gym_raas.legacy:LegacyRaasPendulumEnv",
        disable_env_checker=True,
    )


class LegacyRaasPendulumEnv(gym.Env):  # type: ignore[type-arg]
    """`RaasPendulumEnv` with the pre-0.26 Gym API (reset → obs; step → obs, reward, done, info)."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 20}  # noqa: RUF012

    def __init__(self, max_episode_steps: int = 200, render_mode: str | None = None, **env_kwargs: Any) -> None:
        self._env = RaasPendulumEnv(render_mode=render_mode or "rgb_array", **env_kwargs)
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        action_space = action_space_for(self._env.params)
        observation_space = observation_space_for(self._env.params)
        self.action_space = gym.spaces.Box(low=action_space.low, high=action_space.high, dtype=np.float32)
        self.observation_space = gym.spaces.Box(
            low=observation_space.low, high=observation_space.high, dtype=np.float32
        )
        self._seed: int | None = None
        self._elapsed_steps = 0

    @property
    def params(self) -> Any:
        """The rig parameters of the wrapped environment."""
        return self._env.params

    def seed(self, seed: int | None = None) -> list[int | None]:
        """Old-API seeding: applies to the next `reset`."""
        self._seed = seed
        return [seed]

    def reset(self, **kwargs: Any) -> NDArray[np.float32]:  # type: ignore[override]
        seed = kwargs.pop("seed", self._seed)
        self._seed = None
        kwargs.pop("return_info", None)
        observation, _ = self._env.reset(seed=seed, options=kwargs.pop("options", None))
        self._elapsed_steps = 0
        return observation

    def step(self, action: Any) -> tuple[NDArray[np.float32], float, bool, dict[str, Any]]:  # type: ignore[override]
        observation, reward, terminated, truncated, info = self._env.step(np.asarray(action, dtype=np.float32))
        self._elapsed_steps += 1
        if self._elapsed_steps >= self.max_episode_steps and not terminated:
            truncated = True
            info["TimeLimit.truncated"] = True
        return observation, float(reward), bool(terminated or truncated), info

    def render(self, mode: str = "human") -> Any:
        frame = self._env.render()
        if mode == "rgb_array":
            return frame
        if frame is not None:
            self._env._show(frame)
        return None

    def close(self) -> None:
        self._env.close()
