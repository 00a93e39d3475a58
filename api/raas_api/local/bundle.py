"""A job's result bundle, built from the agent's recording and the runner's outputs.

Writes, under the results layout's prefix: ``trajectory.parquet`` (the agent's ground truth),
``stdout.txt``, ``stderr.txt``, ``plot.png`` (with the sim-to-real overlay), ``animation.gif``
and ``metadata.json`` (job, robot, calibration, phases, timings and the summary).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from gym_raas.params import PendulumParams
from gym_raas.results.analysis import analyse, draw_pictures
from gym_raas.results.layout import ResultFile, result_key
from gym_raas.results.store import ResultStore
from raas_node.agent.recorder import read_trajectory


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
    store.put_file(result_key(job_id, ResultFile.STDOUT), stdout, ResultFile.STDOUT.content_type)
    store.put_file(result_key(job_id, ResultFile.STDERR), stderr, ResultFile.STDERR.content_type)
    summary: dict[str, Any] = {"steps": 0}
    if recording is not None and recording.exists():
        analysis = analyse(read_trajectory(recording), params)
        summary = analysis.summary
        store.put_file(result_key(job_id, ResultFile.TRAJECTORY), recording, ResultFile.TRAJECTORY.content_type)
        with tempfile.TemporaryDirectory() as scratch:
            pictures = draw_pictures(analysis, Path(scratch), title=job_id)
            if pictures is not None:
                plot, animation = pictures
                store.put_file(result_key(job_id, ResultFile.PLOT), plot, ResultFile.PLOT.content_type)
                store.put_file(result_key(job_id, ResultFile.ANIMATION), animation, ResultFile.ANIMATION.content_type)
    document = {**metadata, "summary": summary, "layout": "results/v1"}
    store.put_bytes(
        result_key(job_id, ResultFile.METADATA),
        json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
        ResultFile.METADATA.content_type,
    )
    return summary
