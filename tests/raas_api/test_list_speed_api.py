"""``GET /api/v1/jobs`` after the speed work of issue 16: the same bytes as the contract's models
give, pages that follow a job's changes, clear refusals of abusive queries, and metrics still
counted per route (the metrics middleware is plain ASGI now)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from api_fixtures import ApiHarness, api_harness

from raas_api.http.schemas import JobList
from raas_api.http.views import job_view
from raas_api.stores.sqlite import SqliteJobStore, encode_cursor
from raas_operator.jobs.model import JobSpec, JobStatus, JobSummary, Phase, PhaseChange

STORED = 1500


def _status(index: int) -> JobStatus:
    phase = (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)[index % 3]
    history = tuple(
        PhaseChange(phase=step, at=datetime(2026, 1, 1, 0, 0, second, 500_000, timezone.utc), reason=step.value)
        for second, step in enumerate((Phase.PENDING, Phase.FETCHING, Phase.QUEUED, Phase.RUNNING, phase))
    )
    summary = JobSummary(steps=index, total_reward=-1e-7 * index, swing_up_time_s=None)
    return JobStatus(phase=phase, robot="sim-1", attempts=1, history=history, summary=summary)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    data_dir = tmp_path_factory.mktemp("list-speed")
    store = SqliteJobStore(data_dir / "jobs.db")
    owners = ("ada", "bob", "root")
    specs = {
        owner: JobSpec.model_validate({"owner": owner, "source": {"kind": "local", "path": "/c"}}) for owner in owners
    }
    store.create_many((specs[owners[index % 3]], _status(index)) for index in range(STORED))
    store.close()
    with api_harness(data_dir, robots=0) as running:
        yield running


def _slow_page(api: ApiHarness, **filters: Any) -> bytes:
    """The page as the models render it, job by job (what the API sent before the view cache)."""
    platform = api.client.app.state.raas.platform
    page = platform.store.list_jobs(**filters)
    listing = JobList(jobs=[job_view(record, platform) for record in page.jobs], next_cursor=page.next_cursor)
    return listing.model_dump_json().encode()


@pytest.mark.parametrize(
    ("query", "filters", "as_admin"),
    [
        ("", {}, True),
        ("?limit=500", {"limit": 500}, True),
        (f"?cursor={encode_cursor(700)}", {"cursor": encode_cursor(700)}, True),
        ("?owner=bob&phase=Failed&phase=Cancelled", {"owner": "bob", "phases": [Phase.FAILED, Phase.CANCELLED]}, True),
        ("?phase=Succeeded&limit=7", {"owner": "ada", "phases": [Phase.SUCCEEDED], "limit": 7}, False),
    ],
)
def test_a_listed_page_is_byte_for_byte_what_the_models_give(
    api: ApiHarness, query: str, filters: dict[str, Any], as_admin: bool
) -> None:
    token = api.admin_token if as_admin else api.ada_token
    for _ in range(2):  # rendered, then from the view cache
        response = api.client.get(f"/api/v1/jobs{query}", headers=api.auth(token))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.content == _slow_page(api, **filters)
        JobList.model_validate_json(response.content)


def test_paging_through_the_whole_history_lists_every_job_once(api: ApiHarness) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=500" + (f"&cursor={cursor}" if cursor else "")
        body = api.client.get(f"/api/v1/jobs{query}", headers=api.auth(api.admin_token)).json()
        seen += [job["id"] for job in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= STORED


def test_a_listing_follows_a_job_through_its_changes(api: ApiHarness, tmp_path: Path) -> None:
    platform = api.client.app.state.raas.platform
    spec = JobSpec.model_validate({"owner": "ada", "source": {"kind": "local", "path": "/c"}})
    # Written straight to the store as finished, so that the dispatcher leaves it alone.
    created = platform.store.create(spec, JobStatus(phase=Phase.FAILED, reason="First"))

    def listed() -> dict[str, Any]:
        body = api.client.get("/api/v1/jobs?limit=1", headers=api.as_ada()).json()
        job: dict[str, Any] = body["jobs"][0]
        assert job["id"] == created.job_id
        return job

    assert (listed()["phase"], listed()["reason"]) == ("Failed", "First")
    cancelled = JobStatus(phase=Phase.CANCELLED, reason="Cancelled", message="by the test")
    platform.store.update_status(created.job_id, cancelled, created.version)
    assert (listed()["phase"], listed()["message"]) == ("Cancelled", "by the test")


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("?limit=100000000", 422, "limit"),
        ("?limit=0", 422, "limit"),
        ("?limit=-5", 422, "limit"),
        ("?limit=NaN", 422, "limit"),
        ("?limit=1e400", 422, "limit"),
        ("?phase=Exploded", 422, "phase"),
        ("?phase=Succeeded&phase=", 422, "phase"),
        ("?cursor=not-a-cursor", 400, "next_cursor"),
        ("?cursor=c2VxOmFiYw", 400, "next_cursor"),  # "seq:abc"
        ("?cursor=am9iOjU", 400, "next_cursor"),  # "job:5"
        ("?cursor=c2VxOjk5OTk5OTk5OTk5OTk5OTk5OTk5OQ", 400, "next_cursor"),  # seq past SQLite's integers
        ("?cursor=" + "A" * 5000, 422, "cursor"),
        ("?owner=" + "a" * 5000, 422, "owner"),
        ("?robot=" + "r" * 5000, 422, "robot"),
    ],
)
def test_abusive_listing_queries_get_a_clear_refusal(api: ApiHarness, query: str, status: int, says: str) -> None:
    response = api.client.get(f"/api/v1/jobs{query}", headers=api.auth(api.admin_token))
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]


def test_a_user_still_cannot_list_anothers_jobs(api: ApiHarness) -> None:
    response = api.client.get("/api/v1/jobs?owner=bob", headers=api.as_ada())
    assert response.status_code == 403
    assert "only admins" in response.json()["detail"]
    mine = api.client.get("/api/v1/jobs?limit=500", headers=api.as_ada()).json()["jobs"]
    assert mine
    assert {job["owner"] for job in mine} == {"ada"}


def test_requests_are_still_counted_by_route_and_status(api: ApiHarness) -> None:
    api.client.get("/api/v1/jobs", headers=api.as_ada())
    api.client.get("/api/v1/jobs", headers=api.auth("raas_000000000000_nope"))
    api.client.get("/api/v1/jobs/job-0000000000", headers=api.as_ada())
    metrics = api.client.get("/metrics").text
    for line in (
        'raas_api_requests_total{method="GET",route="/api/v1/jobs",status="200"}',
        'raas_api_requests_total{method="GET",route="unmatched",status="401"}',  # the guard refused it
        'raas_api_requests_total{method="GET",route="/api/v1/jobs/{job_id}",status="404"}',
        'raas_api_request_seconds_count{route="/api/v1/jobs"}',
    ):
        assert line in metrics, line
