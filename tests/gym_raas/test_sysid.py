"""System identification recovers a rig from messy data and writes a calibration the env loads."""

from __future__ import annotations

import json
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
"""A rig that differs from the reference rig (the fit's starting point) in every fitted value."""

COUNT_RAD = TRUE_RIG.encoder_resolution_rad
IDENTIFIED = [
    "natural_frequency_rad_per_s",
    "coulomb_friction_rad_per_s2",
    "motor_stall_acceleration_rad_per_s2",
    "motor_deadband_duty",
]


def total_damping(params: PendulumParams) -> float:
    return params.viscous_damping_per_s + params.motor_back_emf_damping_per_s


def record(
    rig: PendulumParams, seed: int, interval_s: tuple[float, float] = (0.03, 0.07)
) -> tuple[list[sysid.RecordedTrajectory], list[float]]:
    """The standard experiments on `rig`, each started at a random speed the fit is not told."""
    rng = np.random.default_rng(seed)
    recordings, speeds = [], []
    for experiment in sysid.standard_experiments():
        speed = float(rng.uniform(-1.5, 1.5))
        recordings.append(
            sysid.simulate_experiment(
                rig,
                experiment,
                rng,
                sample_interval_s=interval_s,
                timestamp_jitter_s=5e-4,
                initial_theta_dot_rad_per_s=speed,
            )
        )
        speeds.append(speed)
    return recordings, speeds


@pytest.fixture(scope="module")
def messy() -> tuple[list[sysid.RecordedTrajectory], list[float]]:
    """480-count angles, sample intervals drawn from 30–70 ms, 0.5 ms clock jitter, unknown start speed."""
    return record(TRUE_RIG, seed=7)


@pytest.fixture(scope="module")
def fitted(messy: tuple[list[sysid.RecordedTrajectory], list[float]]) -> sysid.FitResult:
    return sysid.fit_params(messy[0], initial=PendulumParams())  # starts from the reference rig


@pytest.mark.parametrize("name", IDENTIFIED)
def test_fit_recovers_each_rig_parameter_within_5_percent_from_quantised_irregular_data(
    fitted: sysid.FitResult, name: str
) -> None:
    assert getattr(fitted.params, name) == pytest.approx(getattr(TRUE_RIG, name), rel=0.05)


def test_fit_recovers_the_total_linear_damping_within_5_percent_and_keeps_the_initial_split(
    fitted: sysid.FitResult,
) -> None:
    assert total_damping(fitted.params) == pytest.approx(total_damping(TRUE_RIG), rel=0.05)
    reference = PendulumParams()
    split = reference.viscous_damping_per_s / total_damping(reference)
    assert fitted.params.viscous_damping_per_s / total_damping(fitted.params) == pytest.approx(split)


def test_fit_leaves_structural_parameters_as_given(fitted: sysid.FitResult) -> None:
    reference = PendulumParams()
    for name in ("encoder_counts_per_rev", "pwm_duty_steps", "control_period_s", "max_command", "actuation_latency_s"):
        assert getattr(fitted.params, name) == getattr(reference, name)


def test_fit_reports_an_error_near_the_encoder_resolution_for_every_trajectory(
    fitted: sysid.FitResult, messy: tuple[list[sysid.RecordedTrajectory], list[float]]
) -> None:
    recordings, _ = messy
    assert fitted.converged
    assert [fit.label for fit in fitted.per_trajectory] == [recording.label for recording in recordings]
    for fit, recording in zip(fitted.per_trajectory, recordings, strict=True):
        assert fit.samples == len(recording.time_s)
        assert fit.rmse_rad < 0.5 * COUNT_RAD  # quantisation alone is 0.29 counts RMS
        assert fit.max_error_rad < 2 * COUNT_RAD
    assert fitted.rmse_rad < 0.5 * COUNT_RAD


def test_fit_finds_the_unknown_initial_speed_of_every_trajectory(
    fitted: sysid.FitResult, messy: tuple[list[sysid.RecordedTrajectory], list[float]]
) -> None:
    _, speeds = messy
    found = [fit.initial_theta_dot_rad_per_s for fit in fitted.per_trajectory]
    assert found == pytest.approx(speeds, abs=0.05)


def test_predict_replays_the_fit_of_a_trajectory(
    fitted: sysid.FitResult, messy: tuple[list[sysid.RecordedTrajectory], list[float]]
) -> None:
    recording, fit = messy[0][0], fitted.per_trajectory[0]
    model = sysid.predict(recording, fitted.params, fit.initial_theta_dot_rad_per_s, fit.initial_theta_offset_rad)
    assert np.sqrt(np.mean((model - recording.theta_rad) ** 2)) == pytest.approx(fit.rmse_rad)


