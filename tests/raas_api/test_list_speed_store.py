"""The SQLite job store's listing stays an index walk as the history grows, and gives the same
pages as a plain filter-and-sort of every job (issue 16: flat with history)."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from raas_api.stores.base import JobRecord
from raas_api.stores.sqlite import SqliteJobStore, decode_cursor, encode_cursor, listing_query
from raas_operator.jobs.model import JobSpec, JobStatus, Phase, PhaseChange

OWNERS = ("ada", "bob", "cy")
PHASES = (Phase.SUCCEEDED, Phase.FAILED, Phase.QUEUED, Phase.CANCELLED, Phase.RUNNING)
FILTERS: tuple[dict[str, Any], ...] = (
    {},
    {"owner": "bob"},
    {"phases": [Phase.FAILED]},
    {"owner": "ada", "phases": [Phase.QUEUED]},
    {"phases": [Phase.QUEUED, Phase.RUNNING]},
    {"owner": "cy", "phases": [Phase.RUNNING, Phase.FAILED, Phase.RUNNING]},
    {"robot": "sim-2"},
    {"owner": "bob", "robot": "sim-1", "phases": [Phase.SUCCEEDED, Phase.FAILED]},
)


def _spec(owner: str) -> JobSpec:
    return JobSpec.model_validate({"owner": owner, "source": {"kind": "local", "path": "/code"}})


def _status(index: int) -> JobStatus:
    phase = PHASES[index % len(PHASES)]
    robot = f"sim-{index % 3}" if phase is not Phase.QUEUED else None
    return JobStatus(
        phase=phase,
        robot=robot,
        history=(PhaseChange(phase=Phase.PENDING, at=datetime(2026, 1, 1, tzinfo=timezone.utc)),),
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SqliteJobStore:
    store = SqliteJobStore(tmp_path_factory.mktemp("jobs") / "jobs.db", cached_records=64)
    store.create_many((_spec(OWNERS[index % 3]), _status(index)) for index in range(3000))
    return store


def _every_job(store: SqliteJobStore) -> list[JobRecord]:
    """Every job, newest first, read without the listing's queries (one row at a time)."""
    with store._lock:  # the test reads the table directly, to compare against
        ids = [row[0] for row in store._connection.execute("SELECT job_id FROM jobs ORDER BY seq DESC")]
    return [store.get(job_id) for job_id in ids]


def _expected(
    every: list[JobRecord],
    owner: str | None = None,
    phases: list[Phase] | None = None,
    robot: str | None = None,
) -> list[str]:
    return [
        record.job_id
        for record in every
        if (owner is None or record.spec.owner == owner)
        and (not phases or record.status.phase in phases)
        and (robot is None or record.status.robot == robot)
    ]


@pytest.mark.parametrize("filters", FILTERS, ids=str)
def test_paging_through_many_jobs_gives_what_a_plain_filter_gives(
    store: SqliteJobStore, filters: dict[str, Any]
) -> None:
    every = _every_job(store)
    listed: list[str] = []
    cursor = None
    for _ in range(200):
        page = store.list_jobs(limit=37, cursor=cursor, **filters)
        assert len(page.jobs) <= 37
        listed.extend(record.job_id for record in page.jobs)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert listed == _expected(every, **filters)
    assert len(listed) == len(set(listed))


@pytest.mark.parametrize("filters", FILTERS, ids=str)
def test_every_listing_walks_an_index_and_never_scans_or_sorts_the_jobs(
    store: SqliteJobStore, filters: dict[str, Any]
) -> None:
    for cursor in (None, encode_cursor(1500)):
        plan = store.query_plan(*listing_query(limit=50, cursor=cursor, **filters))
        reads_of_jobs = [step for step in plan if " jobs " in f" {step} "]
        assert reads_of_jobs, plan
        for step in reads_of_jobs:
            assert step.startswith("SEARCH jobs USING"), plan  # never "SCAN jobs"
            assert "INDEX" in step or "PRIMARY KEY" in step, plan
        # Sorting is allowed only of a merged phase's page (a subquery of at most limit + 1 rows).
        for before, step in itertools.pairwise(plan):
            if "TEMP B-TREE" in step:
                assert before.startswith("SCAN (subquery"), plan


def test_counting_by_owner_reads_only_an_index(store: SqliteJobStore) -> None:
    plan = store.query_plan(
        "SELECT owner, COUNT(*) FROM jobs WHERE phase IN (?, ?) GROUP BY owner", ["Queued", "Running"]
    )
    assert any("COVERING INDEX jobs_by_phase_and_owner" in step for step in plan), plan
    counts = store.count_by_owner([Phase.QUEUED, Phase.RUNNING])
    every = _every_job(store)
    for owner in OWNERS:
        assert counts[owner] == len(_expected(every, owner=owner, phases=[Phase.QUEUED, Phase.RUNNING]))


def test_a_listed_job_is_read_again_after_it_changes(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db", cached_records=2)
    created = store.create(_spec("ada"))
    assert store.list_jobs().jobs[0].status.phase is Phase.PENDING  # now cached
    # Another connection (another process) changes the job behind this store's back.
    other = SqliteJobStore(tmp_path / "jobs.db")
    other.update_status(created.job_id, JobStatus(phase=Phase.FETCHING, reason="Fetching"), created.version)
    listed = store.list_jobs().jobs[0]
    assert (listed.status.phase, listed.status.reason, listed.version) == (Phase.FETCHING, "Fetching", 2)
    assert store.get(created.job_id) == listed
    # More jobs than the cache holds: every one still reads back as stored.
    for owner in ("bob", "cy", "dan"):
        store.create(_spec(owner))
    assert [record.spec.owner for record in store.list_jobs().jobs] == ["dan", "cy", "bob", "ada"]
    other.close()
    store.close()


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_an_update_returns_the_status_as_stored(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    created = store.create(_spec("ada"))
    # model_copy does not validate: a list where the model keeps a tuple.
    unvalidated = created.status.model_copy(update={"excluded_robots": ["sim-1"]})
    updated = store.update_status(created.job_id, unvalidated, created.version)
    assert updated.status.excluded_robots == ("sim-1",)
    assert updated == SqliteJobStore(tmp_path / "jobs.db").get(created.job_id)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not-a-cursor",
        "%%%",
        encode_cursor(5)[:-1] + "!",
        "c2VxOi01",
        "c2VxOjEuNQ",
        "c2VxOjk5OTk5OTk5OTk5OTk5OTk5OTk5OQ",
    ],
)
def test_a_cursor_that_is_not_ours_is_refused_with_what_to_do(store: SqliteJobStore, cursor: str) -> None:
    # c2VxOi01 is "seq:-5", c2VxOjEuNQ "seq:1.5", the last one past SQLite's integers.
    with pytest.raises(ValueError, match="use the next_cursor of a previous page"):
        store.list_jobs(cursor=cursor)
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(cursor)


def test_many_jobs_are_stored_in_one_go_in_order(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    made = store.create_many((_spec("ada"), _status(index)) for index in range(1200))
    assert len({record.job_id for record in made}) == 1200
    listed = store.list_jobs(limit=500).jobs
    assert [record.job_id for record in listed] == [record.job_id for record in reversed(made)][:500]
    assert store.create_many([]) == []
