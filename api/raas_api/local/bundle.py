"""A job's result bundle, built from the agent's recording and the runner's outputs.

Writes, under the results layout's prefix: ``trajectory.parquet`` (the agent's ground truth),
``stdout.txt``, ``stderr.txt``, ``plot.png`` (with the sim-to-real overlay), ``animation.gif``
and ``metadata.json`` (job, robot, calibration, phases, timings and the summary).
"""

from __future__ import annotations

import json
import math
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gym_raas.params import PendulumParams
from gym_raas.results.layout import ResultFile, result_key
from gym_raas.results.replay import replay_commands
from gym_raas.results.store import ResultStore
from gym_raas.trajectory import Trajectory
from raas_node.agent.recorder import read_trajectory

REPLAY_HORIZON_S = 0.25
"""The simulator is re-synchronised to the robot's measured state every 0.25 s of the replay: near the
unstable upright, errors grow about e^(ω₀ t), so longer open-loop horizons measure chaos, not the model."""


@dataclass(frozen=True)
class Analysis:
    """What the bundle shows of a recording, computed once."""

    viewing: Trajectory
    """The boundaries at which the client's commands were applied."""
    simulated_theta_rad: NDArray[np.float64]
    """The sim-to-real replay's angle at those same boundaries."""
    summary: dict[str, Any]


def analyse(columns: dict[str, list[Any]], params: PendulumParams) -> Analysis:
    """Viewing trajectory, sim-to-real replay and summary figures of a recording."""
    fresh = [index for index, requested in enumerate(columns["requested_command"]) if requested is not None]
    viewing = Trajectory()
    for index in fresh:
        viewing.append(
            columns["time_s"][index],
            columns["theta_rad"][index],
            columns["theta_dot_rad_per_s"][index],
            columns["applied_command"][index],
            columns["reward"][index],
        )
    replay = replay_commands(
        np.asarray(columns["time_s"], dtype=float),
        np.asarray(columns["theta_rad"], dtype=float),
        np.asarray(columns["applied_command"], dtype=float),
        params,
        theta_dot_rad_per_s=np.asarray(columns["theta_dot_rad_per_s"], dtype=float),
        resync_every_s=REPLAY_HORIZON_S,
    )
    latencies = [value for value in columns.get("loop_latency_s", []) if value is not None and math.isfinite(value)]
    summary = viewing.summary()
    summary.update(
        sim_to_real_rmse_rad=replay.rmse_rad if columns["time_s"] else None,
        loop_latency_p99_s=float(np.percentile(latencies, 99)) if latencies else None,
    )
    return Analysis(viewing, replay.theta_rad[fresh], summary)


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
        analysis = analyse(read_trajectory(recording), params)
        summary = analysis.summary
        store.put_file(result_key(job_id, ResultFile.TRAJECTORY), recording, ResultFile.TRAJECTORY.content_type)
        if len(analysis.viewing):
            with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(2) as pictures:
                # Both are mostly numpy and Pillow work that releases the GIL: drawn side by side.
                plotting = pictures.submit(
                    plot_trajectory,
                    analysis.viewing,
                    Path(scratch) / "plot.png",
                    simulated_theta_rad=analysis.simulated_theta_rad,
                    title=job_id,
                )
                animation = animate_trajectory(analysis.viewing, Path(scratch) / "animation.gif")
                plot = plotting.result()
                store.put_file(result_key(job_id, ResultFile.PLOT), plot, ResultFile.PLOT.content_type)
                store.put_file(result_key(job_id, ResultFile.ANIMATION), animation, ResultFile.ANIMATION.content_type)
    document = {**metadata, "summary": summary, "layout": "results/v1"}
    store.put_bytes(
        result_key(job_id, ResultFile.METADATA),
        json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
        ResultFile.METADATA.content_type,
    )
    return summary