def test_calibration_file_round_trips_and_the_simulator_loads_it(fitted: sysid.FitResult, tmp_path: Path) -> None:
    path = sysid.write_calibration(fitted, tmp_path / "pendulum-07.json", robot="pendulum-07")
    assert load_calibration(path) == fitted.params
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["robot"] == "pendulum-07"
    assert document["fit"]["trajectories"][0]["label"] == "free-swing-small"
    assert set(document["fit"]["fitted"]) == set(sysid.DEFAULT_FIT_FIELDS)
    env = gym.make("RaasPendulum-v0", calibration=path, backend="sim")
    assert env.unwrapped.params == fitted.params  # type: ignore[attr-defined]
    env.close()


def test_fit_survives_very_irregular_timestamps_gaps_and_encoder_glitches() -> None:
    rng = np.random.default_rng(11)
    recordings = []
    for experiment in sysid.standard_experiments():
        intervals = rng.uniform(0.01, 0.12, size=int(experiment.duration_s(TRUE_RIG) / 0.01))
        intervals[rng.integers(5, 40)] = 0.25  # the recorder stalled; the motor held its command
        times = np.concatenate([[0.0], np.cumsum(intervals)])
        times = times[times <= experiment.duration_s(TRUE_RIG) + 0.12]
        recording = sysid.simulate_experiment(TRUE_RIG, experiment, rng, time_s=times, timestamp_jitter_s=5e-4)
        theta = recording.theta_rad.copy()
        theta[rng.choice(len(theta), 2, replace=False)] += 0.4  # two glitched reads
        recordings.append(sysid.RecordedTrajectory(recording.time_s, theta, recording.command, recording.label))
    result = sysid.fit_params(recordings)
    for name in IDENTIFIED:
        # Coulomb friction is the faintest effect; sparser samples (65 ms on average) blur it most.
        tolerance = 0.1 if name == "coulomb_friction_rad_per_s2" else 0.05
        assert getattr(result.params, name) == pytest.approx(getattr(TRUE_RIG, name), rel=tolerance), name
    assert total_damping(result.params) == pytest.approx(total_damping(TRUE_RIG), rel=0.05)
    assert max(fit.max_error_rad for fit in result.per_trajectory) == pytest.approx(0.4, abs=0.05)  # the glitches


def test_a_bump_during_a_recording_is_left_out_of_the_fit_and_reported() -> None:
    recordings, _ = record(TRUE_RIG, seed=2)
    rng = np.random.default_rng(2)
    swing = np.concatenate([np.full(8, 1.0), np.zeros(72)])
    before = sysid.simulate_experiment(TRUE_RIG, swing, rng, sample_interval_s=(0.03, 0.07))
    # Someone nudges the pendulum: it goes on from the same angle at a speed the model cannot explain.
    after = sysid.simulate_experiment(
        TRUE_RIG, np.zeros(100), rng, sample_interval_s=(0.03, 0.07),
        initial_theta_rad=float(before.theta_rad[-1]), initial_theta_dot_rad_per_s=3.0,
    )  # fmt: skip
    bumped = sysid.RecordedTrajectory(
        np.concatenate([before.time_s, before.time_s[-1] + 0.05 + after.time_s]),
        np.concatenate([before.theta_rad, after.theta_rad]),
        np.concatenate([before.command, after.command]),
        label="bumped",
    )
    result = sysid.fit_params([*recordings, bumped])
    report = result.per_trajectory[-1]
    assert report.pieces == 2
    assert 0 < report.excluded_samples < 0.3 * len(bumped.time_s)
    assert report.samples + report.excluded_samples == len(bumped.time_s)
    assert report.rmse_rad < 0.5 * COUNT_RAD
    for name in IDENTIFIED:
        assert getattr(result.params, name) == pytest.approx(getattr(TRUE_RIG, name), rel=0.05), name


def test_fit_converges_from_a_start_far_from_the_truth() -> None:
    rig = TRUE_RIG.replace(natural_frequency_rad_per_s=6.2, motor_stall_acceleration_rad_per_s2=21.0)
    recordings, _ = record(rig, seed=3)
    start = PendulumParams(natural_frequency_rad_per_s=5.0, motor_stall_acceleration_rad_per_s2=14.0)
    result = sysid.fit_params(recordings, initial=start)
    assert result.params.natural_frequency_rad_per_s == pytest.approx(6.2, rel=0.01)
    assert result.params.motor_stall_acceleration_rad_per_s2 == pytest.approx(21.0, rel=0.02)
    assert result.rmse_rad < 0.5 * COUNT_RAD


