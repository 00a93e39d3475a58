"""Folder sources cannot read the server's disk (security issue 12, item 1).

``{"source": {"kind": "local", "path": ...}}`` made the server pack any folder it could read (as
root) and serve it back as the job's ``code.tar.gz``, for any token: another user's uploads, root's
home. Now only the ``raas serve`` session's admin token may, only below the configured roots, by
the resolved path, never the data folder; and the copy neither follows links out of the folder
nor grows past the size limit (a folder holding the work folder copied itself into itself).
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_fixtures import ApiHarness, api_harness

from raas_api.auth.tokens import Role
from raas_api.settings import SESSION_OWNER
from raas_node.runner.fetch import FetchError, FetchLimits, fetch_local

RUN_PY = "print('hello')\n"


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """An allowed root with a controller in it, a private folder outside it, and the data folder."""
    allowed = tmp_path / "allowed"
    controller = allowed / "ctl"
    controller.mkdir(parents=True)
    (controller / "run.py").write_text(RUN_PY)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "run.py").write_text(RUN_PY)
    (private / "secret.txt").write_text("root's secret\n")
    return {
        "root": tmp_path,
        "allowed": allowed,
        "controller": controller,
        "private": private,
        "data": tmp_path / "data",
    }


@pytest.fixture
def api(folders: dict[str, Path]) -> Iterator[ApiHarness]:
    folders["data"].mkdir()
    with api_harness(folders["data"], robots=0, local_source_roots=[folders["allowed"]]) as harness:
        yield harness


def session_admin(api: ApiHarness) -> dict[str, str]:
    """The token ``raas serve`` prints for its session."""
    return api.auth(api.tokens.create(SESSION_OWNER, Role.ADMIN)[0])


def submit(api: ApiHarness, headers: dict[str, str], path: Path | str) -> tuple[int, str]:
    response = api.client.post("/api/v1/jobs", json={"source": {"kind": "local", "path": str(path)}}, headers=headers)
    return response.status_code, response.json().get("detail", "")


def test_a_user_cannot_have_a_private_folder_of_the_server_packed_as_code(
    api: ApiHarness, folders: dict[str, Path]
) -> None:
    for path in (folders["private"], folders["controller"], "/root"):
        code, detail = submit(api, api.as_ada(), path)
        assert code == 403, detail
        assert "upload" in detail
    assert api.client.get("/api/v1/jobs", headers=api.as_ada()).json()["jobs"] == []


def test_another_admin_than_the_session_admin_cannot_submit_folders(api: ApiHarness, folders: dict[str, Path]) -> None:
    code, detail = submit(api, api.auth(api.admin_token), folders["controller"])
    assert code == 403
    assert "raas serve" in detail


def test_the_session_admin_is_held_to_the_allowed_roots_and_kept_out_of_the_data_folder(
    api: ApiHarness, folders: dict[str, Path]
) -> None:
    admin = session_admin(api)
    uploads = folders["data"] / "uploads"
    uploads.mkdir()
    escape = folders["allowed"] / "escape"
    escape.symlink_to(folders["private"])  # below the root by name, outside it in fact
    into_data = folders["allowed"] / "data-link"
    into_data.symlink_to(folders["data"])
    for path in (folders["private"], "/", folders["root"], escape, folders["allowed"] / ".." / "private"):
        code, detail = submit(api, admin, path)
        assert code == 403, (path, detail)
        assert "below a folder" in detail or "data folder" in detail, detail
    for path in (folders["data"], uploads, into_data):
        code, detail = submit(api, admin, path)
        assert code == 403, (path, detail)
        assert "data folder" in detail
    code, detail = submit(api, admin, folders["allowed"] / "missing")
    assert code == 422
    assert "does not exist" in detail


def test_the_session_admin_runs_a_folder_below_an_allowed_root_without_what_its_links_point_to(
    api: ApiHarness, folders: dict[str, Path]
) -> None:
    controller = folders["controller"]
    (controller / "secret.txt").symlink_to(folders["private"] / "secret.txt")
    (controller / "private").symlink_to(folders["private"])
    (controller / "helper.py").write_text("X = 1\n")
    (controller / "alias.py").symlink_to(controller / "helper.py")  # inside the folder: kept
    admin = session_admin(api)
    created = api.client.post(
        "/api/v1/jobs", json={"source": {"kind": "local", "path": str(controller)}}, headers=admin
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["source"]["path"] == str(controller.resolve())
    deadline = time.monotonic() + 60
    while api.client.get(f"/api/v1/jobs/{job_id}", headers=admin).json()["phase"] in ("Pending", "Fetching"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    packed = api.client.get(f"/api/v1/jobs/{job_id}/results/code.tar.gz", headers=admin)
    assert packed.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(packed.content)) as bundle:
        assert sorted(bundle.getnames()) == ["alias.py", "helper.py", "run.py"]


def test_no_roots_means_no_folder_sources_and_the_refusal_names_the_setting(folders: dict[str, Path]) -> None:
    folders["data"].mkdir()
    with api_harness(folders["data"], robots=0) as api:
        code, detail = submit(api, session_admin(api), folders["controller"])
    assert code == 403
    assert "RAAS_LOCAL_SOURCE_ROOTS" in detail


# -- the copy itself (raas_node.runner.fetch.fetch_local) ----------------------------------------


def tree_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def test_a_folder_holding_the_work_folder_is_copied_once_not_into_itself(tmp_path: Path) -> None:
    """The data folder as a source: the work folder is inside it, and the copy copied itself into
    itself (7.3 GB in a minute, then a 727,812-character error)."""
    source = tmp_path / "data"
    source.mkdir()
    (source / "run.py").write_text(RUN_PY)
    for index in range(4):
        (source / f"blob-{index}.bin").write_bytes(os.urandom(64 * 1024))
    workdir = source / "work" / "job-1"
    workdir.mkdir(parents=True)  # as the platform makes it before fetching
    snapshot = fetch_local(source, "run.py", workdir)
    copied = sorted(str(path.relative_to(snapshot.directory)) for path in snapshot.directory.rglob("*"))
    assert copied == [*(f"blob-{index}.bin" for index in range(4)), "run.py", "work", "work/job-1"]
    assert tree_bytes(snapshot.directory) == tree_bytes(source) - tree_bytes(source / "work")


def test_the_size_limit_stops_the_copy_as_it_passes_and_the_message_stays_short(tmp_path: Path) -> None:
    source = tmp_path / ("a-long-folder-name-" * 12)
    source.mkdir()
    (source / "run.py").write_text(RUN_PY)
    for index in range(8):
        (source / f"blob-{index}.bin").write_bytes(os.urandom(64 * 1024))
    limits = FetchLimits(max_bytes=256 * 1024, max_files=100)
    workdir = tmp_path / "work"
    with pytest.raises(FetchError) as caught:
        fetch_local(source, "run.py", workdir, limits)
    assert caught.value.reason == "TooLarge"
    assert len(str(caught.value)) <= 500
    assert tree_bytes(workdir) <= limits.max_bytes + 64 * 1024  # stopped while copying


def test_links_out_of_the_folder_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret.txt").write_text("secret\n")
    (outside / "deep" / "more.txt").write_text("more\n")
    folder = tmp_path / "ctl"
    folder.mkdir()
    (folder / "run.py").write_text(RUN_PY)
    (folder / "secret.txt").symlink_to(outside / "secret.txt")
    (folder / "everything").symlink_to(outside)
    (folder / "loop").symlink_to(folder)
    snapshot = fetch_local(folder, "run.py", tmp_path / "work")
    assert sorted(path.name for path in snapshot.directory.rglob("*")) == ["run.py"]


def test_a_fifo_in_the_folder_neither_blocks_nor_is_copied(tmp_path: Path) -> None:
    folder = tmp_path / "ctl"
    folder.mkdir()
    (folder / "run.py").write_text(RUN_PY)
    os.mkfifo(folder / "pipe")
    snapshot = fetch_local(folder, "run.py", tmp_path / "work")
    assert sorted(path.name for path in snapshot.directory.iterdir()) == ["run.py"]


def test_file_count_is_limited_while_walking(tmp_path: Path) -> None:
    folder = tmp_path / "ctl"
    folder.mkdir()
    (folder / "run.py").write_text(RUN_PY)
    for index in range(20):
        (folder / f"f{index}.txt").write_text("x")
    with pytest.raises(FetchError) as caught:
        fetch_local(folder, "run.py", tmp_path / "work", FetchLimits(max_files=10))
    assert caught.value.reason == "TooLarge"
    assert "10 files" in str(caught.value)
