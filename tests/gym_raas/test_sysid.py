"""System identification recovers a rig from messy data and writes a calibration the env loads."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from gym_raas import sysid
from gym_raas.params import PendulumParams, load_calibration

TRUE_RIG = PendulumParams(
    natural_frequency_rad_per_s=5.1,
    viscous_damping_per_s=0.3,
    motor_back_emf_damping_per_s=0.5,
    coulomb_friction_rad_per_s2=0.12,
    motor_stall_acceleration_rad_per_s2=15.0,
    motor_deadband_duty=0.06,
)


@pytest.fixture(scope="module")
def messy_recordings() -> list[sysid.RecordedTrajectory]:
    """Quantised encoder angles, sample intervals drawn from 30–70 ms, 0.5 ms clock jitter."""
    rng = np.random.default_rng(7)
    return [
        sysid.simulate_experiment(TRUE_RIG, experiment, rng, sample_interval_s=(0.03, 0.07), timestamp_jitter_s=5e-4)
        for experiment in sysid.standard_experiments(TRUE_RIG)
    ]


@pytest.fixture(scope="module")
def fitted(messy_recordings: list[sysid.RecordedTrajectory]) -> sysid.FitResult:
    return sysid.fit_params(messy_recordings, initial=PendulumParams())  # starts from the reference rig


@pytest.mark.parametrize(
    "name",
    [
        "natural_frequency_rad_per_s",
        "coulomb_friction_rad_per_s2",
        "motor_stall_acceleration_rad_per_s2",
        "motor_deadband_duty",
    ],
)
def test_fit_recovers_each_rig_parameter_within_5_percent_from_quantised_irregular_data(
    fitted: sysid.FitResult, name: str
) -> None:
    assert getattr(fitted.params, name) == pytest.approx(getattr(TRUE_RIG, name), rel=0.05)


def test_fit_recovers_the_total_linear_damping_within_5_percent(fitted: sysid.FitResult) -> None:
    total = fitted.params.viscous_damping_per_s + fitted.params.motor_back_emf_damping_per_s
    assert total == pytest.approx(0.8, rel=0.05)


def test_fit_reports_the_error_of_every_trajectory(
    fitted: sysid.FitResult, messy_recordings: list[sysid.RecordedTrajectory]
) -> None:
    assert fitted.converged
    assert [fit.label for fit in fitted.per_trajectory] == [recording.label for recording in messy_recordings]
    resolution = TRUE_RIG.encoder_resolution_rad
    for fit in fitted.per_trajectory:
        assert fit.samples > 100
        assert fit.rmse_rad < 2 * resolution  # about the encoder's own quantisation
    report = fitted.to_report()
    assert report["trajectories"][0]["label"] == "free-swing-small"


def test_calibration_file_round_trips_and_the_simulator_loads_it(fitted: sysid.FitResult, tmp_path: Path) -> None:
    path = sysid.write_calibration(fitted, tmp_path / "pendulum-07.json", robot="pendulum-07")
    assert load_calibration(path) == fitted.params
    env = gym.make("RaasPendulum-v0", calibration=path, backend="sim")
    assert env.unwrapped.params == fitted.params  # type: ignore[attr-defined]
    env.close()


def test_a_single_free_swing_with_unknown_start_speed_identifies_gravity(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    kick = sysid.Experiment("kick", np.concatenate([np.full(8, 2.0), np.zeros(140)]))
    recording = sysid.simulate_experiment(TRUE_RIG, kick, rng, sample_interval_s=(0.02, 0.09))
    # Drop the kick: the fit sees a swing already under way, at an unknown speed.
    start = np.searchsorted(recording.time_s, 0.6)
    swing = sysid.RecordedTrajectory(
        recording.time_s[start:], recording.theta_rad[start:], recording.command[start:], "mid-swing"
    )
    result = sysid.fit_params([swing], fit=["natural_frequency_rad_per_s", "linear_damping_per_s"])
    assert result.params.natural_frequency_rad_per_s == pytest.approx(5.1, rel=0.02)


@pytest.mark.parametrize(
    ("columns", "complaint"),
    [
        (([0.0, 0.1, 0.2], [0.0, np.nan, 0.1], [0.0, 0.0, 0.0]), "NaN"),
        (([0.0, 0.2, 0.1], [0.0, 0.1, 0.2], [0.0, 0.0, 0.0]), "strictly increasing"),
        (([0.0, 0.1, 0.2], [0.0, 0.1], [0.0, 0.0, 0.0]), "different lengths"),
    ],
)
def test_malformed_recordings_are_refused_with_a_clear_message(
    columns: tuple[list[float], ...], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        sysid.RecordedTrajectory(*(np.array(column) for column in columns), label="bad")


def test_asking_to_fit_an_unknown_parameter_is_an_error(messy_recordings: list[sysid.RecordedTrajectory]) -> None:
    with pytest.raises(ValueError, match="cannot fit"):
        sysid.fit_params(messy_recordings[:1], fit=["encoder_counts_per_rev"])
