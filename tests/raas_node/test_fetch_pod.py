"""The fetch pod's program against a real git daemon and a real S3 server (moto) with a presigned
PUT URL, reporting through its termination message as the operator reads it."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from git_server import GitServer, running_git_server
from minio import Minio
from s3_server import S3Server, running_s3_server

from raas_node.runner.fetch_pod import main


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with running_git_server(tmp_path_factory.mktemp("git")) as server:
        yield server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


def presigned_put(s3: S3Server, key: str) -> tuple[Minio, str]:
    client = Minio(s3.endpoint, access_key="raas", secret_key="raas-secret", secure=False, region="us-east-1")
    if not client.bucket_exists("results"):
        client.make_bucket("results")
    return client, client.presigned_put_object("results", key, expires=timedelta(minutes=10))


def test_a_good_source_is_fetched_uploaded_and_its_commit_reported(
    git_server: GitServer, s3: S3Server, tmp_path: Path
) -> None:
    commit = git_server.publish("ctl", {"run.py": "print('hi')\n"})
    client, url = presigned_put(s3, "results/v1/job-1/code.tar.gz")
    report = tmp_path / "termination-log"
    environment = {
        "RAAS_SOURCE_URL": git_server.url("ctl"),
        "RAAS_SOURCE_REF": "main",
        "RAAS_CODE_UPLOAD_URL": url,
        "RAAS_TERMINATION_LOG": str(report),
    }
    assert main(environment) == 0
    assert report.read_text() == commit
    archive = tmp_path / "code.tar.gz"
    client.fget_object("results", "results/v1/job-1/code.tar.gz", str(archive))
    with tarfile.open(archive) as bundle:
        assert "run.py" in bundle.getnames()


def test_a_bad_ref_or_missing_entrypoint_is_reported_as_reason_and_message(
    git_server: GitServer, s3: S3Server, tmp_path: Path
) -> None:
    git_server.publish("bare", {"README.md": "no code\n"})
    _, url = presigned_put(s3, "results/v1/job-2/code.tar.gz")
    report = tmp_path / "termination-log"
    base = {"RAAS_CODE_UPLOAD_URL": url, "RAAS_TERMINATION_LOG": str(report)}
    assert main({**base, "RAAS_SOURCE_URL": git_server.url("bare"), "RAAS_SOURCE_REF": "nope"}) == 1
    assert report.read_text().startswith("RefNotFound: ")
    assert main({**base, "RAAS_SOURCE_URL": git_server.url("bare"), "RAAS_SOURCE_REF": "main"}) == 1
    assert "run.py" in report.read_text()
    assert main({"RAAS_TERMINATION_LOG": str(report)}) == 1
    assert report.read_text() == "FetchMisconfigured: the fetch pod has no RAAS_SOURCE_URL"


def test_an_unreachable_store_is_an_upload_failure(git_server: GitServer, tmp_path: Path) -> None:
    git_server.publish("ctl3", {"run.py": "print('hi')\n"})
    report = tmp_path / "termination-log"
    environment = {
        "RAAS_SOURCE_URL": git_server.url("ctl3"),
        "RAAS_SOURCE_REF": "main",
        "RAAS_CODE_UPLOAD_URL": "http://127.0.0.1:9/results/code.tar.gz",
        "RAAS_TERMINATION_LOG": str(report),
    }
    assert main(environment) == 1
    assert report.read_text().startswith("UploadFailed: ")
