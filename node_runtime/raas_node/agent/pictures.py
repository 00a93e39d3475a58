"""``python -m raas_node.agent.pictures TRAJECTORY.parquet PARAMS.json FOLDER TITLE``: a session's
plot and animation, drawn where the recording is.

In a cluster the robot agent hands each job's recording to the result store itself; this draws
``plot.png`` (the robot's angle with the replay of its commands in the robot's calibrated
simulator) and ``animation.gif`` into FOLDER, as the local platform's bundle does, and writes
``analysis.json`` (the summary figures). It runs as its own short process, like the Parquet
writer, so that the agent never holds matplotlib or pyarrow in memory; `draw_session_pictures`
is the agent's call.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gym_raas.params import PendulumParams

PICTURES_TIMEOUT_S = 120.0


def draw_session_pictures(
    trajectory: Path, params: PendulumParams, folder: Path, title: str
) -> tuple[Path, Path] | None:
    """Draw a session's pictures into `folder` in a short-lived process; None when there is nothing
    to draw (no controller step) or drawing failed (logged by the caller: pictures are a courtesy,
    the recording itself is the result)."""
    folder.mkdir(parents=True, exist_ok=True)
    params_path = folder / "params.json"
    params_path.write_text(json.dumps(params.to_dict()))
    completed = subprocess.run(
        [sys.executable, "-m", "raas_node.agent.pictures", str(trajectory), str(params_path), str(folder), title],
        capture_output=True,
        text=True,
        timeout=PICTURES_TIMEOUT_S,
        check=False,
    )
    plot, animation = folder / "plot.png", folder / "animation.gif"
    if completed.returncode != 0:
        raise RuntimeError(f"drawing the pictures failed: {completed.stderr.strip()[-500:]}")
    return (plot, animation) if plot.exists() and animation.exists() else None


def _main(trajectory: Path, params_path: Path, folder: Path, title: str) -> None:
    from gym_raas.results.analysis import analyse, draw_pictures
    from raas_node.agent.recorder import read_trajectory

    params = PendulumParams.from_dict(json.loads(params_path.read_text()))
    analysis = analyse(read_trajectory(trajectory), params)
    draw_pictures(analysis, folder, title=title)
    (folder / "analysis.json").write_text(json.dumps(analysis.summary, default=str))


if __name__ == "__main__":
    _main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
