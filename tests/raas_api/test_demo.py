"""``raas demo`` with the local platform installed: the example runs as a job on a simulated robot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_raas_demo_runs_the_example_as_a_job_on_the_local_platform(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "gym_raas.cli.main", "demo", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr + completed.stdout
    output = tmp_path / "out"
    for name in ("metadata.json", "trajectory.parquet", "stdout.txt", "stderr.txt", "code.tar.gz", "plot.png",
                 "animation.gif", "summary.json"):  # fmt: skip
        assert (output / name).is_file(), name
    assert "Queued" in completed.stdout
    assert "steps" in completed.stdout
    assert "Succeeded" in completed.stdout
    summary = json.loads((output / "summary.json").read_text())
    assert summary["steps"] == 200
    assert summary["swing_up_time_s"] is not None
    assert summary["sim_to_real_rmse_rad"] < 0.2
