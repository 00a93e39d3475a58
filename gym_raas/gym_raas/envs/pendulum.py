"""`RaasPendulum-v0`: the pendulum robot of RaaS as a Gymnasium environment."""

from __future__ import annotations

import atexit
import math
import os
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from gym_raas.backends.base import PendulumBackend, Reading, select_backend_name
from gym_raas.backends.sim import Latency, SimBackend
from gym_raas.params import PendulumParams, load_calibration
from gym_raas.randomization import ParameterRange, Randomization, resolve_randomization, sample_parameters
from gym_raas.rendering import Frame, draw_pendulum
from gym_raas.trajectory import Trajectory

RECORD_PATH_ENV = "RAAS_RECORD_PATH"
"""When set (by ``raas demo``), the simulated env records what it simulated to this CSV file."""

Calibration = PendulumParams | str | Path | None
Observation = NDArray[np.float32]


def resolve_params(calibration: Calibration) -> PendulumParams:
    """Parameters from a `PendulumParams`, a calibration file path, or the reference rig (None)."""
    if calibration is None:
        return PendulumParams()
    if isinstance(calibration, PendulumParams):
        return calibration
    return load_calibration(calibration)


def observation_space_for(params: PendulumParams) -> spaces.Box:
    """Box of [cos θ, sin θ, θ̇] with the rig's velocity limit."""
    high = np.array([1.0, 1.0, params.velocity_limit_rad_per_s], dtype=np.float32)
    return spaces.Box(low=-high, high=high, dtype=np.float32)


def action_space_for(params: PendulumParams) -> spaces.Box:
    """Box of the motor command, [-max_command, max_command] (Pendulum's [-2, 2] by default)."""
    return spaces.Box(low=-params.max_command, high=params.max_command, shape=(1,), dtype=np.float32)


def swing_cost(theta: Any, theta_dot: Any, command: Any) -> Any:
    """Pendulum's cost θ² + 0.1·θ̇² + 0.001·u² (θ wrapped, 0 = upright); floats or arrays."""
    return theta * theta + 0.1 * theta_dot * theta_dot + 0.001 * command * command


