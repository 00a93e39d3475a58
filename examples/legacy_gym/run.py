"""A controller written for the original RaaS service, unchanged: legacy Gym's 4-tuple API.

It swings the pendulum with a simple energy-pumping rule (bang-bang in the direction of motion)
and prints the total reward; it is here to prove old code still runs on the platform.
"""

import gym

import gym_raas  # noqa: F401

env = gym.make("RaasPendulum-v0")
obs = env.reset()
total_reward = 0.0
done = False
steps = 0
while not done:
    cos_theta, sin_theta, theta_dot = obs
    action = [2.0 if theta_dot >= 0 else -2.0]
    obs, reward, done, info = env.step(action)
    total_reward += reward
    steps += 1
print("steps:", steps, "total reward:", round(total_reward, 1))
env.close()
