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
from wheels import make_wheel

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


def platform_wheel(folder: Path, name: str, platform: str) -> Path:
    """A wheel of `name` for one platform only (as a compiled package ships), built by hand."""
    pure = make_wheel(folder / "pure", name)
    wheel = folder / f"{name}-1.0-cp311-cp311-{platform}.whl"
    pure.rename(wheel)
    return wheel


def test_a_requirements_txt_is_resolved_for_every_robot_platform_and_stored_as_wheels(
    git_server: GitServer, s3: S3Server, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    make_wheel(index, "tinypkg")  # pure Python: one wheel serves every platform
    commit = git_server.publish("needs-tinypkg", {"run.py": "import tinypkg\n", "requirements.txt": "tinypkg==1.0\n"})
    client, code_url = presigned_put(s3, "results/v1/job-w/code.tar.gz")
    _, wheels_url = presigned_put(s3, "results/v1/job-w/wheels.tar.gz")
    report = tmp_path / "termination-log"
    environment = {
        "RAAS_SOURCE_URL": git_server.url("needs-tinypkg"),
        "RAAS_SOURCE_REF": "main",
        "RAAS_CODE_UPLOAD_URL": code_url,
        "RAAS_WHEELS_UPLOAD_URL": wheels_url,
        "RAAS_WHEEL_PLATFORMS": "manylinux_2_36_aarch64,manylinux_2_36_x86_64",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(index),
        "RAAS_TERMINATION_LOG": str(report),
    }
    assert main(environment) == 0, report.read_text()
    assert report.read_text() == f"{commit} +wheels"
    archive = tmp_path / "wheels.tar.gz"
    client.fget_object("results", "results/v1/job-w/wheels.tar.gz", str(archive))
    with tarfile.open(archive) as bundle:
        assert bundle.getnames() == ["tinypkg-1.0-py3-none-any.whl"]


def test_a_compiled_requirement_without_a_wheel_for_the_robots_is_a_clear_failure(
    git_server: GitServer, s3: S3Server, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    platform_wheel(index, "fastpkg", "manylinux_2_17_x86_64")  # no aarch64 build of it exists
    git_server.publish("needs-fastpkg", {"run.py": "import fastpkg\n", "requirements.txt": "fastpkg\n"})
    _, code_url = presigned_put(s3, "results/v1/job-x/code.tar.gz")
    _, wheels_url = presigned_put(s3, "results/v1/job-x/wheels.tar.gz")
    report = tmp_path / "termination-log"
    environment = {
        "RAAS_SOURCE_URL": git_server.url("needs-fastpkg"),
        "RAAS_CODE_UPLOAD_URL": code_url,
        "RAAS_WHEELS_UPLOAD_URL": wheels_url,
        "RAAS_WHEEL_PLATFORMS": "manylinux_2_36_aarch64",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(index),
        "RAAS_TERMINATION_LOG": str(report),
    }
    assert main(environment) == 1
    message = report.read_text()
    assert message.startswith("RequirementsFailed: requirements.txt has no wheels for the robots' platform ")
    assert "manylinux_2_36_aarch64" in message


def test_uploaded_code_is_only_downloaded_and_its_requirements_resolved(s3: S3Server, tmp_path: Path) -> None:
    index = tmp_path / "index"
    make_wheel(index, "tinypkg")
    code = tmp_path / "code"
    code.mkdir()
    (code / "run.py").write_text("import tinypkg\n")
    (code / "requirements.txt").write_text("tinypkg\n")
    archive = tmp_path / "upload.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        for path in sorted(code.iterdir()):
            bundle.add(path, arcname=path.name)
    client, _ = presigned_put(s3, "results/v1/job-u/wheels.tar.gz")
    client.fput_object("results", "results/v1/job-u/code.tar.gz", str(archive))
    code_url = client.presigned_get_object("results", "results/v1/job-u/code.tar.gz", expires=timedelta(minutes=5))
    _, wheels_url = presigned_put(s3, "results/v1/job-u/wheels.tar.gz")
    report = tmp_path / "termination-log"
    environment = {
        "RAAS_CODE_DOWNLOAD_URL": code_url,
        "RAAS_WHEELS_UPLOAD_URL": wheels_url,
        "RAAS_WHEEL_PLATFORMS": "manylinux_2_36_x86_64",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(index),
        "RAAS_TERMINATION_LOG": str(report),
    }
    assert main(environment) == 0, report.read_text()
    assert report.read_text() == "uploaded +wheels"
    client.fget_object("results", "results/v1/job-u/wheels.tar.gz", str(tmp_path / "wheels.tar.gz"))
    with tarfile.open(tmp_path / "wheels.tar.gz") as bundle:
        assert bundle.getnames() == ["tinypkg-1.0-py3-none-any.whl"]
