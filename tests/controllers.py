"""Users' controllers the tests submit, as source text."""

from __future__ import annotations

STEADY = """\
import gymnasium as gym
import numpy as np
import gym_raas
env = gym.make("RaasPendulum-v0", max_episode_steps={steps})
env.reset()
for _ in range({steps}):
    env.step(np.array([{torque}], dtype=np.float32))
env.close()
print("done after {steps} steps", flush=True)
"""


def steady_controller(steps: int, torque: float = 0.5) -> str:
    """A controller that applies `torque` for `steps` steps, then prints ``done after <steps> steps``."""
    return STEADY.format(steps=steps, torque=torque)
