"""The REST API's contract, over HTTP, on every backend: the local platform (simulated robots in
real time) and a cluster (the Kubernetes emulator, the kopf operator, pods in podman).

Only HTTP is used, through `ApiHarness`: the same tests run on both.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_fixtures import BACKENDS, ApiHarness, api_harness, cluster_api_harness, controller_zip
from git_server import GitServer, running_git_server

from gym_raas.params import calibration_from_document


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with running_git_server(tmp_path_factory.mktemp("git")) as server:
        yield server


@pytest.fixture(scope="module", params=BACKENDS)
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, git_server: GitServer
) -> Iterator[ApiHarness]:
    """The API on each backend: the local platform, and a cluster (see `api_fixtures.BACKENDS`)."""
    folder = tmp_path_factory.mktemp(f"api-{request.param}")
    harness = (
        api_harness
        if request.param == "local"
        else functools.partial(cluster_api_harness, git_server=git_server, plane=request.getfixturevalue("raas_chart"))
    )
    with harness(folder, allowed_git_schemes=["https", "git"]) as running:
        yield running


# -- auth ----------------------------------------------------------------------------------------


def test_every_api_route_needs_a_valid_token(api: ApiHarness) -> None:
    for headers in ({}, api.auth("raas_nope_nope"), api.auth("not-even-a-token")):
        response = api.client.get("/api/v1/jobs", headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    assert api.client.get("/api/v1/whoami", headers=api.as_ada()).json() == {"owner": "ada", "role": "user"}


def test_a_revoked_token_is_refused(api: ApiHarness) -> None:
    token, info = api.tokens.create("carol")
    assert api.client.get("/api/v1/whoami", headers=api.auth(token)).status_code == 200
    api.tokens.revoke(info.token_id)
    assert api.client.get("/api/v1/whoami", headers=api.auth(token)).status_code == 401


def test_tokens_are_stored_hashed(api: ApiHarness) -> None:
    token, _ = api.tokens.create("dave")
    secret = token.split("_", 2)[2]
    stored = api.stored_tokens()
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in stored  # what the store keeps
    assert secret.encode() not in stored


def test_owners_see_only_their_jobs_and_admins_see_all(api: ApiHarness) -> None:
    created = api.upload(api.ada_token, steps=5)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert api.client.get(f"/api/v1/jobs/{job_id}", headers=api.auth(api.bob_token)).status_code == 404
    assert api.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=api.auth(api.bob_token)).status_code == 404
    assert job_id not in [
        job["id"] for job in api.client.get("/api/v1/jobs", headers=api.auth(api.bob_token)).json()["jobs"]
    ]
    forbidden = api.client.get("/api/v1/jobs?owner=ada", headers=api.auth(api.bob_token))
    assert forbidden.status_code == 403
    assert "admin" in forbidden.json()["detail"]
    assert api.client.get(f"/api/v1/jobs/{job_id}", headers=api.auth(api.admin_token)).status_code == 200
    assert api.wait(job_id, api.ada_token)["phase"] == "Succeeded"


def test_robot_maintenance_is_for_admins(api: ApiHarness) -> None:
    refused = api.client.put("/api/v1/robots/sim-2/maintenance", json={"on": True}, headers=api.as_ada())
    assert refused.status_code == 403
    robot = api.client.put("/api/v1/robots/sim-2/maintenance", json={"on": True}, headers=api.auth(api.admin_token))
    assert robot.status_code == 200
    assert robot.json()["state"] == "maintenance"
    assert robot.json()["schedulable"] is False
    back = api.client.put("/api/v1/robots/sim-2/maintenance", json={"on": False}, headers=api.auth(api.admin_token))
    assert back.json()["state"] in ("resetting", "idle")


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"source": {"kind": "git", "url": "https://evil.example.com/x.git"}}, "not allowed"),
        ({"source": {"kind": "git", "url": "file:///etc/passwd"}}, "url"),
        ({"source": {"kind": "git", "url": "http://github.com/a/b.git"}}, "scheme"),
        ({"source": {"kind": "git", "url": "https://127.0.0.1/x.git", "ref": "main;rm -rf"}}, "ref"),
        ({"source": {"kind": "git", "url": "https://127.0.0.1/x.git"}, "entrypoint": "../../etc/x.py"}, "entrypoint"),
        ({"source": {"kind": "git", "url": "https://127.0.0.1/x.git"}, "time_limit_s": 100000}, "maximum"),
        ({"source": {"kind": "git", "url": "https://127.0.0.1/x.git"}, "time_limit_s": 0}, "time_limit_s"),
        ({"source": {"kind": "svn", "url": "x"}}, "source"),
        ({"nothing": "here"}, "source"),
    ],
)
def test_bad_submissions_get_a_clear_4xx(api: ApiHarness, body: dict[str, object], expected: str) -> None:
    response = api.client.post("/api/v1/jobs", json=body, headers=api.as_ada())
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]


def test_bodies_are_refused_unread_without_a_token_and_over_their_cap(api: ApiHarness) -> None:
    body = b'{"source": {"url": "https://127.0.0.1/x.git"}, "pad": "' + b" " * (2 * 1024 * 1024) + b'"}'
    json_type = {"Content-Type": "application/json"}
    no_token = api.client.post("/api/v1/jobs", content=body, headers=json_type)
    assert no_token.status_code == 401
    assert no_token.headers["www-authenticate"] == "Bearer"
    over_cap = api.client.post("/api/v1/jobs", content=body, headers={**api.as_ada(), **json_type})
    assert over_cap.status_code == 413
    assert "limit" in over_cap.json()["detail"]


def test_a_git_source_may_leave_out_its_kind(api: ApiHarness, git_server: GitServer) -> None:
    git_server.publish("nokind", {"run.py": "print('no kind')\n"})
    body = {"source": {"url": git_server.url("nokind"), "ref": "main"}}
    created = api.client.post("/api/v1/jobs", json=body, headers=api.as_ada())
    assert created.status_code == 201, created.text
    assert created.json()["source"]["kind"] == "git"
    assert api.wait(created.json()["id"], api.ada_token)["phase"] == "Succeeded"


def test_local_folders_are_refused_outside_local_mode(tmp_path: Path) -> None:
    with api_harness(tmp_path, robots=0, local_mode=False) as api:
        response = api.client.post(
            "/api/v1/jobs", json={"source": {"kind": "local", "path": "/tmp"}}, headers=api.as_ada()
        )
        assert response.status_code == 422
        assert "local mode" in response.json()["detail"]


def test_uploads_must_be_archives_within_the_size_limit(tmp_path: Path) -> None:
    with api_harness(tmp_path, robots=0, max_upload_bytes=4096) as api:
        not_archive = api.client.post(
            "/api/v1/jobs/upload", headers=api.as_ada(), files={"archive": ("run.py", b"print(1)\n", "text/x-python")}
        )
        assert not_archive.status_code == 422
        assert "zip" in not_archive.json()["detail"]
        big = controller_zip(files={"data.bin": "x" * 20000})
        too_big = api.client.post(
            "/api/v1/jobs/upload", headers=api.as_ada(), files={"archive": ("c.zip", big, "application/zip")}
        )
        assert too_big.status_code == 413
        assert "4096" in too_big.json()["detail"]
        assert list((tmp_path / "uploads").iterdir()) == []  # nothing left behind


# -- quotas and rate limits --------------------------------------------------------------------


def test_over_quota_and_over_rate_get_429_with_a_reason(tmp_path: Path) -> None:
    with api_harness(tmp_path, robots=1, max_queued_per_owner=2, submissions_per_minute=3) as api:
        headers = api.auth(api.admin_token)
        assert api.client.put("/api/v1/robots/sim-1/maintenance", json={"on": True}, headers=headers).status_code == 200
        for _ in range(2):  # they wait: the only robot is in maintenance
            assert api.upload(api.ada_token).status_code == 201
        over_quota = api.upload(api.ada_token)
        assert over_quota.status_code == 429
        assert "queued" in over_quota.json()["detail"]
        assert api.upload(api.bob_token).status_code == 201  # others are not affected
        over_rate = api.upload(api.ada_token)
        assert over_rate.status_code == 429
        assert "a minute" in over_rate.json()["detail"]
        assert int(over_rate.headers["retry-after"]) >= 1


# -- a job's life --------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_uploaded_job_runs_and_serves_logs_results_trajectory_and_live_state(api: ApiHarness) -> None:
    created = api.upload(api.ada_token, steps=60)
    assert created.status_code == 201
    job = created.json()
    assert job["owner"] == "ada"
    assert job["phase"] == "Pending"
    job_id = job["id"]
    with api.client.stream("GET", f"/api/v1/jobs/{job_id}/live", headers=api.as_ada()) as live:
        assert live.headers["content-type"].startswith("text/event-stream")
        events = []
        for line in live.iter_lines():
            if line.startswith("event: "):
                events.append([line[7:]])
            elif line.startswith("data: "):
                events[-1].append(json.loads(line[6:]))
    assert events[-1][0] == "end"
    states = [data for name, data in events if name == "state"]
    running = [state for state in states if state["phase"] == "Running" and state["steps"]]
    assert running, states
    assert all(isinstance(state["theta_rad"], float) for state in running)

    done = api.wait(job_id, api.ada_token)
    assert done["phase"] == "Succeeded", done
    assert done["summary"]["steps"] == 60
    assert [change["phase"] for change in done["history"]][:3] == ["Pending", "Fetching", "Queued"]

    logs = api.client.get(f"/api/v1/jobs/{job_id}/logs", headers=api.as_ada())
    assert logs.text == "done after 60 steps\n"
    assert api.client.get(f"/api/v1/jobs/{job_id}/logs?stream=stderr", headers=api.as_ada()).status_code == 200

    manifest = api.client.get(f"/api/v1/jobs/{job_id}/results", headers=api.as_ada()).json()
    names = {entry["name"] for entry in manifest["files"]}
    assert names >= {"metadata.json", "trajectory.parquet", "stdout.txt", "code.tar.gz", "plot.png", "animation.gif"}
    metadata_link = next(entry["url"] for entry in manifest["files"] if entry["name"] == "metadata.json")
    metadata = api.client.get(metadata_link, headers=api.as_ada())
    assert metadata.headers["content-type"] == "application/json"
    assert metadata.json()["job"] == job_id
    assert api.client.get(f"/api/v1/jobs/{job_id}/results/secrets.txt", headers=api.as_ada()).status_code == 404

    trajectory = api.client.get(f"/api/v1/jobs/{job_id}/trajectory", headers=api.as_ada()).json()
    assert len(trajectory["time_s"]) == 60
    columns = ("theta_rad", "theta_dot_rad_per_s", "command", "reward", "simulated_theta_rad")
    assert all(len(trajectory[name]) == 60 for name in columns)


@pytest.mark.slow
def test_logs_can_be_followed_while_the_job_runs(api: ApiHarness) -> None:
    job_id = api.upload(api.ada_token, steps=40).json()["id"]
    with api.client.stream("GET", f"/api/v1/jobs/{job_id}/logs?follow=true", headers=api.as_ada()) as followed:
        text = b"".join(followed.iter_bytes()).decode()
    assert text == "done after 40 steps\n"
    assert api.client.get(f"/api/v1/jobs/{job_id}", headers=api.as_ada()).json()["phase"] == "Succeeded"


@pytest.mark.slow
def test_a_running_job_can_be_cancelled(api: ApiHarness) -> None:
    job_id = api.upload(api.ada_token, steps=2000).json()["id"]
    import time

    deadline = time.monotonic() + 60
    while api.client.get(f"/api/v1/jobs/{job_id}", headers=api.as_ada()).json()["steps"] in (None, 0):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cancelled = api.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=api.as_ada())
    assert cancelled.status_code == 200
    assert cancelled.json()["phase"] == "Cancelled"


def test_listing_filters_and_pages(api: ApiHarness) -> None:
    for _ in range(3):
        assert api.upload(api.bob_token, steps=5).status_code == 201
    first = api.client.get("/api/v1/jobs?limit=2", headers=api.auth(api.bob_token)).json()
    assert len(first["jobs"]) == 2
    assert first["next_cursor"]
    second = api.client.get(f"/api/v1/jobs?limit=2&cursor={first['next_cursor']}", headers=api.auth(api.bob_token))
    ids = [job["id"] for job in first["jobs"] + second.json()["jobs"]]
    assert len(ids) == len(set(ids)) >= 3
    bad = api.client.get("/api/v1/jobs?phase=Sleeping", headers=api.auth(api.bob_token))
    assert bad.status_code == 422
    assert "phase" in bad.json()["detail"]
    everyone = api.client.get("/api/v1/jobs?limit=500", headers=api.auth(api.admin_token)).json()["jobs"]
    assert {job["owner"] for job in everyone} >= {"ada", "bob"}


# -- git sources ---------------------------------------------------------------------------------


def test_the_source_check_says_whether_the_repository_ref_and_entrypoint_exist(
    api: ApiHarness, git_server: GitServer
) -> None:
    commit = git_server.publish("ctl", {"run.py": "print('hi')\n"})
    git_server.publish("empty", {"README.md": "nothing to run\n"})

    def check(url: str, ref: str = "main") -> dict[str, object]:
        body = {"source": {"kind": "git", "url": url, "ref": ref}}
        response = api.client.post("/api/v1/jobs/check", json=body, headers=api.as_ada())
        assert response.status_code == 200, response.text
        result: dict[str, object] = response.json()
        return result

    assert check(git_server.url("ctl")) == {"ok": True, "commit": commit, "message": f"run.py found at {commit[:12]}"}
    missing_repo = check(git_server.url("nope"))
    assert missing_repo["ok"] is False
    assert "cannot be read" in str(missing_repo["message"])
    assert "ref" in str(check(git_server.url("ctl"), ref="no-such-branch")["message"]).lower()
    assert "run.py" in str(check(git_server.url("empty"))["message"])


@pytest.mark.slow
def test_a_job_from_git_runs_at_its_resolved_commit(api: ApiHarness, git_server: GitServer) -> None:
    commit = git_server.publish("ctl2", {"run.py": "print('from git')\n"})
    body = {"source": {"kind": "git", "url": git_server.url("ctl2"), "ref": "main"}}
    created = api.client.post("/api/v1/jobs", json=body, headers=api.as_ada())
    assert created.status_code == 201, created.text
    done = api.wait(created.json()["id"], api.ada_token)
    assert done["phase"] == "Succeeded", done
    assert done["commit"] == commit


# -- robots and system ---------------------------------------------------------------------------


def test_robots_are_listed_with_health_and_their_calibration_downloads(api: ApiHarness, tmp_path: Path) -> None:
    robots = api.client.get("/api/v1/robots", headers=api.as_ada()).json()
    assert [robot["name"] for robot in robots] == ["sim-1", "sim-2"]
    for robot in robots:
        assert {"state", "ready", "reasons", "current_job", "temperature_celsius", "last_reset", "calibration"} <= set(
            robot
        )
    calibration = api.client.get("/api/v1/robots/sim-1/calibration", headers=api.as_ada())
    assert calibration.status_code == 200
    params = calibration_from_document(calibration.json())
    assert params.natural_frequency_rad_per_s > 0
    assert api.client.get("/api/v1/robots/sim-9", headers=api.as_ada()).status_code == 404


def test_health_readiness_metrics_and_openapi(api: ApiHarness) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    api.client.get("/api/v1/robots", headers=api.as_ada())
    metrics = api.client.get("/metrics").text
    assert 'raas_api_requests_total{method="GET",route="/api/v1/robots",status="200"}' in metrics
    assert 'raas_jobs{phase="Succeeded"}' in metrics
    spec = api.client.get("/openapi.json").json()
    assert "/api/v1/jobs" in spec["paths"]
    assert "/api/v1/jobs/{job_id}/live" in spec["paths"]
