"""Fetching users' code over a real git connection (git daemon on 127.0.0.1) and from local
folders and archives: the snapshot is exact, and every failure has a reason a user can act on."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from git_server import GitServer, running_git_server

from raas_node.runner.fetch import FetchError, FetchLimits, fetch_git, fetch_local, resolve_ref

RUN_PY = "print('hello from the robot')\n"


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with running_git_server(tmp_path_factory.mktemp("git")) as server:
        yield server


def test_a_branch_resolves_to_its_commit_and_the_snapshot_is_exactly_that_commit(
    git_server: GitServer, tmp_path: Path
) -> None:
    first = git_server.publish("ctl", {"run.py": RUN_PY, "lib/helper.py": "X = 1\n"}, tag="v1")
    second = git_server.publish("ctl", {"lib/helper.py": "X = 2\n"})
    assert resolve_ref(git_server.url("ctl"), "main") == second
    assert resolve_ref(git_server.url("ctl"), "v1") == first
    snapshot = fetch_git(git_server.url("ctl"), first, "run.py", tmp_path)
    assert snapshot.commit == first
    assert (snapshot.directory / "lib/helper.py").read_text() == "X = 1\n"
    assert not (snapshot.directory / ".git").exists()
    with tarfile.open(snapshot.archive) as archive:
        assert sorted(archive.getnames()) == ["lib/helper.py", "run.py"]


def test_the_snapshot_archive_is_reproducible(git_server: GitServer, tmp_path: Path) -> None:
    commit = git_server.publish("repro", {"run.py": RUN_PY})
    one = fetch_git(git_server.url("repro"), commit, "run.py", tmp_path / "one")
    two = fetch_git(git_server.url("repro"), commit, "run.py", tmp_path / "two")
    assert one.archive.read_bytes() == two.archive.read_bytes()
    header = one.archive.read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0"  # no time stamp in the gzip header (it differed from second to second)
    assert header[3] & 0x08 == 0  # and no file name


def test_an_unknown_repository_is_a_clear_error(git_server: GitServer) -> None:
    with pytest.raises(FetchError, match="cannot be read") as caught:
        resolve_ref(git_server.url("no-such-repo"), "main")
    assert caught.value.reason == "RepositoryNotFound"


def test_an_unreachable_host_is_a_clear_error() -> None:
    with pytest.raises(FetchError) as caught:
        resolve_ref("git://127.0.0.1:9/nothing.git", "main", FetchLimits(timeout_s=10))
    assert caught.value.reason == "RepositoryNotFound"


def test_an_unknown_ref_is_a_clear_error(git_server: GitServer) -> None:
    git_server.publish("refs", {"run.py": RUN_PY})
    with pytest.raises(FetchError, match="'no-such-branch' does not exist") as caught:
        resolve_ref(git_server.url("refs"), "no-such-branch")
    assert caught.value.reason == "RefNotFound"


def test_code_without_the_entrypoint_is_refused(git_server: GitServer, tmp_path: Path) -> None:
    commit = git_server.publish("no-entry", {"controller.py": RUN_PY})
    with pytest.raises(FetchError, match=r"run\.py is not in the code") as caught:
        fetch_git(git_server.url("no-entry"), commit, "run.py", tmp_path)
    assert caught.value.reason == "EntrypointNotFound"


def test_a_repository_over_the_size_limit_is_refused(git_server: GitServer, tmp_path: Path) -> None:
    commit = git_server.publish("huge", {"run.py": RUN_PY, "weights.bin": b"\0" * 300_000})
    with pytest.raises(FetchError, match="limit") as caught:
        fetch_git(git_server.url("huge"), commit, "run.py", tmp_path, FetchLimits(max_bytes=100_000))
    assert caught.value.reason == "TooLarge"


def test_hooks_and_submodules_of_the_repository_never_run(git_server: GitServer, tmp_path: Path) -> None:
    commit = git_server.publish(
        "sneaky",
        {
            "run.py": RUN_PY,
            ".gitmodules": '[submodule "x"]\n\tpath = x\n\turl = git://127.0.0.1:9/x.git\n',
            ".githooks/post-checkout": "#!/bin/sh\ntouch /tmp/raas-hook-ran\n",
        },
    )
    snapshot = fetch_git(git_server.url("sneaky"), commit, "run.py", tmp_path)
    assert (snapshot.directory / "run.py").exists()
    assert not Path("/tmp/raas-hook-ran").exists()


def test_a_local_folder_becomes_a_snapshot_with_its_requirements_hash(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "run.py").write_text(RUN_PY)
    (folder / "requirements.txt").write_text("tinypkg==1.0\n")
    snapshot = fetch_local(folder, "run.py", tmp_path / "work")
    assert snapshot.commit is None
    assert snapshot.requirements_sha256 is not None
    assert len(snapshot.requirements_sha256) == 64


def test_archives_unpack_but_cannot_escape_the_code_folder(tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as bundle:
        bundle.writestr("run.py", RUN_PY)
    assert (fetch_local(good, "run.py", tmp_path / "a").directory / "run.py").exists()

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as bundle:
        data = RUN_PY.encode()
        for name in ("run.py", "../../escaped.py"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    with pytest.raises(FetchError, match="outside the code folder") as caught:
        fetch_local(evil, "run.py", tmp_path / "b")
    assert caught.value.reason == "UnsafeArchive"
    assert not (tmp_path / "escaped.py").exists()

    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not an archive")
    with pytest.raises(FetchError) as caught_garbage:
        fetch_local(garbage, "run.py", tmp_path / "c")
    assert caught_garbage.value.reason == "BadArchive"


def test_a_tar_gz_of_plain_files_unpacks_with_its_subfolders(tmp_path: Path) -> None:
    archive = tmp_path / "code.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        for name, text in (("run.py", RUN_PY), ("lib/helper.py", "X = 1\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    code = fetch_local(archive, "run.py", tmp_path / "work").directory
    assert (code / "run.py").read_text() == RUN_PY
    assert (code / "lib" / "helper.py").read_text() == "X = 1\n"


def test_an_archive_of_a_folder_is_lifted_to_its_contents(tmp_path: Path) -> None:
    """``zip -r ctl.zip ctl/`` (or a desktop's "compress") stores ``ctl/run.py``."""
    archive = tmp_path / "ctl.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("ctl/run.py", RUN_PY)
        bundle.writestr("ctl/lib/helper.py", "X = 1\n")
    code = fetch_local(archive, "run.py", tmp_path / "work").directory
    assert sorted(path.relative_to(code).as_posix() for path in code.rglob("*.py")) == ["lib/helper.py", "run.py"]
    # An entrypoint that names the folder keeps the layout as it is.
    kept = fetch_local(archive, "ctl/run.py", tmp_path / "kept").directory
    assert (kept / "ctl" / "run.py").exists()
