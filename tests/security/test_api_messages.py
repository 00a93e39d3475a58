"""``/metrics`` behind its own token, and messages that say what happens (security issue 12,
item 16): a 429's text names the seconds its ``Retry-After`` header gives, and a retry that may run
on the same robot does not claim another robot.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from api_fixtures import api_harness

from raas_operator.jobs.model import FailureClass, JobStatus, Phase, PhaseChange, fail, transition


def test_metrics_need_the_metrics_token_when_one_is_set(tmp_path: Path) -> None:
    with api_harness(tmp_path, robots=0, metrics_token="scrape-secret") as api:
        missing = api.client.get("/metrics")
        assert missing.status_code == 401
        assert "RAAS_METRICS_TOKEN" in missing.json()["detail"]
        assert api.client.get("/metrics", headers=api.auth("wrong")).status_code == 401
        assert api.client.get("/metrics", headers=api.auth(api.admin_token)).status_code == 401  # not an API token
        scraped = api.client.get("/metrics", headers=api.auth("scrape-secret"))
        assert scraped.status_code == 200
        assert "raas_api_requests_total" in scraped.text


def test_metrics_stay_open_without_a_metrics_token(tmp_path: Path) -> None:
    with api_harness(tmp_path, robots=0) as api:
        assert api.client.get("/metrics").status_code == 200


def test_a_request_rate_refusal_says_the_seconds_its_retry_after_header_gives(tmp_path: Path) -> None:
    # 0.4 requests a second: the second request waits 2.5 s, which the header rounds up to 3.
    with api_harness(tmp_path, robots=0, requests_per_second=0.4) as api:
        assert api.client.get("/api/v1/whoami", headers=api.as_ada()).status_code == 200
        refused = api.client.get("/api/v1/whoami", headers=api.as_ada())
    assert refused.status_code == 429
    seconds = int(refused.headers["retry-after"])
    assert seconds >= 1
    assert refused.json()["detail"].endswith(f"retry in {seconds} s")


def test_a_submission_rate_refusal_says_the_seconds_its_retry_after_header_gives(tmp_path: Path) -> None:
    with api_harness(tmp_path, robots=0, submissions_per_minute=1) as api:
        assert api.upload(api.ada_token).status_code == 201
        refused = api.upload(api.ada_token)
    assert refused.status_code == 429
    assert refused.json()["detail"].endswith(f"retry in {int(refused.headers['retry-after'])} s")


def running_on(robot: str) -> JobStatus:
    at = datetime.now(timezone.utc)
    status = JobStatus(reason="Submitted", history=(PhaseChange(phase=Phase.PENDING, at=at, reason="Submitted"),))
    for phase in (Phase.FETCHING, Phase.QUEUED, Phase.STARTING):
        status = transition(status, phase, reason=phase.value, at=at)
    return transition(status, Phase.RUNNING, reason="Running", robot=robot, at=at)


def test_a_platform_fault_retry_does_not_promise_another_robot() -> None:
    retried = fail(running_on("sim-1"), FailureClass.PLATFORM_FAULT, "UploadFailed", "the store was down")
    assert retried.phase is Phase.QUEUED
    assert "sim-1" not in retried.excluded_robots  # so the retry may well run on sim-1 again
    assert "another robot" not in retried.message
    assert retried.message == "the store was down (retrying once)"


def test_a_robot_fault_retry_does_run_elsewhere_and_says_so() -> None:
    retried = fail(running_on("sim-1"), FailureClass.ROBOT_FAULT, "SafetyTrip", "the motor overheated")
    assert "sim-1" in retried.excluded_robots
    assert retried.message == "the motor overheated (retrying once on another robot)"
