"""The OpenAPI document tells the truth about the API (schemathesis 4, every route).

Every operation of ``/openapi.json`` is called with generated requests (fixed seed, a bounded
number of examples) with a user's and an admin's token, and each response must have a documented
status code, a documented media type and a body that matches the documented schema, and never be
a 5xx. A finished job then has every result file, its logs, trajectory and live stream checked
the same way, since generated job ids only ever reach the 404s.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from api_fixtures import controller_zip
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, seed, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gym_raas.results.layout import ResultFile
from raas_api.auth.tokens import Role, TokenStore
from raas_api.http.app import create_app, platform_config
from raas_api.local.platform import LocalPlatform
from raas_api.settings import ApiSettings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
DATA_DIR = Path(tempfile.mkdtemp(prefix="raas-openapi-"))
# No folder sources and only an unreachable git host: generated submissions cannot make the
# platform read the disk or reach the network. One robot runs the finished job's example.
SETTINGS = ApiSettings(
    data_dir=DATA_DIR, robots=1, allowed_git_hosts=["127.0.0.1"], requests_per_second=10_000, max_queued_per_owner=5
)
TOKEN_STORE = TokenStore(DATA_DIR / "tokens.db")
TOKENS = {"user": TOKEN_STORE.create("schemathesis")[0], "admin": TOKEN_STORE.create("root", Role.ADMIN)[0]}
PLATFORM = LocalPlatform(platform_config(SETTINGS))
APP = create_app(SETTINGS, platform=PLATFORM, tokens=TOKEN_STORE)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def running_platform() -> Iterator[None]:
    PLATFORM.start()
    yield
    PLATFORM.stop()
    TOKEN_STORE.close()
    shutil.rmtree(DATA_DIR, ignore_errors=True)


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@schema.parametrize()
@seed(20260412)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_answers_as_its_openapi_document_says(case: Any) -> None:
    for role in ("user", "admin"):
        case.call_and_validate(headers=bearer(role), checks=CHECKS, timeout=30)


def test_a_git_source_without_kind_is_accepted_as_the_schema_says() -> None:
    """``kind`` has a default in the document, so a source without one must be taken as git."""
    with TestClient(APP) as client:
        response = client.post(
            "/api/v1/jobs", json={"source": {"url": "https://127.0.0.1/ctl.git"}}, headers=bearer("user")
        )
    assert response.status_code == 201, response.text
    assert response.json()["source"]["kind"] == "git"


def test_every_error_response_is_documented_as_a_detail_string() -> None:
    document = APP.openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")) and path != "/readyz":
                    reference = response["content"]["application/json"]["schema"]["$ref"]
                    body = document["components"]["schemas"][reference.rsplit("/", 1)[-1]]
                    assert body["properties"]["detail"] == {"type": "string", "title": "Detail"}, (method, path, code)
            if path.startswith("/api/"):
                assert {"400", "401", "413", "422", "429"} <= set(operation["responses"]), (method, path)


@pytest.mark.slow
def test_a_finished_jobs_files_logs_trajectory_and_live_stream_match_the_document() -> None:
    with TestClient(APP) as client:
        created = client.post(
            "/api/v1/jobs/upload",
            headers=bearer("user"),
            files={"archive": ("controller.zip", controller_zip(10), "application/zip")},
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/api/v1/jobs/{job_id}", headers=bearer("user")).json()["phase"] != "Succeeded":
            assert time.monotonic() < deadline, "the job did not succeed"
            time.sleep(0.2)
    calls: list[tuple[str, dict[str, str], dict[str, str]]] = [
        ("/api/v1/jobs/{job_id}/results/{name}", {"job_id": job_id, "name": result.value}, {})
        for result in ResultFile
        if result is not ResultFile.STDERR  # the controller writes nothing there: no file
    ]
    calls += [
        ("/api/v1/jobs/{job_id}/logs", {"job_id": job_id}, {"stream": "stdout"}),
        ("/api/v1/jobs/{job_id}/logs", {"job_id": job_id}, {"follow": "true"}),
        ("/api/v1/jobs/{job_id}/results", {"job_id": job_id}, {}),
        ("/api/v1/jobs/{job_id}/trajectory", {"job_id": job_id}, {}),
        ("/api/v1/jobs/{job_id}/live", {"job_id": job_id}, {}),
        ("/api/v1/jobs/{job_id}", {"job_id": job_id}, {}),
    ]
    for path, parameters, query in calls:
        case = schema[path]["GET"].Case(path_parameters=parameters, query=query)
        response = case.call_and_validate(headers=bearer("user"), checks=CHECKS, timeout=60)
        assert response.status_code == 200, (path, parameters, response.text)
