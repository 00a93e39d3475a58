"""Jobs in a SQLite file: the local platform's store (survives restarts, safe across threads)."""

from __future__ import annotations

import base64
import secrets
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from raas_api.stores.base import ConflictError, JobNotFoundError, JobPage, JobRecord
from raas_api.stores.sqlite_files import open_checked
from raas_operator.jobs.model import JobSpec, JobStatus, Phase

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    phase TEXT NOT NULL,
    robot TEXT,
    created_at TEXT NOT NULL,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, seq);
CREATE INDEX IF NOT EXISTS jobs_by_phase ON jobs (phase, seq);
CREATE INDEX IF NOT EXISTS jobs_by_robot ON jobs (robot, seq);
"""

MAX_PAGE = 500


def new_job_id() -> str:
    """A short, unguessable, DNS-label job id such as ``job-3f9c2a7be1``."""
    return f"job-{secrets.token_hex(5)}"


class SqliteJobStore:
    """`JobStore` in one SQLite file (WAL mode); ``":memory:"`` for tests."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path == ":memory:":
            self._connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        else:
            self._connection = open_checked(Path(self.path), "the jobs")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def create(self, spec: JobSpec, status: JobStatus | None = None) -> JobRecord:
        status = status or JobStatus()
        created = datetime.now(timezone.utc)
        job_id = new_job_id()
        with self._lock:
            self._connection.execute(
                "INSERT INTO jobs (job_id, owner, phase, robot, created_at, version, spec, status)"
                " VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                (
                    job_id,
                    spec.owner,
                    status.phase.value,
                    status.robot,
                    created.isoformat(),
                    spec.model_dump_json(),
                    status.model_dump_json(),
                ),
            )
        return JobRecord(job_id, spec, status, created, 1)

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            row = self._connection.execute(
                "SELECT job_id, created_at, version, spec, status FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return _record(row)

    def update_status(self, job_id: str, status: JobStatus, expected_version: int | str) -> JobRecord:
        with self._lock:
            cursor = self._connection.execute(
                "UPDATE jobs SET status = ?, phase = ?, robot = ?, version = version + 1"
                " WHERE job_id = ? AND version = ?",
                (status.model_dump_json(), status.phase.value, status.robot, job_id, expected_version),
            )
            if cursor.rowcount == 0:
                exists = self._connection.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
                if exists is None:
                    raise JobNotFoundError(job_id)
                raise ConflictError(f"job {job_id} changed since version {expected_version}")
        return self.get(job_id)

    def list_jobs(
        self,
        *,
        owner: str | None = None,
        phases: Sequence[Phase] | None = None,
        robot: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        limit = max(1, min(limit, MAX_PAGE))
        clauses, parameters = [], []
        if owner is not None:
            clauses.append("owner = ?")
            parameters.append(owner)
        if phases:
            clauses.append(f"phase IN ({', '.join('?' for _ in phases)})")
            parameters.extend(phase.value for phase in phases)
        if robot is not None:
            clauses.append("robot = ?")
            parameters.append(robot)
        if cursor is not None:
            clauses.append("seq < ?")
            parameters.append(str(_decode_cursor(cursor)))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._connection.execute(
                f"SELECT job_id, created_at, version, spec, status, seq FROM jobs {where} ORDER BY seq DESC LIMIT ?",
                (*parameters, limit + 1),
            ).fetchall()
        page = rows[:limit]
        next_cursor = _encode_cursor(page[-1][5]) if len(rows) > limit else None
        return JobPage(tuple(_record(row[:5]) for row in page), next_cursor)

    def count_by_owner(self, phases: Sequence[Phase]) -> dict[str, int]:
        if not phases:
            return {}
        with self._lock:
            rows = self._connection.execute(
                f"SELECT owner, COUNT(*) FROM jobs WHERE phase IN ({', '.join('?' for _ in phases)}) GROUP BY owner",
                tuple(phase.value for phase in phases),
            ).fetchall()
        return {owner: count for owner, count in rows}


def _record(row: tuple[str, str, int, str, str]) -> JobRecord:
    job_id, created_at, version, spec, status = row
    return JobRecord(
        job_id=job_id,
        spec=JobSpec.model_validate_json(spec),
        status=JobStatus.model_validate_json(status),
        created_at=datetime.fromisoformat(created_at),
        version=version,
    )


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "seq":
            raise ValueError(kind)
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"invalid cursor {cursor!r}; use the next_cursor of a previous page") from None
