"""Swing the RaaS pendulum up and balance it: energy pumping, then LQR.

Written against the public env API only, so it runs unchanged on the simulator and on a robot:

    python run.py                      # the reference rig's simulator
    python run.py --calibration r.json # a particular robot's calibrated simulator
    RAAS_CALIBRATION=r.json python run.py

How it works
------------
* The command chosen from an observation reaches the motor about one control period later
  (the robot agent applies it at the next clock boundary). So the controller first predicts
  where the pendulum will be when its command takes effect, using the rig model of
  ``env.unwrapped.params`` and the command already on its way.
* Far from the top it pumps energy: full torque in the direction of motion while the
  pendulum's energy is below that of standing upright (the motor alone can hold the pendulum
  only ~35° from hanging).
* Near the top it balances with an LQR designed on the linearised rig, discretised at the
  control period, with the one-period delay as an extra state.
* Commands are pre-compensated for the motor's deadband.
"""

from __future__ import annotations

import argparse
import math
import os

import gymnasium as gym
import numpy as np
import scipy.linalg

import gym_raas  # noqa: F401  (registers RaasPendulum-v0)
from gym_raas.params import PendulumParams

CATCH_ANGLE_RAD = 0.6
"""Hand over to the balancer inside this angle from upright..."""
CATCH_ENERGY_MARGIN = 0.25
"""...when the energy is within this fraction of the upright energy gap (ω₀²·2)."""


def predict(theta: float, theta_dot: float, command: float, params: PendulumParams) -> tuple[float, float]:
    """State one control period ahead, with `command` acting (semi-implicit Euler, 5 ms steps)."""
    steps = 10
    h = params.control_period_s / steps
    gravity = params.natural_frequency_rad_per_s**2
    damping = params.viscous_damping_per_s + params.motor_back_emf_damping_per_s
    drive = params.motor_stall_acceleration_rad_per_s2 * command / params.max_command
    for _ in range(steps):
        theta_dot += h * (gravity * math.sin(theta) - damping * theta_dot + drive)
        theta += h * theta_dot
    return theta, theta_dot


def lqr_gain(params: PendulumParams) -> np.ndarray:
    """Gain K of u_k = −K·[θ, θ̇, u_{k−1}] balancing upright, with a one-period command delay."""
    gravity = params.natural_frequency_rad_per_s**2
    damping = params.viscous_damping_per_s + params.motor_back_emf_damping_per_s
    gain = params.motor_stall_acceleration_rad_per_s2 / params.max_command
    continuous = np.array([[0.0, 1.0, 0.0], [gravity, -damping, gain], [0.0, 0.0, 0.0]])
    discrete = scipy.linalg.expm(continuous * params.control_period_s)
    a_matrix = np.zeros((3, 3))
    a_matrix[:2, :] = discrete[:2, :]  # the delayed command acts over the coming period
    b_matrix = np.array([[0.0], [0.0], [1.0]])  # the new command becomes the delayed one
    q_matrix = np.diag([20.0, 1.0, 0.1])
    r_matrix = np.array([[0.5]])
    riccati = scipy.linalg.solve_discrete_are(a_matrix, b_matrix, q_matrix, r_matrix)
    return np.asarray(np.linalg.solve(r_matrix + b_matrix.T @ riccati @ b_matrix, b_matrix.T @ riccati @ a_matrix))


class SwingUpController:
    """Energy swing-up handing over to LQR; call it with each observation."""

    def __init__(self, params: PendulumParams) -> None:
        self.params = params
        self.gain = lqr_gain(params)
        self.pending_command = 0.0
        self.balancing = False

    def __call__(self, observation: np.ndarray) -> float:
        params = self.params
        measured_theta = math.atan2(float(observation[1]), float(observation[0]))
        measured_theta_dot = float(observation[2])
        # Where the pendulum will be when this command reaches the motor.
        theta, theta_dot = predict(measured_theta, measured_theta_dot, self.pending_command, params)
        theta = math.atan2(math.sin(theta), math.cos(theta))
        gravity = params.natural_frequency_rad_per_s**2
        energy = 0.5 * theta_dot**2 + gravity * (math.cos(theta) - 1.0)  # 0 when upright at rest
        self.balancing = abs(theta) < CATCH_ANGLE_RAD and abs(energy) < CATCH_ENERGY_MARGIN * 2 * gravity
        if self.balancing:
            # The LQR's model carries the delay itself: it takes the measured state and the
            # command on its way.
            state = np.array([measured_theta, measured_theta_dot, self.pending_command])
            command = float(-(self.gain @ state)[0])
        elif energy < 0.0:
            direction = math.copysign(1.0, theta_dot) if abs(theta_dot) > 0.05 else 1.0
            command = direction * params.max_command
        else:
            command = -math.copysign(params.max_command, theta_dot)  # too much energy: brake
        command = self._through_deadband(command)
        self.pending_command = command
        return command

    def _through_deadband(self, command: float) -> float:
        """Command whose effective torque is `command` once the motor's deadband is overcome."""
        limit = self.params.max_command
        duty = max(-1.0, min(1.0, command / limit))
        deadband = self.params.motor_deadband_duty
        if abs(duty) < 1e-3:
            return 0.0
        return math.copysign(deadband + abs(duty) * (1.0 - deadband), duty) * limit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", default=os.environ.get("RAAS_CALIBRATION"), help="robot calibration file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200, help="control steps (20 per second)")
    arguments = parser.parse_args(argv)

    options = {"calibration": arguments.calibration} if arguments.calibration else {}
    env = gym.make("RaasPendulum-v0", max_episode_steps=arguments.steps, **options)
    controller = SwingUpController(env.unwrapped.params)  # type: ignore[attr-defined]
    observation, _ = env.reset(seed=arguments.seed)
    total_reward, upright_since = 0.0, None
    for step in range(arguments.steps):
        action = np.array([controller(observation)], dtype=np.float32)
        observation, reward, terminated, truncated, _ = env.step(action)
        total_reward += float(reward)
        theta = math.atan2(float(observation[1]), float(observation[0]))
        if abs(theta) < 0.1 and upright_since is None:
            upright_since = step
            print(f"step {step:3d}: upright (t = {step * 0.05:.2f} s), balancing", flush=True)
        elif abs(theta) >= 0.3:
            upright_since = None
        if step % 20 == 0:
            mode = "balance" if controller.balancing else "swing"
            print(f"step {step:3d}: θ = {math.degrees(theta):7.1f}°  command = {action[0]:+.2f}  [{mode}]", flush=True)
        if terminated or truncated:
            break
    env.close()
    print(f"done: {step + 1} steps, total reward {total_reward:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
