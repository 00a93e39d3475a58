"""Jobs in a SQLite file: the local platform's store (survives restarts, safe across threads).

Every listing is answered from an index in listing order (newest first), so a page costs the same
with a thousand stored jobs or a hundred thousand: one index per filter the API offers (owner,
phase, robot, and phase with owner, which is a user's phase filter), a cursor that is a bound on
that order, and several phases read as one ordered range each, merged. Rows already read are not
parsed again: a job's spec never changes, and its status is kept with the version it was read at
(an `Lru` of parsed records, which the store calls under its lock).
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from raas_api.lru import Lru
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
CREATE INDEX IF NOT EXISTS jobs_by_phase_and_owner ON jobs (phase, owner);
"""
"""``jobs_by_phase_and_owner`` (which ends in ``seq`` too, as every index ends in the rowid) is a
user's phase filter (a user's listing always has the owner), and answers `count_by_owner` (quotas,
at every submission) from the index alone."""

MAX_PAGE = 500
_NO_BOUND = (1 << 63) - 1
"""The cursor of the first page: above every ``seq``."""
_COLUMNS = "job_id, created_at, version, spec, status, seq"

Row = tuple[str, str, int, str, str]
"""(job_id, created_at, version, spec, status) as stored."""


def new_job_id() -> str:
    """A short, unguessable, DNS-label job id such as ``job-3f9c2a7be1``."""
    return f"job-{secrets.token_hex(5)}"


class SqliteJobStore:
    """`JobStore` in one SQLite file (WAL mode); ``":memory:"`` for tests."""

    def __init__(self, path: str | Path, *, cached_records: int = 4096) -> None:
        """`cached_records`: how many parsed jobs to keep, least recently used out."""
        self.path = str(path)
        if self.path == ":memory:":
            self._connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        else:
            self._connection = open_checked(Path(self.path), "the jobs")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._cache: Lru[str, JobRecord] = Lru(cached_records)
        """Parsed records of recently read jobs (parsing a row's JSON is most of what a listing
        costs): a spec never changes, and a status is reused only at the version it was read
        at, so a hit is exactly what parsing the row would give."""

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def create(self, spec: JobSpec, status: JobStatus | None = None) -> JobRecord:
        return self.create_many([(spec, status or JobStatus())])[0]

    def create_many(self, jobs: Iterable[tuple[JobSpec, JobStatus]]) -> list[JobRecord]:
        """Store several new jobs in one transaction (in order: the last is the newest); their records.

        For importing and seeding many jobs at once: a hundred thousand take seconds, where one
        `create` each commits a hundred thousand times.
        """
        created = datetime.now(timezone.utc)
        records = [JobRecord(new_job_id(), spec, status, created, 1) for spec, status in jobs]
        rows = [
            (
                record.job_id,
                record.spec.owner,
                record.status.phase.value,
                record.status.robot,
                created.isoformat(),
                record.spec.model_dump_json(),
                record.status.model_dump_json(),
            )
            for record in records
        ]
        with self._lock:
            self._connection.execute("BEGIN")
            try:
                self._connection.executemany(
                    "INSERT INTO jobs (job_id, owner, phase, robot, created_at, version, spec, status)"
                    " VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                    rows,
                )
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
            if len(records) <= self._cache.size:
                for record in records:
                    self._cache.keep(record.job_id, record)
        return records

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            row = self._connection.execute(
                "SELECT job_id, created_at, version, spec, status FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return self._records([row])[0]

    def update_status(self, job_id: str, status: JobStatus, expected_version: int | str) -> JobRecord:
        written = status.model_dump_json()
        with self._lock:
            returned = self._connection.execute(
                "UPDATE jobs SET status = ?, phase = ?, robot = ?, version = version + 1"
                " WHERE job_id = ? AND version = ? RETURNING created_at, version, spec",
                (written, status.phase.value, status.robot, job_id, expected_version),
            ).fetchall()  # stepped to the end: a RETURNING statement commits only when done
            if not returned:
                exists = self._connection.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
                if exists is None:
                    raise JobNotFoundError(job_id)
                raise ConflictError(f"job {job_id} changed since version {expected_version}")
            created_at, version, spec_json = returned[0]
            known = self._cache.lookup(job_id)
        spec = known.spec if known is not None else JobSpec.model_validate_json(spec_json)
        # Read back as stored (a status made by model_copy is not validated; its stored form is).
        stored = JobStatus.model_validate_json(written)
        record = JobRecord(job_id, spec, stored, datetime.fromisoformat(created_at), version)
        with self._lock:
            self._keep_newer(record)
        return record

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
        query, parameters = listing_query(owner=owner, phases=phases, robot=robot, limit=limit, cursor=cursor)
        with self._lock:
            rows = self._connection.execute(query, parameters).fetchall()
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1][5]) if len(rows) > limit else None
        return JobPage(tuple(self._records([row[:5] for row in page])), next_cursor)

    def count_by_owner(self, phases: Sequence[Phase]) -> dict[str, int]:
        if not phases:
            return {}
        with self._lock:
            rows = self._connection.execute(
                f"SELECT owner, COUNT(*) FROM jobs WHERE phase IN ({', '.join('?' for _ in phases)}) GROUP BY owner",
                tuple(phase.value for phase in phases),
            ).fetchall()
        return {owner: count for owner, count in rows}

    def query_plan(self, query: str, parameters: Sequence[object]) -> list[str]:
        """SQLite's plan for `query` (``EXPLAIN QUERY PLAN``), one line per step: what the indexes
        do for a listing (see `listing_query`)."""
        with self._lock:
            rows = self._connection.execute(f"EXPLAIN QUERY PLAN {query}", tuple(parameters)).fetchall()
        return [str(row[3]) for row in rows]

    def _records(self, rows: Sequence[Row]) -> list[JobRecord]:
        """The rows as records, parsing only what the cache does not hold at the row's version."""
        with self._lock:
            known = [self._cache.lookup(row[0]) for row in rows]
        records, parsed = [], []
        for row, cached in zip(rows, known, strict=True):
            job_id, created_at, version, spec_json, status_json = row
            if cached is not None and cached.version == version:
                records.append(cached)
                continue
            spec = cached.spec if cached is not None else JobSpec.model_validate_json(spec_json)
            record = JobRecord(
                job_id=job_id,
                spec=spec,
                status=JobStatus.model_validate_json(status_json),
                created_at=datetime.fromisoformat(created_at),
                version=version,
            )
            records.append(record)
            parsed.append(record)
        if parsed:
            with self._lock:
                for record in parsed:
                    self._keep_newer(record)
        return records

    def _keep_newer(self, record: JobRecord) -> None:
        """Cache `record` unless a newer version of it is cached already (another thread's write)."""
        cached = self._cache.lookup(record.job_id)
        if cached is None or int(cached.version) <= int(record.version):
            self._cache.keep(record.job_id, record)


