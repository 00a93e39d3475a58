"""A job's result bundle, built from the agent's recording and the runner's outputs.

Writes, under the results layout's prefix: ``trajectory.parquet`` (the agent's ground truth),
``stdout.txt``, ``stderr.txt``, ``plot.png`` (with the sim-to-real overlay), ``animation.gif``
and ``metadata.json`` (job, robot, calibration, phases, timings and the summary).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gym_raas.params import PendulumParams
from gym_raas.results.layout import ResultFile, result_key
from gym_raas.results.replay import replay_commands
from gym_raas.results.store import ResultStore
from gym_raas.trajectory import Trajectory
from raas_node.agent.recorder import read_trajectory


def trajectory_for_viewing(columns: dict[str, list[Any]]) -> Trajectory:
    """The recorded boundaries at which the client's commands were applied, as a `Trajectory`."""
    trajectory = Trajectory()
    for index, requested in enumerate(columns["requested_command"]):
        if requested is None:
            continue
        trajectory.append(
            columns["time_s"][index],
            columns["theta_rad"][index],
            columns["theta_dot_rad_per_s"][index],
            columns["applied_command"][index],
            columns["reward"][index],
        )
    return trajectory


def summarise(columns: dict[str, list[Any]], params: PendulumParams) -> dict[str, Any]:
    """Summary figures and the sim-to-real replay error of a recording."""
    viewing = trajectory_for_viewing(columns)
    summary = viewing.summary()
    replay = _replay(columns, params) if columns["time_s"] else None
    latencies = [value for value in columns.get("loop_latency_s", []) if value is not None and math.isfinite(value)]
    summary.update(
        sim_to_real_rmse_rad=None if replay is None else replay.rmse_rad,
        loop_latency_p99_s=float(np.percentile(latencies, 99)) if latencies else None,
    )
    return summary


REPLAY_HORIZON_S = 0.25
"""The simulator is re-synchronised to the robot's measured state every 0.25 s of the replay: near the
unstable upright, errors grow about e^(ω₀ t), so longer open-loop horizons measure chaos, not the model."""


def _replay(columns: dict[str, list[Any]], params: PendulumParams) -> Any:
    return replay_commands(
        np.asarray(columns["time_s"], dtype=float),
        np.asarray(columns["theta_rad"], dtype=float),
        np.asarray(columns["applied_command"], dtype=float),
        params,
        theta_dot_rad_per_s=np.asarray(columns["theta_dot_rad_per_s"], dtype=float),
        resync_every_s=REPLAY_HORIZON_S,
    )


def write_bundle(
    store: ResultStore,
    job_id: str,
    *,
    recording: Path | None,
    stdout: Path,
    stderr: Path,
    params: PendulumParams,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Store every file of the bundle; returns the summary (also inside metadata.json)."""
    from gym_raas.viz import animate_trajectory, plot_trajectory

    store.put_file(result_key(job_id, ResultFile.STDOUT), stdout, ResultFile.STDOUT.content_type)
    store.put_file(result_key(job_id, ResultFile.STDERR), stderr, ResultFile.STDERR.content_type)
    summary: dict[str, Any] = {"steps": 0}
    if recording is not None and recording.exists():
        columns = read_trajectory(recording)
        summary = summarise(columns, params)
        store.put_file(result_key(job_id, ResultFile.TRAJECTORY), recording, ResultFile.TRAJECTORY.content_type)
        viewing = trajectory_for_viewing(columns)
        if len(viewing):
            with tempfile.TemporaryDirectory() as scratch:
                replay = _replay(columns, params)
                fresh = [index for index, value in enumerate(columns["requested_command"]) if value is not None]
                plot = plot_trajectory(
                    viewing, Path(scratch) / "plot.png", simulated_theta_rad=replay.theta_rad[fresh], title=job_id
                )
                animation = animate_trajectory(viewing, Path(scratch) / "animation.gif")
                store.put_file(result_key(job_id, ResultFile.PLOT), plot, ResultFile.PLOT.content_type)
                store.put_file(result_key(job_id, ResultFile.ANIMATION), animation, ResultFile.ANIMATION.content_type)
    document = {**metadata, "summary": summary, "layout": "results/v1"}
    store.put_bytes(
        result_key(job_id, ResultFile.METADATA),
        json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
        ResultFile.METADATA.content_type,
    )
    return summary
