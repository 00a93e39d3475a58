"""The agent's own record of a session: the ground truth, whatever user code logs.

One row per control boundary: time since the session started, measured angle and speed, the
command the client requested, the duty and command actually applied after the safety layer,
the reward of the step, how late the client's command was, and the safety events. Written as
``trajectory.parquet`` (Apache Parquet, the open columnar format of the results layout) plus a
``session.json`` with the session's metadata; pyarrow is imported only when writing.
"""

from __future__ import annotations

import json
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
        safety_events: tuple[str, ...],
    ) -> None:
        values = locals()
        for name in TRAJECTORY_COLUMNS:
            self.rows[name].append(values[name])
        self.rows["safety_events"][-1] = ",".join(safety_events)

    def __len__(self) -> int:
        return len(self.rows["time_s"])

    def write(self, folder: Path, metadata: dict[str, Any]) -> tuple[Path, Path]:
        """Write ``trajectory.parquet`` and ``session.json`` into `folder`; returns both paths."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "time_s": pa.array(self.rows["time_s"], pa.float64()),
                "step": pa.array(self.rows["step"], pa.int64()),
                "theta_rad": pa.array(self.rows["theta_rad"], pa.float64()),
                "theta_dot_rad_per_s": pa.array(self.rows["theta_dot_rad_per_s"], pa.float64()),
                "requested_command": pa.array(self.rows["requested_command"], pa.float64()),
                "applied_command": pa.array(self.rows["applied_command"], pa.float64()),
                "applied_duty": pa.array(self.rows["applied_duty"], pa.float64()),
                "reward": pa.array(self.rows["reward"], pa.float64()),
                "late_by_s": pa.array(self.rows["late_by_s"], pa.float64()),
                "safety_events": pa.array(self.rows["safety_events"], pa.string()),
            }
        )
        trajectory = folder / "trajectory.parquet"
        pq.write_table(table, trajectory, compression="zstd")
        session = folder / "session.json"
        session.write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
        return trajectory, session


def read_trajectory(path: Path) -> dict[str, list[Any]]:
    """Columns of a recorded ``trajectory.parquet`` as lists."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {name: table.column(name).to_pylist() for name in table.column_names}
