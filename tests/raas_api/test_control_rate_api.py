"""A job's control rate through the web API (issue 17): JSON and upload submissions carry it,
impossible or unserved rates are refused with a sentence, robots list the rates they run, and a
job asking for 50 Hz runs its controller at 50 Hz on the local platform."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_fixtures import ApiHarness, api_harness

GIT = {"kind": "git", "url": "https://127.0.0.1/a/c.git"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    with api_harness(tmp_path_factory.mktemp("rates"), robots=1) as harness:
        yield harness


# JSON allows no NaN, but Python's parser (behind FastAPI) reads the literal: it must still be refused.
BAD_JSON_RATES = [b"0", b"-20", b"1000000000", b"NaN", b"Infinity", b'"50"', b'"fast"', b"true", b"null", b"[50]"]


@pytest.mark.parametrize("rate", BAD_JSON_RATES)
def test_an_impossible_rate_in_a_json_submission_is_refused_with_a_sentence(api: ApiHarness, rate: bytes) -> None:
    body = b'{"source": {"kind": "git", "url": "https://127.0.0.1/a/c.git"}, "control_hz": ' + rate + b"}"
    response = api.client.post(
        "/api/v1/jobs", content=body, headers={**api.as_ada(), "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "control_hz" in response.json()["detail"]


@pytest.mark.parametrize("rate", ["0", "-20", "1000000000", "nan", "inf", "fast", "50 Hz"])
def test_an_impossible_rate_in_an_upload_is_refused_with_a_sentence(api: ApiHarness, rate: str) -> None:
    response = api.upload(api.ada_token, control_hz=rate)
    assert response.status_code == 422, response.text
    assert "control_hz" in response.json()["detail"]


def test_a_rate_no_robot_of_the_platform_runs_is_refused_naming_the_rates_there_are(api: ApiHarness) -> None:
    for response in (
        api.client.post("/api/v1/jobs", json={"source": GIT, "control_hz": 33}, headers=api.as_ada()),
        api.upload(api.ada_token, control_hz=33),
    ):
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert "33" in detail
        assert "20, 50, 100 Hz" in detail


def test_robots_list_the_rates_they_run(api: ApiHarness) -> None:
    robots = api.client.get("/api/v1/robots", headers=api.as_ada()).json()
    assert [robot["supported_control_hz"] for robot in robots] == [[20.0, 50.0, 100.0]]


def test_a_job_asking_for_50_hz_runs_its_controller_at_50_hz(api: ApiHarness, tmp_path: Path) -> None:
    created = api.upload(api.ada_token, steps=30, control_hz=50)
    assert created.status_code == 201, created.text
    assert created.json()["control_hz"] == 50.0
    done = api.wait(created.json()["id"], api.ada_token)
    assert done["phase"] == "Succeeded", done
    trajectory = api.client.get(f"/api/v1/jobs/{done['id']}/trajectory", headers=api.as_ada()).json()
    times = trajectory["time_s"]
    assert len(times) == 30
    gaps = [(later - earlier) / 0.02 for earlier, later in itertools.pairwise(times)]
    assert all(gap >= 1 - 1e-6 and abs(gap - round(gap)) < 1e-6 for gap in gaps)  # whole 20 ms periods


def test_a_job_that_asks_for_no_rate_runs_at_20_hz(api: ApiHarness) -> None:
    created = api.client.post("/api/v1/jobs", json={"source": GIT}, headers=api.as_ada())
    assert created.status_code == 201, created.text
    assert created.json()["control_hz"] == 20.0
    api.client.post(f"/api/v1/jobs/{created.json()['id']}/cancel", headers=api.as_ada())