def test_a_single_free_swing_already_under_way_identifies_gravity() -> None:
    rng = np.random.default_rng(3)
    kick = sysid.Experiment("kick", np.concatenate([np.full(8, 2.0), np.zeros(140)]))
    recording = sysid.simulate_experiment(TRUE_RIG, kick, rng, sample_interval_s=(0.02, 0.09))
    swing = recording.window(0.6, np.inf, label="mid-swing")  # drop the kick: start speed unknown
    result = sysid.fit_params([swing], fit=["natural_frequency_rad_per_s", sysid.LINEAR_DAMPING])
    assert result.params.natural_frequency_rad_per_s == pytest.approx(5.1, rel=0.02)
    assert result.per_trajectory[0].label == "mid-swing"


def test_wrapped_angles_of_a_swing_over_the_top_are_unwrapped() -> None:
    rng = np.random.default_rng(1)
    recording = sysid.simulate_experiment(TRUE_RIG, np.zeros(60), rng, initial_theta_dot_rad_per_s=12.0)
    assert np.ptp(recording.theta_rad) > 2 * np.pi  # went round at least once: stored unwrapped
    result = sysid.fit_params([recording], initial=TRUE_RIG, fit=())
    assert result.rmse_rad < COUNT_RAD


def test_simulated_recordings_look_like_the_robots() -> None:
    rng = np.random.default_rng(2)
    experiment = sysid.standard_experiments()[0]
    recording = sysid.simulate_experiment(TRUE_RIG, experiment, rng, sample_interval_s=(0.03, 0.07))
    counts = (recording.theta_rad - np.pi) / COUNT_RAD
    assert counts == pytest.approx(np.round(counts), abs=1e-9)  # on the encoder's grid
    assert np.diff(recording.time_s) == pytest.approx(np.clip(np.diff(recording.time_s), 0.03, 0.07), abs=1e-3)
    assert recording.time_s[-1] >= experiment.duration_s(TRUE_RIG)
    regular = sysid.simulate_experiment(TRUE_RIG, experiment, rng)
    assert np.diff(regular.time_s) == pytest.approx(TRUE_RIG.control_period_s)
    assert regular.command[: len(experiment.commands)] == pytest.approx(experiment.commands)


@pytest.mark.parametrize(
    ("columns", "complaint"),
    [
        (([0.0, 0.1, 0.2], [0.0, np.nan, 0.1], [0.0, 0.0, 0.0]), "theta_rad contains NaN"),
        (([0.0, 0.1, 0.2], [0.0, 0.1, 0.2], [0.0, np.inf, 0.0]), "command contains NaN or infinite"),
        (([0.0, 0.2, 0.1], [0.0, 0.1, 0.2], [0.0, 0.0, 0.0]), "strictly increasing"),
        (([0.0, 0.1, 0.1], [0.0, 0.1, 0.2], [0.0, 0.0, 0.0]), "strictly increasing"),
        (([0.0, 0.1, 0.2], [0.0, 0.1], [0.0, 0.0, 0.0]), "different lengths"),
        (([0.0, 0.1], [0.0, 0.1], [0.0, 0.0]), "at least 3 samples"),
        (([[0.0, 0.1, 0.2]], [[0.0, 0.1, 0.2]], [[0.0, 0.0, 0.0]]), "1-D"),
    ],
)
def test_malformed_recordings_are_refused_with_a_clear_message(
    columns: tuple[list[float], list[float], list[float]], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        sysid.RecordedTrajectory.from_columns(columns[0], columns[1], columns[2], label="bad")


def test_asking_to_fit_an_unknown_parameter_is_an_error(
    messy: tuple[list[sysid.RecordedTrajectory], list[float]],
) -> None:
    with pytest.raises(ValueError, match="cannot fit encoder_counts_per_rev"):
        sysid.fit_params(messy[0][:1], fit=["encoder_counts_per_rev"])


def test_asking_to_fit_both_damping_terms_is_refused_as_unidentifiable(
    messy: tuple[list[sysid.RecordedTrajectory], list[float]],
) -> None:
    with pytest.raises(ValueError, match="only identify their sum"):
        sysid.fit_params(messy[0][:1], fit=["viscous_damping_per_s", "motor_back_emf_damping_per_s"])


def test_fitting_without_recordings_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one recorded trajectory"):
        sysid.fit_params([])
