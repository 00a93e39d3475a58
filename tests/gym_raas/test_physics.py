"""The rig model behaves like the physics it claims: period, decay, equilibrium, energy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gym_raas.array_ops import NUMPY_OPS, SCALAR_OPS
from gym_raas.dynamics import DynamicsCoefficients, command_to_duty, mechanical_energy
from gym_raas.params import CalibrationError, PendulumParams, load_calibration, save_calibration
from gym_raas.simulator import HANGING_RAD, PendulumSimulator


def swing(params: PendulumParams, amplitude_rad: float, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    simulator = PendulumSimulator(params)
    simulator.reset(np.random.default_rng(0), HANGING_RAD + amplitude_rad, 0.0)
    steps = round(seconds / params.control_period_s)
    times, angles = np.zeros(steps), np.zeros(steps)
    for index in range(steps):
        simulator.step(0.0)
        times[index] = simulator.time_s
        angles[index] = simulator.theta - HANGING_RAD
    return times, angles


def upward_zero_crossings(times: np.ndarray, angles: np.ndarray) -> np.ndarray:
    index = np.nonzero((angles[:-1] < 0) & (angles[1:] >= 0))[0]
    fraction = -angles[index] / (angles[index + 1] - angles[index])
    return times[index] + fraction * (times[index + 1] - times[index])


def test_small_angle_period_matches_the_natural_frequency() -> None:
    params = PendulumParams(
        viscous_damping_per_s=0.0, motor_back_emf_damping_per_s=0.0, coulomb_friction_rad_per_s2=0.0
    )
    params = params.replace(physics_substeps=50)
    times, angles = swing(params, 0.05, 20.0)
    periods = np.diff(upward_zero_crossings(times, angles))
    expected = 2 * math.pi / params.natural_frequency_rad_per_s
    assert periods.mean() == pytest.approx(expected, rel=0.01)


def test_free_swing_decays_at_the_rate_of_the_reference_rig() -> None:
    # Sampled every 5 ms so that the peaks are seen where they are.
    params = PendulumParams().replace(control_period_s=0.005, physics_substeps=1, actuation_latency_s=0.0)
    times, angles = swing(params, 0.5, 6.0)
    peaks = [angles[i] for i in range(1, len(angles) - 1) if angles[i - 1] < angles[i] > angles[i + 1]]
    peak_times = [times[i] for i in range(1, len(angles) - 1) if angles[i - 1] < angles[i] > angles[i + 1]]
    rate = -np.polyfit(peak_times, np.log(peaks), 1)[0]
    assert 0.3 < rate < 0.5  # reference rig: ≈ 0.4 /s


def test_steady_angle_under_constant_command_matches_the_model_equilibrium() -> None:
    params = PendulumParams()
    for command in (2.0, 1.0, -1.2):
        simulator = PendulumSimulator(params)
        simulator.reset(np.random.default_rng(0))
        for _ in range(600):
            simulator.step(command)
        duty = command_to_duty(command, DynamicsCoefficients.from_params(params), SCALAR_OPS)
        expected = math.copysign(params.holding_angle_from_hanging_rad(duty), command)
        # Coulomb friction lets the pendulum stop anywhere in a band of sin⁻¹(f_c / ω₀²).
        band = math.asin(params.coulomb_friction_rad_per_s2 / params.natural_frequency_rad_per_s**2) + 1e-3
        assert simulator.theta - HANGING_RAD == pytest.approx(expected, abs=band)
    assert math.degrees(params.holding_angle_from_hanging_rad(1.0)) == pytest.approx(35.0, abs=1.0)


def test_the_integrator_does_not_create_energy() -> None:
    lossless = PendulumParams(
        viscous_damping_per_s=0.0, motor_back_emf_damping_per_s=0.0, coulomb_friction_rad_per_s2=0.0
    )
    simulator = PendulumSimulator(lossless, batch_size=3)
    simulator.reset(np.random.default_rng(0), np.array([HANGING_RAD + 0.3, HANGING_RAD + 2.5, 0.4]), 0.0)
    start = mechanical_energy(simulator.theta, simulator.theta_dot, lossless, NUMPY_OPS)
    energies = []
    for _ in range(20000):  # 1000 s, ≈ 850 swings
        simulator.step(np.zeros(3))
        energies.append(mechanical_energy(simulator.theta, simulator.theta_dot, lossless, NUMPY_OPS))
    drift = (np.array(energies) - start) / start
    # Symplectic Euler: the energy error oscillates within a band set by the step size and
    # shows no secular growth between the first and the last 100 s.
    assert np.abs(drift).max() < 0.02
    first, last = drift[:2000].mean(axis=0), drift[-2000:].mean(axis=0)
    assert np.abs(last - first).max() < 1e-3


def test_energy_only_decreases_with_friction_and_no_command() -> None:
    params = PendulumParams()
    simulator = PendulumSimulator(params)
    simulator.reset(np.random.default_rng(0), HANGING_RAD + 2.0, 0.0)
    previous = mechanical_energy(simulator.theta, simulator.theta_dot, params, SCALAR_OPS)
    for _ in range(400):
        simulator.step(0.0)
        energy = mechanical_energy(simulator.theta, simulator.theta_dot, params, SCALAR_OPS)
        assert energy <= previous + 1e-3 * max(previous, 1.0)
        previous = energy


def test_motor_deadband_absorbs_small_commands() -> None:
    params = PendulumParams()
    simulator = PendulumSimulator(params)
    simulator.reset(np.random.default_rng(0))
    small = 0.5 * params.motor_deadband_duty * params.max_command
    for _ in range(100):
        simulator.step(small)
    assert simulator.theta == pytest.approx(HANGING_RAD, abs=1e-9)


def test_command_reaches_the_motor_after_the_actuation_latency() -> None:
    params = PendulumParams().replace(actuation_latency_s=0.052)  # the earlier boundary rule
    simulator = PendulumSimulator(params)
    simulator.reset(np.random.default_rng(0))
    simulator.step(2.0)
    assert simulator.theta == pytest.approx(HANGING_RAD, abs=1e-12)  # one period of latency
    simulator.step(2.0)
    assert simulator.theta > HANGING_RAD + 1e-3


def test_a_command_applied_on_arrival_acts_within_its_own_period() -> None:
    params = PendulumParams()
    assert params.actuation_latency_s < 0.01  # a few milliseconds: the agent applies on arrival
    simulator = PendulumSimulator(params)
    simulator.reset(np.random.default_rng(0))
    simulator.step(2.0)
    assert simulator.theta > HANGING_RAD + 1e-3


def test_a_later_command_in_the_period_moves_the_pendulum_less() -> None:
    moved = []
    for latency_s in (0.0, 0.0125, 0.025, 0.049):
        simulator = PendulumSimulator(PendulumParams())
        simulator.reset(np.random.default_rng(0))
        simulator.step(2.0, latency_s=latency_s)
        moved.append(simulator.theta - HANGING_RAD)
    assert moved == sorted(moved, reverse=True)
    assert moved[-1] > 0.0
    with pytest.raises(ValueError, match="two control periods"):
        PendulumSimulator(PendulumParams()).step(2.0, latency_s=0.1)


def test_pwm_duty_is_quantised_to_the_driver_resolution() -> None:
    coefficients = DynamicsCoefficients.from_params(PendulumParams(pwm_duty_steps=10))
    assert command_to_duty(0.33, coefficients, SCALAR_OPS) == pytest.approx(0.2)
    assert command_to_duty(9.0, coefficients, SCALAR_OPS) == pytest.approx(1.0)


def test_velocity_estimate_tracks_the_true_speed_of_a_swing() -> None:
    params = PendulumParams()
    simulator = PendulumSimulator(params)
    simulator.reset(np.random.default_rng(0), HANGING_RAD + 1.5, 0.0)
    errors = []
    for _ in range(100):
        simulator.step(0.0)
        errors.append(simulator.measured_theta_dot - simulator.theta_dot)
    # Edge-timing estimates lag by about half a period at most; well under a rad/s here.
    assert np.sqrt(np.mean(np.square(errors))) < 0.8


def test_calibration_round_trips_and_rejects_nonsense(tmp_path: object) -> None:
    from pathlib import Path

    params = PendulumParams(natural_frequency_rad_per_s=5.1, encoder_counts_per_rev=445)
    path = save_calibration(
        Path(str(tmp_path)) / "cal.json", params, robot="pendulum-01", fit_report={"rmse_rad": 0.01}
    )
    assert load_calibration(path) == params
    with pytest.raises(CalibrationError, match="must be > 0"):
        PendulumParams(natural_frequency_rad_per_s=-1.0)
    with pytest.raises(CalibrationError, match="unknown parameter"):
        PendulumParams.from_dict({"k": 1.0})
    with pytest.raises(CalibrationError, match="whole number"):
        PendulumParams.from_dict({"encoder_counts_per_rev": 480.5})
    (Path(str(tmp_path)) / "bad.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        load_calibration(Path(str(tmp_path)) / "bad.json")