def listing_query(
    *,
    owner: str | None = None,
    phases: Sequence[Phase] | None = None,
    robot: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[str, tuple[object, ...]]:
    """The SQL of one page (``limit + 1`` rows, to know whether another follows) and its parameters.

    Every filter is an equality on an indexed column and the cursor a bound on ``seq``, so SQLite
    walks one index range newest first and stops after the page. Several phases are one such walk
    each (``UNION ALL``, at most a page from each) merged in order; ``phase IN (...)`` would read
    every job in those phases and sort them. `ValueError` for a cursor that is not one of ours.
    """
    clauses = ["seq < ?"]
    parameters: list[object] = [_NO_BOUND if cursor is None else decode_cursor(cursor)]
    if owner is not None:
        clauses.append("owner = ?")
        parameters.append(owner)
    if robot is not None:
        clauses.append("robot = ?")
        parameters.append(robot)
    wanted = list(dict.fromkeys(Phase(phase) for phase in phases or ()))
    if not wanted:
        return (
            f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(clauses)} ORDER BY seq DESC LIMIT ?",
            (*parameters, limit + 1),
        )
    if len(wanted) == 1:
        return (
            f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(clauses)} AND phase = ? ORDER BY seq DESC LIMIT ?",
            (*parameters, wanted[0].value, limit + 1),
        )
    one_phase = (
        f"SELECT * FROM (SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(clauses)} AND phase = ?"
        " ORDER BY seq DESC LIMIT ?)"
    )
    merged: list[object] = []
    for phase in wanted:
        merged.extend((*parameters, phase.value, limit + 1))
    return (
        f"{' UNION ALL '.join(one_phase for _ in wanted)} ORDER BY seq DESC LIMIT ?",
        (*merged, limit + 1),
    )


def encode_cursor(seq: int) -> str:
    """The cursor of the page that follows the job stored as `seq` (opaque to clients)."""
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The ``seq`` bound of a cursor made by `encode_cursor`; `ValueError` saying what to do otherwise."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "seq" or not value.isdigit():
            raise ValueError(kind)
        seq = int(value)
        if seq > _NO_BOUND:
            raise ValueError(value)
        return seq
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"invalid cursor {cursor!r}; use the next_cursor of a previous page") from None
