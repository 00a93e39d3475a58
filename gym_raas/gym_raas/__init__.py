"""gym_raas: the RaasPendulum environment, the rig simulator and the client side of RaaS.

Importing this package registers ``RaasPendulum-v0`` with Gymnasium (and with legacy Gym when
``gym`` is already imported, so code written for the original service runs unchanged)::

    import gymnasium as gym
    import gym_raas

    env = gym.make("RaasPendulum-v0")
"""

from __future__ import annotations

import sys

import gymnasium

from gym_raas.params import PendulumParams, load_calibration, save_calibration

__version__ = "0.1.0"

ENV_IDS: tuple[str, ...] = ("RaasPendulum-v0",)
"""Every environment id this package registers."""

MAX_EPISODE_STEPS = 200


def _register_gymnasium_envs() -> None:
    if "RaasPendulum-v0" in gymnasium.registry:
        return
    gymnasium.register(
        id="RaasPendulum-v0",
        entry_point="gym_raas.envs.pendulum:RaasPendulumEnv",
        vector_entry_point="gym_raas.envs.vector:RaasPendulumVectorEnv",
        max_episode_steps=MAX_EPISODE_STEPS,
    )


_register_gymnasium_envs()

if "gym.envs.registration" in sys.modules:
    from gym_raas.legacy import register_legacy_envs

    register_legacy_envs()

__all__ = ["ENV_IDS", "MAX_EPISODE_STEPS", "PendulumParams", "__version__", "load_calibration", "save_calibration"]