class RaasPendulumEnv(gym.Env[Observation, NDArray[np.float32]]):
    """The RaaS pendulum robot: swing a motor-driven pendulum up and balance it.

    ## Description
    A pendulum hangs from the shaft of a DC gear motor driven through an H-bridge; a quadrature
    encoder measures its angle. The interface is Gymnasium's classic ``Pendulum``, but the
    dynamics are those of the rig (`gym_raas.params.PendulumParams`): Coulomb and viscous
    friction, motor back-EMF, a PWM deadband and quantisation, actuation latency of about one
    control period, and an encoder-quantised angle with a speed estimated from edge timing. The
    motor cannot hold the pendulum past ≈35° from hanging, so reaching the top needs a swing-up.
    With ``backend="sim"`` the rig is simulated; on a robot (inside a RaaS job) the same env
    drives the real pendulum through the robot agent.

    ## Action space
    ``Box(-2, 2, (1,), float32)``: the motor command, full duty at ±2 (``max_command``),
    counter-clockwise positive. Out-of-range actions are clipped; NaN or infinite actions raise
    ``ValueError``.

    ## Observation space
    ``Box([-1, -1, -30], [1, 1, 30], (3,), float32)``:

    | index | observation | unit  | bounds |
    |-------|-------------|-------|--------|
    | 0     | cos θ       | –     | [-1, 1] |
    | 1     | sin θ       | –     | [-1, 1] |
    | 2     | θ̇           | rad/s | ±``velocity_limit_rad_per_s`` (30) |

    θ is the measured angle from upright (counter-clockwise positive), hanging is θ = ±π.

    ## Rewards
    ``r = −(θ² + 0.1·θ̇² + 0.001·u²)`` with θ wrapped to [-π, π) and taken from the observation
    the action answers (as in ``Pendulum``), u the clipped action. Range [−16.3, 0] for the
    default bounds up to the speed term.

    ## Starting state
    Hanging at rest, as the robot agent's reset leaves it: θ = π ± 0.02 rad, θ̇ = ±0.02 rad/s.
    ``initial_state="random"`` (sim only) starts like ``Pendulum``: θ ~ U[-π, π], θ̇ ~ U[-1, 1].
    ``reset(options={"theta": ..., "theta_dot": ...})`` sets an exact start (sim only).

    ## Episode end
    Never terminates. Truncated after 200 steps (10 s) by the registration's
    ``max_episode_steps``; ``gymnasium.make("RaasPendulum-v0", max_episode_steps=N)`` changes it.

    ## Arguments
    * ``render_mode``: ``"rgb_array"`` (numpy drawing, no extra needed) or ``"human"`` (a window;
      ``pip install 'gym-raas[render]'``).
    * ``calibration``: a `PendulumParams`, a calibration file written by `gym_raas.sysid` or
      downloaded for a robot, or None for the reference rig.
    * ``backend``: ``"auto"`` (the robot inside a RaaS job, the simulator elsewhere), ``"sim"``
      or ``"robot"``.
    * ``initial_state``: ``"hanging"`` or ``"random"`` (sim only).
    * ``control_hz``: the control rate, one the robot supports (20, 50 or 100; default inside a
      job the job's rate, from ``RAAS_CONTROL_HZ``, elsewhere the calibration's, 20). The step is
      ``1 / control_hz`` long; ``max_episode_steps`` counts steps.
    * ``latency_s`` (sim only): when a command reaches the motor after the reading it answers —
      seconds, a ``(low, high)`` range drawn at every step, or a function of the env's random
      generator. Default: the calibration's, the typical latency measured on the robots (a few
      milliseconds: the agent applies a command as soon as it arrives).
    * ``randomize`` (sim only; domain randomisation, see `gym_raas.randomization`): a mapping of
      parameter names to ranges — ``(low, high)`` or ``{"scale": (low, high)}`` as factors of
      the calibration's value, ``{"range": (low, high)}`` as absolute values — or ``"default"``
      (the spread of real rigs, `gym_raas.randomization.DEFAULT_RANGES`). A new rig is drawn at
      every ``reset`` from the env's generator (the reset seed fixes it); ``info["params"]``
      (at reset and every step) holds the drawn values. Bad names or ranges raise ``ValueError``.

    ## Version history
    * v0: first release.

    ## Example
    >>> import gymnasium as gym
    >>> import gym_raas
    >>> env = gym.make("RaasPendulum-v0", backend="sim")
    >>> observation, info = env.reset(seed=0)
    >>> [round(float(value), 2) for value in observation]
    [-1.0, -0.0, -0.01]
    >>> observation, reward, terminated, truncated, info = env.step(np.array([2.0], dtype=np.float32))
    >>> round(float(reward), 2), terminated, truncated
    (-9.87, False, False)
    >>> env.close()
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 20}  # noqa: RUF012

    def __init__(
        self,
        render_mode: str | None = None,
        calibration: Calibration = None,
        backend: str = "auto",
        initial_state: str = "hanging",
        control_hz: float | None = None,
        latency_s: Latency = None,
        randomize: Randomization = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.backend_name = select_backend_name(backend)
        if control_hz is not None and (
            isinstance(control_hz, bool) or not (isinstance(control_hz, (int, float)) and 0 < control_hz <= 1000)
        ):
            raise ValueError(f"control_hz must be a rate in (0, 1000] Hz such as 20, 50 or 100, got {control_hz!r}")
        if randomize is not None and self.backend_name != "sim":
            raise ValueError("randomize is for the simulator: a robot is the rig it is")
        self.backend: PendulumBackend = self._make_backend(calibration, initial_state, control_hz, latency_s)
        self.params = self.backend.params
        self.randomization = self._check_randomization(randomize, latency_s)
        self._sample: dict[str, float] = {}
        self.dt = self.params.control_period_s
        self.max_command = self.params.max_command
        self.action_space: spaces.Box = action_space_for(self.params)  # type: ignore[assignment]
        self.observation_space: spaces.Box = observation_space_for(self.params)  # type: ignore[assignment]
        self._theta = math.pi
        self._theta_dot = 0.0
        self._last_command = 0.0
        self._window: Any = None
        self._closed = False
        self._recording: Trajectory | None = None
        self._recording_path = os.environ.get(RECORD_PATH_ENV) if self.backend_name == "sim" else None
        if self._recording_path:
            self._recording = Trajectory()
            atexit.register(self._save_recording)

    def _make_backend(
        self, calibration: Calibration, initial_state: str, control_hz: float | None, latency_s: Latency
    ) -> PendulumBackend:
        if self.backend_name == "sim":
            params = resolve_params(calibration)
            if control_hz is not None:
                params = params.with_control_period(1.0 / control_hz)
            return SimBackend(params, initial_state=initial_state, latency_s=latency_s)
        from gym_raas.backends.robot import RobotBackend

        if latency_s is not None:
            raise ValueError("latency_s is for the simulator: on a robot the latency is what the robot measures")
        # On a robot the agent's calibration rules; a user calibration is only a local model.
        return RobotBackend(control_hz=control_hz)

    def _check_randomization(self, randomize: Randomization, latency_s: Latency) -> tuple[ParameterRange, ...]:
        if randomize is None:
            return ()
        ranges = resolve_randomization(randomize, self.params)
        if latency_s is not None and any(item.name == "actuation_latency_s" for item in ranges):
            raise ValueError("give the latency either as latency_s or in randomize, not both")
        return ranges

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        super().reset(seed=seed)
        if self.randomization and isinstance(self.backend, SimBackend):
            drawn = sample_parameters(self.randomization, self.np_random, 1)
            self._sample = {name: float(values[0]) for name, values in drawn.items()}
            self.backend.simulator.vary(self._sample)
        reading = self.backend.reset(self.np_random, options)
        self._last_command = 0.0
        return self._observe(reading), self._info(reading)

    def _info(self, reading: Reading) -> dict[str, Any]:
        info = dict(reading.info or {})
        if self._sample:
            info["params"] = dict(self._sample)
        return info

    def step(self, action: NDArray[np.float32]) -> tuple[Observation, SupportsFloat, bool, bool, dict[str, Any]]:
        command = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        if not math.isfinite(command):
            raise ValueError(f"action must be a finite number, got {command}")
        limit = self.max_command
        command = limit if command > limit else (-limit if command < -limit else command)
        reward = -swing_cost(self._theta, self._theta_dot, command)
        if self._recording is not None:
            self._recording.append(len(self._recording) * self.dt, self._theta, self._theta_dot, command, reward)
        reading = self.backend.step(command)
        self._last_command = command
        observation = self._observe(reading)
        if self.render_mode == "human":
            self.render()
        info = dict(reading.info or {})
        if self._sample:
            info["params"] = dict(self._sample)
        return observation, reward, False, False, info

    def _observe(self, reading: Reading) -> Observation:
        theta = self._theta = reading.theta_rad
        self._theta_dot = reading.theta_dot_rad_per_s
        return np.array((math.cos(theta), math.sin(theta), self._theta_dot), dtype=np.float32)

    def render(self) -> Frame | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' or 'human'.")
            return None
        frame = draw_pendulum(self._theta, self._last_command, self.max_command)
        if self.render_mode == "rgb_array":
            return frame
        self._show(frame)
        return None

    def _show(self, frame: Frame) -> None:
        try:
            import pygame
        except ImportError as error:
            raise gym.error.DependencyNotInstalled(
                "render_mode='human' needs pygame: pip install 'gym-raas[render]'"
            ) from error
        if self._window is None:
            pygame.display.init()
            self._window = pygame.display.set_mode(frame.shape[1::-1])
            self._clock = pygame.time.Clock()
        surface = pygame.surfarray.make_surface(frame.swapaxes(0, 1))
        self._window.blit(surface, (0, 0))
        pygame.event.pump()
        pygame.display.flip()
        self._clock.tick(self.metadata["render_fps"])

    def _save_recording(self) -> None:
        if self._recording is not None and self._recording_path:
            self._recording.to_csv(self._recording_path)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._save_recording()
        self.backend.close()
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None
