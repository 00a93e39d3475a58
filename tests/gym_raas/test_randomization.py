"""Domain randomisation: sampling, seeding, per-sub-env physics, info, and refusal of bad ranges."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import gym_raas  # noqa: F401  (registers RaasPendulum-v0)
from gym_raas.params import PendulumParams
from gym_raas.randomization import DEFAULT_RANGES, RANDOMIZABLE, resolve_randomization, rig_around
from gym_raas.simulator import PendulumSimulator

REFERENCE = PendulumParams()
STALL = "motor_stall_acceleration_rad_per_s2"
LATENCY = "actuation_latency_s"


def vector(num_envs: int = 16, **kwargs: Any) -> Any:
    return gym.make_vec("RaasPendulum-v0", num_envs=num_envs, **kwargs)


def test_relative_ranges_scale_the_calibration_and_absolute_ranges_are_taken_as_given() -> None:
    envs = vector(
        256,
        randomize={
            STALL: (0.85, 1.15),
            "natural_frequency_rad_per_s": {"scale": (0.9, 1.0)},
            LATENCY: {"range": (0.001, 0.004)},
        },
    )
    _, infos = envs.reset(seed=0)
    params = infos["params"]
    assert set(params) == {STALL, "natural_frequency_rad_per_s", LATENCY}
    stall = params[STALL]
    assert stall.shape == (256,)
    assert np.all((stall >= 0.85 * 16.1) & (stall <= 1.15 * 16.1))
    assert stall.min() < 0.9 * 16.1  # spread over the range, not one value
    assert stall.max() > 1.1 * 16.1
    omega = params["natural_frequency_rad_per_s"]
    assert np.all((omega >= 0.9 * 5.3) & (omega <= 5.3))
    assert np.all((params[LATENCY] >= 0.001) & (params[LATENCY] <= 0.004))
    envs.close()


def test_relative_ranges_are_relative_to_the_given_calibration() -> None:
    base = REFERENCE.replace(motor_stall_acceleration_rad_per_s2=30.0)
    envs = vector(64, calibration=base, randomize={STALL: (0.9, 1.1)})
    _, infos = envs.reset(seed=1)
    assert np.all((infos["params"][STALL] >= 27.0) & (infos["params"][STALL] <= 33.0))


def test_the_same_seed_draws_the_same_rigs_and_sub_envs_draw_different_ones() -> None:
    first, second = vector(randomize="default"), vector(randomize="default")
    _, infos_a = first.reset(seed=42)
    _, infos_b = second.reset(seed=42)
    for name in DEFAULT_RANGES:
        np.testing.assert_array_equal(infos_a["params"][name], infos_b["params"][name])
        assert len(np.unique(infos_a["params"][name])) == 16, f"sub-envs share {name}"
    actions = np.full((16, 1), 1.5, dtype=np.float32)
    for _ in range(30):
        observations_a = first.step(actions)[0]
        observations_b = second.step(actions)[0]
    np.testing.assert_array_equal(observations_a, observations_b)
    _, infos_c = second.reset(seed=43)
    for name in DEFAULT_RANGES:
        assert not np.array_equal(infos_a["params"][name], infos_c["params"][name])


def test_every_episode_draws_a_new_rig_for_the_sub_envs_that_restart() -> None:
    envs = vector(8, randomize={STALL: (0.5, 1.5)}, max_episode_steps=5)
    _, infos = envs.reset(seed=3)
    before = infos["params"][STALL]
    actions = np.zeros((8, 1), dtype=np.float32)
    for _ in range(5):
        *_, truncations, infos = envs.step(actions)
    assert truncations.all()
    np.testing.assert_array_equal(infos["params"][STALL], before)  # the episode is not over yet
    *_, infos = envs.step(actions)  # the next step resets every sub-env (NEXT_STEP autoreset)
    assert np.all(infos["params"][STALL] != before)
    mask = np.array([True, False] * 4)
    after = infos["params"][STALL]
    _, infos = envs.reset(options={"reset_mask": mask})
    assert np.all(infos["params"][STALL][mask] != after[mask])
    np.testing.assert_array_equal(infos["params"][STALL][~mask], after[~mask])


def test_sub_envs_with_a_stronger_motor_turn_further_under_the_same_torque() -> None:
    envs = vector(2, randomize={STALL: (8.0, 24.0)})
    envs.reset(seed=5)
    # Fix the two rigs' motors exactly, then start both hanging at rest.
    envs.unwrapped.simulator.vary({STALL: np.array([8.0, 24.0])})
    envs.unwrapped.simulator.reset(np.random.default_rng(0), math.pi, 0.0)
    angles = []
    for _ in range(6):
        observations = envs.step(np.full((2, 1), 2.0, dtype=np.float32))[0]
        angles.append(np.arctan2(observations[:, 1], observations[:, 0]))
    travelled = np.pi - np.abs(angles[-1])
    assert travelled[1] > 2.0 * travelled[0] > 0.0


@pytest.mark.parametrize("latencies", [(0.0, 0.003, 0.017, 0.05, 0.071), (0.003, 0.003, 0.003, 0.003, 0.003)])
def test_each_pendulum_of_a_batch_steps_exactly_as_a_single_simulator_with_its_own_parameters(
    latencies: tuple[float, ...],
) -> None:
    base = REFERENCE.replace(encoder_edge_jitter_s=0.0)
    values = {
        "natural_frequency_rad_per_s": np.array([4.8, 5.0, 5.3, 5.6, 5.9]),
        "viscous_damping_per_s": np.array([0.1, 0.2, 0.3, 0.4, 0.5]),
        "coulomb_friction_rad_per_s2": np.array([0.0, 0.05, 0.08, 0.12, 0.2]),
        STALL: np.array([13.0, 15.0, 16.1, 17.0, 19.0]),
        "motor_back_emf_damping_per_s": np.array([0.3, 0.4, 0.45, 0.5, 0.6]),
        "motor_deadband_duty": np.array([0.0, 0.02, 0.04, 0.06, 0.1]),
        LATENCY: np.array(latencies),
    }
    batch = PendulumSimulator(base, batch_size=5)
    batch.vary(values)
    batch.reset(np.random.default_rng(0), math.pi - 0.3, 0.5)
    singles = [PendulumSimulator(base.replace(**{name: float(array[index]) for name, array in values.items()}))
               for index in range(5)]  # fmt: skip
    for single in singles:
        single.reset(np.random.default_rng(0), math.pi - 0.3, 0.5)
    commands = np.sin(np.arange(60) * 0.4) * 2.0
    for command in commands:
        batch.step(np.full(5, command))
        for single in singles:
            single.step(float(command))
        np.testing.assert_allclose(batch.theta, [single.theta for single in singles], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(batch.measured_theta, [single.measured_theta for single in singles])


def test_a_batch_varied_to_the_calibrations_own_values_steps_as_the_unvaried_batch() -> None:
    plain, varied = PendulumSimulator(REFERENCE, batch_size=4), PendulumSimulator(REFERENCE, batch_size=4)
    varied.vary({name: np.full(4, float(getattr(REFERENCE, name))) for name in RANDOMIZABLE})
    plain.reset(np.random.default_rng(1), np.array([3.0, 2.0, 1.0, 0.5]), 0.0)
    varied.reset(np.random.default_rng(1), np.array([3.0, 2.0, 1.0, 0.5]), 0.0)
    for command in np.linspace(-2.0, 2.0, 40):
        plain.step(np.full(4, command))
        varied.step(np.full(4, command))
    np.testing.assert_allclose(varied.theta, plain.theta, rtol=0, atol=1e-9)
    np.testing.assert_allclose(varied.measured_theta_dot, plain.measured_theta_dot, rtol=0, atol=1e-9)


def test_the_single_env_draws_a_rig_per_reset_reproducibly_and_reports_it() -> None:
    env = gym.make("RaasPendulum-v0", backend="sim", randomize="default")
    _, info = env.reset(seed=9)
    sample = info["params"]
    assert set(sample) == set(DEFAULT_RANGES)
    assert env.unwrapped.backend.simulator.coefficients.stall_acceleration_rad_per_s2 == sample[STALL]
    step_info = env.step(np.array([1.0], dtype=np.float32))[4]
    assert step_info["params"] == sample
    assert env.reset(seed=10)[1]["params"] != sample
    assert env.reset(seed=9)[1]["params"] == sample
    assert env.reset()[1]["params"] != sample
    env.close()


def test_the_single_env_steps_with_its_drawn_motor() -> None:
    def swing(low: float, high: float) -> float:
        env = gym.make("RaasPendulum-v0", backend="sim", randomize={STALL: {"range": (low, high)}})
        env.reset(seed=0, options={"theta": math.pi, "theta_dot": 0.0})
        for _ in range(6):
            observation = env.step(np.array([2.0], dtype=np.float32))[0]
        return math.pi - abs(math.atan2(observation[1], observation[0]))

    assert swing(24.0, 24.0) > 2.0 * swing(8.0, 8.0) > 0.0


def test_without_randomize_info_carries_no_params() -> None:
    envs = vector(2)
    assert envs.reset(seed=0)[1] == {}
    env = gym.make("RaasPendulum-v0", backend="sim")
    assert "params" not in env.reset(seed=0)[1]


BAD_INPUTS: list[tuple[Any, str]] = [
    ({"motor_strength": (0.9, 1.1)}, "motor_strength"),
    ({"control_period_s": (0.9, 1.1)}, "control_period_s"),
    ({"pwm_duty_steps": (0.9, 1.1)}, "pwm_duty_steps"),
    ({STALL: (1.2, 0.8)}, "inverted"),
    ({STALL: (0.9, float("nan"))}, "finite"),
    ({STALL: (0.9, float("inf"))}, "finite"),
    ({STALL: (-0.5, 1.0)}, STALL),
    ({"viscous_damping_per_s": {"range": (-0.1, 0.3)}}, "viscous_damping_per_s"),
    ({"motor_deadband_duty": {"range": (0.0, 1.0)}}, "motor_deadband_duty"),
    ({LATENCY: {"range": (0.0, 0.2)}}, LATENCY),
    ({"natural_frequency_rad_per_s": (1.0, 1e200)}, "natural_frequency_rad_per_s"),
    ({STALL: (0.9,)}, STALL),
    ({STALL: "0.9-1.1"}, STALL),
    ({STALL: (True, 2)}, STALL),
    ({STALL: {"scale": (0.9, 1.1), "range": (1, 2)}}, STALL),
    ({STALL: {"factor": (0.9, 1.1)}}, STALL),
    ("everything", "default"),
    (42, "mapping"),
]


@pytest.mark.parametrize(("randomize", "named"), BAD_INPUTS)
def test_bad_randomisations_are_refused_naming_the_parameter(randomize: Any, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        vector(2, randomize=randomize)
    with pytest.raises(ValueError, match=named):
        gym.make("RaasPendulum-v0", backend="sim", randomize=randomize)


def test_the_latency_cannot_be_given_twice() -> None:
    with pytest.raises(ValueError, match="latency"):
        gym.make("RaasPendulum-v0", backend="sim", latency_s=0.01, randomize={LATENCY: {"range": (0.0, 0.01)}})


def test_the_default_ranges_are_valid_around_the_reference_and_cover_it() -> None:
    ranges = resolve_randomization("default", REFERENCE)
    assert {item.name for item in ranges} == set(DEFAULT_RANGES)
    for item in ranges:
        assert item.low <= float(getattr(REFERENCE, item.name)) <= item.high, item.name


def test_a_rig_around_a_name_is_the_same_for_the_same_name_and_differs_between_names() -> None:
    assert rig_around(REFERENCE, "sim-1") == rig_around(REFERENCE, "sim-1")
    assert rig_around(REFERENCE, "sim-1") != rig_around(REFERENCE, "sim-2")
    assert rig_around(REFERENCE, "sim-1") != REFERENCE


def test_a_robot_is_not_randomised() -> None:
    with pytest.raises(ValueError, match="simulator"):
        gym.make("RaasPendulum-v0", backend="robot", randomize="default")
    with pytest.raises(ValueError, match="only simulates"):
        vector(2, backend="robot", randomize="default")
