"""Each local robot is a rig of its own, and publishes what the calibration routine fits on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gym_raas.params import PendulumParams, load_calibration
from gym_raas.randomization import resolve_randomization
from raas_api.local.platform import LocalPlatform, PlatformConfig
from raas_api.local.robots import ROBOT_SPREAD, DistinctSimDriver, RobotKind, make_robot, robot_calibration, robot_truth

REFERENCE = PendulumParams()
FITTED_CLOSELY = ("natural_frequency_rad_per_s", "motor_stall_acceleration_rad_per_s2")
"""What the fit pins down to a fraction of a percent (see `gym_raas.sysid`)."""


def test_different_names_are_different_rigs_and_the_same_name_the_same_rig() -> None:
    truths = [robot_truth(name, REFERENCE) for name in ("sim-1", "sim-2", "sim-3", "rig-1")]
    assert len({truth.natural_frequency_rad_per_s for truth in truths}) == 4
    assert len({truth.motor_stall_acceleration_rad_per_s2 for truth in truths}) == 4
    assert robot_truth("sim-1", REFERENCE) == truths[0]
    assert all(truth != REFERENCE for truth in truths)


def test_a_robots_rig_lies_within_the_spread_of_real_rigs() -> None:
    ranges = resolve_randomization(ROBOT_SPREAD, REFERENCE)
    for index in range(1, 21):
        truth = robot_truth(f"sim-{index}", REFERENCE)
        for item in ranges:
            assert item.low <= getattr(truth, item.name) <= item.high, (index, item.name)
        assert truth.actuation_latency_s == REFERENCE.actuation_latency_s
        assert truth.control_period_s == REFERENCE.control_period_s


def test_the_calibration_is_fitted_close_to_the_truth_but_is_not_a_copy_of_it(tmp_path: Path) -> None:
    truth = robot_truth("sim-2", REFERENCE)
    calibration = robot_calibration("sim-2", truth, REFERENCE, tmp_path)
    assert calibration != truth
    for name in FITTED_CLOSELY:
        fitted, true, reference = getattr(calibration, name), getattr(truth, name), getattr(REFERENCE, name)
        assert fitted != true
        assert fitted == pytest.approx(true, rel=0.01), name
        assert abs(fitted - true) < abs(reference - true), f"{name} fitted no closer than the reference"
    total = calibration.viscous_damping_per_s + calibration.motor_back_emf_damping_per_s
    assert total == pytest.approx(truth.viscous_damping_per_s + truth.motor_back_emf_damping_per_s, rel=0.1)
    # Cached as a calibration file with the fit report, and read back on the next start.
    (cached,) = tmp_path.glob("sim-2-*.json")
    document = json.loads(cached.read_text())
    assert document["robot"] == "sim-2"
    assert document["fit"]["converged"]
    assert load_calibration(cached) == calibration
    assert robot_calibration("sim-2", truth, REFERENCE, tmp_path) == calibration


def test_a_sim_robot_runs_its_truth_and_reports_its_calibration(tmp_path: Path) -> None:
    robot = make_robot("sim-3", RobotKind.SIM, REFERENCE, cache_dir=tmp_path)
    try:
        assert isinstance(robot.driver, DistinctSimDriver)
        assert robot.truth == robot_truth("sim-3", REFERENCE)
        assert robot.driver.params == robot_calibration("sim-3", robot.truth, REFERENCE, tmp_path)
        assert robot.driver.params != robot.truth
    finally:
        robot.close()


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalPlatform]:
    monkeypatch.setenv("RAAS_CALIBRATION_CACHE", str(tmp_path / "calibrations"))
    with LocalPlatform(PlatformConfig(data_dir=tmp_path / "platform", robots=3)) as running:
        yield running


def test_the_platforms_robots_publish_distinct_fitted_calibrations(platform: LocalPlatform) -> None:
    details = {robot.name: robot for robot in platform.robot_details()}
    assert set(details) == {"sim-1", "sim-2", "sim-3"}
    published = {name: PendulumParams.from_dict(robot.calibration) for name, robot in details.items()}
    assert len({params.natural_frequency_rad_per_s for params in published.values()}) == 3
    for name, params in published.items():
        truth = platform.robot_parts[name].truth
        assert truth is not None
        assert params not in (truth, REFERENCE)
        assert params.natural_frequency_rad_per_s == pytest.approx(truth.natural_frequency_rad_per_s, rel=0.01)
        assert platform.agents[name].params == params
    cached = list((platform.config.data_dir.parent / "calibrations").glob("*.json"))  # for the next platform
    assert sorted(path.name.rsplit("-", 1)[0] for path in cached) == sorted(details)
