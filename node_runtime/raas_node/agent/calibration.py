"""Calibrating a robot: run experiments on it and fit its physics model with `gym_raas.sysid`.

The robot must not be serving jobs (run it from ``raas-agent calibrate`` while the robot is in
maintenance). For each experiment the pendulum is first brought to rest and the encoder zeroed;
then the experiment's commands are applied one per control period, each through the safety
layer's envelope, while the angle is recorded at every boundary. The fitted parameters are
written as the robot's calibration file, which the simulated driver and users' simulators load
(``gym.make("RaasPendulum-v0", calibration=path)``).

The calibration's ``actuation_latency_s`` is what the robot measured, not a guess: the median of
the actuation latencies its agent recorded per step in its recent sessions
(`measured_actuation_latency_s`, from each session's ``trajectory.parquet``), so the twin delays
a command as the robot does. Without recorded sessions the current calibration's value stays.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from gym_raas import sysid
from raas_node.agent.reset import ResetRoutine
from raas_node.agent.safety import SafetyLayer, SafetyLimits
from raas_node.drivers.base import RobotDriver

log = logging.getLogger(__name__)


def record_experiment(
    driver: RobotDriver,
    experiment: sysid.Experiment,
    *,
    limits: SafetyLimits | None = None,
    sleep: Callable[[float], None] = time.sleep,
    reset_timeout_s: float = 30.0,
) -> sysid.RecordedTrajectory:
    """Run one experiment from rest and return what the encoder saw."""
    params = driver.params
    dt = params.control_period_s
    _come_to_rest(driver, dt, reset_timeout_s, sleep)
    driver.zero_encoder()
    safety = SafetyLayer(limits or SafetyLimits(), params.max_command)
    times, angles, commands = [], [], []
    start = time.monotonic()
    for index, command in enumerate([*experiment.commands, 0.0]):
        _sleep_until(start + index * dt, sleep)
        reading = driver.read()
        safe = safety.filter(float(command), reading.theta_dot_rad_per_s, 0.0, dt)
        applied = driver.apply_duty(safe.duty)
        driver.feed_deadman()
        times.append(reading.time_s)
        angles.append(reading.theta_rad)
        commands.append(applied * params.max_command)
    driver.stop_motor()
    return sysid.RecordedTrajectory(np.array(times), np.array(angles), np.array(commands), label=experiment.label)


def calibrate_robot(
    driver: RobotDriver,
    output: Path,
    *,
    robot: str,
    experiments: Sequence[sysid.Experiment] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    recordings: Path | None = None,
) -> sysid.FitResult:
    """Run the experiments, fit the model (starting from the driver's current calibration), set
    the actuation latency the robot's sessions in `recordings` measured (the agent's recordings
    folder; None or no sessions there: the current calibration's) and write the calibration file."""
    chosen = experiments if experiments is not None else sysid.standard_experiments(driver.params)
    recordings_of_experiments = []
    for experiment in chosen:
        log.info(
            "calibration: running %s (%.1f s)",
            experiment.label,
            len(experiment.commands) * driver.params.control_period_s,
        )
        recordings_of_experiments.append(record_experiment(driver, experiment, sleep=sleep))
    result = sysid.fit_params(recordings_of_experiments, initial=driver.params)
    latency = measured_actuation_latency_s(recordings) if recordings is not None else None
    if latency is not None:
        limit = 1.5 * result.params.control_period_s  # (the model's bound: under two periods)
        result = replace(result, params=result.params.replace(actuation_latency_s=min(latency, limit)))
        log.info("calibration: measured actuation latency %.2f ms", latency * 1e3)
    sysid.write_calibration(result, output, robot=robot)
    log.info("calibration of %s written to %s (fit error %.4f rad)", robot, output, result.rmse_rad)
    return result


def measured_actuation_latency_s(recordings: Path, *, max_sessions: int = 50) -> float | None:
    """The median actuation latency (s) over every step of the latest `max_sessions` sessions
    recorded in `recordings` (``<job>/trajectory.parquet``, column ``actuation_latency_s``); None
    when none recorded one (no sessions, or recordings older than the column)."""
    import pyarrow.parquet as pq

    paths = sorted(recordings.glob("*/trajectory.parquet"), key=lambda path: path.stat().st_mtime)[-max_sessions:]
    latencies: list[float] = []
    for path in paths:
        try:
            table = pq.read_table(path, columns=["actuation_latency_s"])
        except (OSError, KeyError, ValueError) as error:  # an unreadable or older recording: skipped
            log.debug("calibration: %s has no actuation latency: %s", path, error)
            continue
        column = table.column("actuation_latency_s").to_pylist()
        latencies.extend(value for value in column if value is not None and math.isfinite(value) and value >= 0)
    return float(np.median(latencies)) if latencies else None


def _come_to_rest(driver: RobotDriver, dt: float, timeout_s: float, sleep: Callable[[float], None]) -> None:
    routine = ResetRoutine(time.monotonic(), timeout_s=timeout_s)
    while True:
        reading = driver.read()
        duty, report = routine.step(reading)
        driver.apply_duty(duty)
        driver.feed_deadman()
        if report is not None:
            driver.stop_motor()
            if not report.ok:
                raise RuntimeError(f"calibration stopped: {report.message}")
            return
        sleep(dt)


def _sleep_until(moment: float, sleep: Callable[[float], None]) -> None:
    remaining = moment - time.monotonic()
    if remaining > 0:
        sleep(remaining)
