"""Fuzzing the REST API from its own OpenAPI document (schemathesis): whatever a client sends,
no 5xx, and every 4xx says what was wrong in ``detail``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from raas_api.auth.tokens import Role, TokenStore
from raas_api.http.app import create_app, platform_config
from raas_api.local.platform import LocalPlatform
from raas_api.settings import ApiSettings

DATA_DIR = Path(tempfile.mkdtemp(prefix="raas-fuzz-"))
# No local folders and only an unreachable git host: fuzzed submissions cannot make the platform
# copy the disk or reach the network; one robot, so that some jobs really run.
SETTINGS = ApiSettings(
    data_dir=DATA_DIR, robots=1, local_mode=False, allowed_git_hosts=["127.0.0.1"], requests_per_second=10_000
)
TOKEN_STORE = TokenStore(DATA_DIR / "tokens.db")
TOKENS = {"user": TOKEN_STORE.create("fuzzer")[0], "admin": TOKEN_STORE.create("root", Role.ADMIN)[0]}
PLATFORM = LocalPlatform(platform_config(SETTINGS))
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(SETTINGS, platform=PLATFORM, tokens=TOKEN_STORE))


@pytest.fixture(scope="module", autouse=True)
def running_platform() -> Iterator[None]:
    PLATFORM.start()
    yield
    PLATFORM.stop()
    TOKEN_STORE.close()
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_server_fail_and_every_refusal_says_why(case: Any) -> None:
    for role in ("user", "admin"):
        response = case.call(headers={"Authorization": f"Bearer {TOKENS[role]}"}, timeout=30)
        assert response.status_code < 500, (case.method, case.path, response.text)
        if 400 <= response.status_code < 500:
            detail = response.json().get("detail")
            assert isinstance(detail, str), response.text
            assert detail.strip(), response.text
