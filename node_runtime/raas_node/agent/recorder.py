"""The agent's own record of a session: the ground truth, whatever user code logs.

One row per control boundary: time since the session started, measured angle and speed, the
command the client requested, the duty and command actually applied after the safety layer,
the reward of the step, how late the client's command was, how long after the ideal boundary
the agent applied the duty (loop timing), the safety events, and for a row with a fresh command:
its actuation latency (from the boundary of the reading it answered to the command reaching the
driver) and when it reached the driver (``applied_at_s``, since the session started). The
command of a row reached the driver during the period that ends at the row's boundary (at
``applied_at_s``), so the duty before it held until then: `gym_raas.results.replay` replays it
so. (A recording without ``applied_at_s`` comes from the earlier boundary rule: the command of a
row acted from the row's boundary on.) Written as
``trajectory.parquet`` (Apache Parquet, the open columnar format of the results layout) plus a
``session.json`` with the session's metadata.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRAJECTORY_COLUMNS = (
    "time_s",
    "step",
    "theta_rad",
    "theta_dot_rad_per_s",
    "requested_command",
    "applied_command",
    "applied_duty",
    "reward",
    "late_by_s",
    "loop_latency_s",
    "actuation_latency_s",
    "applied_at_s",
    "safety_events",
)


@dataclass
class SessionRecorder:
    """Accumulates rows in memory (a 10-minute session at 20 Hz is 12,000 rows)."""

    rows: dict[str, list[Any]] = field(default_factory=lambda: {name: [] for name in TRAJECTORY_COLUMNS})

    def append(
        self,
        *,
        time_s: float,
        step: int,
        theta_rad: float,
        theta_dot_rad_per_s: float,
        requested_command: float | None,
        applied_command: float,
        applied_duty: float,
        reward: float,
        late_by_s: float,
        loop_latency_s: float,
        safety_events: tuple[str, ...],
        actuation_latency_s: float = math.nan,
        applied_at_s: float = math.nan,
    ) -> None:
        values = locals()
        for name in TRAJECTORY_COLUMNS:
            self.rows[name].append(values[name])
        self.rows["safety_events"][-1] = ",".join(safety_events)

    def __len__(self) -> int:
        return len(self.rows["time_s"])

    def write(self, folder: Path, metadata: dict[str, Any]) -> tuple[Path, Path]:
        """Write ``trajectory.parquet`` and ``session.json`` into `folder`; returns both paths.

        The Parquet file is written by a short-lived process (`raas_node.agent.parquet_writer`):
        pyarrow costs ~30 MB of memory that the long-running agent should not keep. The columns go
        to ``trajectory.json`` first, which stays behind if the conversion fails: nothing is lost.
        """
        folder.mkdir(parents=True, exist_ok=True)
        columns = folder / "trajectory.json"
        columns.write_text(json.dumps(self.rows, allow_nan=True))
        trajectory = folder / "trajectory.parquet"
        subprocess.run(
            [sys.executable, "-m", "raas_node.agent.parquet_writer", str(columns), str(trajectory)],
            check=True,
            timeout=120,
            capture_output=True,
        )
        columns.unlink()
        session = folder / "session.json"
        session.write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
        return trajectory, session


def read_trajectory(path: Path) -> dict[str, list[Any]]:
    """Columns of a recorded ``trajectory.parquet`` as lists."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {name: table.column(name).to_pylist() for name in table.column_names}
