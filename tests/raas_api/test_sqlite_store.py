"""The SQLite job store: persistence, filters, cursor pages, optimistic concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from raas_api.stores.base import ConflictError, JobNotFoundError
from raas_api.stores.sqlite import SqliteJobStore
from raas_operator.jobs.model import JobSpec, Phase, transition


def spec(owner: str = "ada") -> JobSpec:
    return JobSpec.model_validate({"owner": owner, "source": {"kind": "local", "path": "/srv/ctl"}})


def test_jobs_survive_reopening_the_database(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    record = store.create(spec())
    queued = transition(record.status, Phase.QUEUED, reason="Fetched")
    store.update_status(record.job_id, queued, record.version)
    store.close()
    reopened = SqliteJobStore(tmp_path / "jobs.db")
    again = reopened.get(record.job_id)
    assert again.spec == record.spec
    assert again.status.phase is Phase.QUEUED
    assert again.version == 2


def test_a_stale_update_is_refused_and_an_unknown_job_is_not_found() -> None:
    store = SqliteJobStore(":memory:")
    record = store.create(spec())
    store.update_status(record.job_id, transition(record.status, Phase.FETCHING), record.version)
    with pytest.raises(ConflictError, match="changed since version 1"):
        store.update_status(record.job_id, transition(record.status, Phase.QUEUED), record.version)
    with pytest.raises(JobNotFoundError):
        store.get("job-missing")


def test_concurrent_updates_from_threads_lose_nothing() -> None:
    store = SqliteJobStore(":memory:")
    records = [store.create(spec(f"user-{index % 3}")) for index in range(40)]

    def advance(job_id: str) -> None:
        current = store.get(job_id)
        store.update_status(job_id, transition(current.status, Phase.FETCHING), current.version)

    threads = [threading.Thread(target=advance, args=(record.job_id,)) for record in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count_by_owner([Phase.FETCHING]) == {"user-0": 14, "user-1": 13, "user-2": 13}


def test_listing_filters_and_pages_newest_first_with_a_cursor() -> None:
    store = SqliteJobStore(":memory:")
    created = [store.create(spec("ada" if index % 2 else "bob")) for index in range(7)]
    page = store.list_jobs(owner="ada", limit=2)
    assert [job.job_id for job in page.jobs] == [created[5].job_id, created[3].job_id]
    assert page.next_cursor is not None
    last = store.list_jobs(owner="ada", limit=2, cursor=page.next_cursor)
    assert [job.job_id for job in last.jobs] == [created[1].job_id]
    assert last.next_cursor is None
    assert store.list_jobs(phases=[Phase.RUNNING]).jobs == ()
    with pytest.raises(ValueError, match="invalid cursor"):
        store.list_jobs(cursor="garbage!")
