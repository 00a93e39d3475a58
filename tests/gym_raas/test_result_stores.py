"""Result stores: the layout contract, the filesystem store, S3 through the real minio SDK
against a real S3 HTTP server (moto server mode), and spooling through an outage."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from s3_server import S3Server, running_s3_server

from gym_raas.results.layout import ResultFile, job_prefix, result_key
from gym_raas.results.spool import SpoolingResultStore
from gym_raas.results.store import FilesystemResultStore, ResultNotFoundError, S3ResultStore, StoreUnavailableError


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server) -> S3ResultStore:
    s3_server.reset()
    return S3ResultStore(
        s3_server.endpoint, "raas", "raas-secret", "raas-results", secure=False, retries=1, backoff_s=0.01
    )


def test_layout_gives_every_file_of_a_job_one_versioned_prefix() -> None:
    assert job_prefix("swing-42") == "results/v1/swing-42/"
    assert result_key("swing-42", ResultFile.TRAJECTORY) == "results/v1/swing-42/trajectory.parquet"
    assert ResultFile.PLOT.content_type == "image/png"
    with pytest.raises(ValueError, match="job id"):
        job_prefix("../etc")


def test_filesystem_store_round_trips_and_refuses_escaping_keys(tmp_path: Path) -> None:
    store = FilesystemResultStore(tmp_path / "results")
    key = result_key("job-1", ResultFile.STDOUT)
    store.put_bytes(key, b"hello\n", ResultFile.STDOUT.content_type)
    assert store.get_bytes(key) == b"hello\n"
    assert store.exists(key)
    assert store.list_keys(job_prefix("job-1")) == [key]
    assert store.download_url(key).startswith("file://")
    with pytest.raises(ValueError, match="invalid result key"):
        store.put_bytes("results/../../outside", b"x", "text/plain")
    with pytest.raises(ResultNotFoundError):
        store.get_bytes(result_key("job-1", ResultFile.PLOT))
    store.delete(key)
    store.delete(key)  # deleting what is not there is no error
    assert not store.exists(key)


def test_s3_store_creates_its_bucket_and_round_trips_objects(s3: S3ResultStore) -> None:
    key = result_key("job-2", ResultFile.METADATA)
    s3.put_bytes(key, b'{"phase": "Succeeded"}', ResultFile.METADATA.content_type)
    assert s3.get_bytes(key) == b'{"phase": "Succeeded"}'
    assert s3.exists(key)
    assert not s3.exists(result_key("job-2", ResultFile.PLOT))
    assert s3.list_keys(job_prefix("job-2")) == [key]
    with pytest.raises(ResultNotFoundError):
        s3.get_bytes(result_key("job-2", ResultFile.PLOT))
    s3.delete(key)
    s3.delete(key)  # deleting what is not there is no error
    assert not s3.exists(key)


def test_s3_store_uploads_a_large_trajectory_in_parts_and_serves_it_by_presigned_url(
    s3: S3ResultStore, tmp_path: Path
) -> None:
    large = tmp_path / "trajectory.parquet"
    large.write_bytes(os.urandom(12 * 1024 * 1024))  # > 5 MiB: multipart upload
    key = result_key("job-3", ResultFile.TRAJECTORY)
    s3.put_file(key, large, ResultFile.TRAJECTORY.content_type)
    url = s3.download_url(key, timedelta(minutes=5))
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Content-Type"] == ResultFile.TRAJECTORY.content_type
        assert response.read() == large.read_bytes()
    with pytest.raises(ValueError, match="expire"):
        s3.download_url(key, timedelta(days=8))


def test_results_written_during_an_outage_are_spooled_and_uploaded_when_s3_returns(
    s3: S3ResultStore, s3_server: S3Server, tmp_path: Path
) -> None:
    store = SpoolingResultStore(s3, tmp_path / "spool")
    before = result_key("job-4", ResultFile.STDOUT)
    store.put_bytes(before, b"before outage\n", ResultFile.STDOUT.content_type)
    s3_server.stop()
    try:
        during = result_key("job-4", ResultFile.STDERR)
        store.put_bytes(during, b"during outage\n", ResultFile.STDERR.content_type)
        assert store.pending_keys() == [during]
        assert store.get_bytes(during) == b"during outage\n"  # readable while spooled
        assert store.flush() == 1  # still down: nothing lost, still pending
        with pytest.raises(StoreUnavailableError):
            s3.get_bytes(before)
    finally:
        s3_server.start()
    assert store.flush() == 0
    assert store.pending_keys() == []
    assert s3.get_bytes(during) == b"during outage\n"
    assert s3.get_bytes(before) == b"before outage\n"
