"""Attacks on how ``raas serve`` starts (security issue 12, items 3, 4 and 13): which isolation
level strangers' code gets, where the robots' sockets live, and damaged store files."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from raas_api.cli.isolation_choice import choose_isolation, podman_works
from raas_api.local.platform import Isolation, LocalPlatform, PlatformConfig


def raas(*arguments: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``raas`` command as a user types it (a server that starts is stopped after `timeout_s`)."""
    environment = {**os.environ, "XDG_CONFIG_HOME": tempfile.mkdtemp()}
    environment.pop("RAAS_ISOLATION", None)
    return subprocess.run(
        [sys.executable, "-m", "gym_raas.cli.main", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=environment,
        check=False,
    )


def damage(path: Path) -> None:
    path.write_bytes(b"this is not a database, whatever its name says" * 100)


@pytest.mark.parametrize("name", ["jobs.db", "tokens.db"])
def test_a_damaged_store_file_stops_the_server_with_one_sentence_and_no_token(tmp_path: Path, name: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    damage(data / name)

    ended = raas("serve", "--data-dir", str(data), "--port", "0", "--robots", "1", "--isolation", "process")

    assert ended.returncode == 2
    assert ended.stdout == ""  # no address, no admin token for a server that is not going to run
    lines = ended.stderr.strip().splitlines()
    assert len(lines) == 1, ended.stderr
    assert name in lines[0]
    assert "move it aside" in lines[0]
    assert "Traceback" not in ended.stderr


def test_the_admin_command_reports_a_damaged_token_file_in_one_sentence(tmp_path: Path) -> None:
    damage(tmp_path / "tokens.db")

    ended = raas("admin", "--data-dir", str(tmp_path), "token", "list")

    assert ended.returncode == 2
    assert "tokens.db" in ended.stdout
    assert "Traceback" not in ended.stdout + ended.stderr


def test_containers_are_the_default_isolation_wherever_podman_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAAS_ISOLATION", raising=False)
    assert podman_works() == (os.geteuid() == 0 and bool(shutil.which("podman")) and bool(shutil.which("runc")))
    assert choose_isolation(None) is (Isolation.CONTAINER if podman_works() else Isolation.PROCESS)
    assert choose_isolation("process") is Isolation.PROCESS
    monkeypatch.setenv("RAAS_ISOLATION", "process")
    assert choose_isolation(None) is Isolation.PROCESS


def test_a_process_level_server_refuses_to_start_while_other_people_hold_tokens(tmp_path: Path) -> None:
    created = raas("admin", "--data-dir", str(tmp_path), "token", "create", "--owner", "mallory")
    assert created.returncode == 0, created.stdout + created.stderr

    ended = raas("serve", "--data-dir", str(tmp_path), "--port", "0", "--robots", "1", "--isolation", "process")

    assert ended.returncode == 2
    assert ended.stdout == ""
    assert "mallory" in ended.stderr
    assert "--isolation container" in ended.stderr


def test_no_tokens_for_other_people_once_a_server_ran_at_the_process_level(tmp_path: Path) -> None:
    (tmp_path / "server.json").write_text('{"isolation": "process"}\n')

    refused = raas("admin", "--data-dir", str(tmp_path), "token", "create", "--owner", "mallory")

    assert refused.returncode == 2
    assert "--isolation container" in refused.stdout
    listed = raas("admin", "--data-dir", str(tmp_path), "token", "list")
    assert "mallory" not in listed.stdout


def test_robot_sockets_live_in_a_fresh_private_folder_not_one_a_job_prepared(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # Where the previous code put the sockets, planted by a job before the server started.
    digest = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:10]
    planted = Path(tempfile.gettempdir()) / f"raas-{digest}"
    planted.mkdir(mode=0o777, exist_ok=True)
    planted.chmod(0o777)
    try:
        with LocalPlatform(PlatformConfig(data_dir=data, robots=2)) as platform:
            folders = {agent.config.socket_path.parent for agent in platform.agents.values()}
            assert len(folders) == 1
            folder = folders.pop()
            facts = folder.lstat()
            assert folder != planted
            assert stat.S_ISDIR(facts.st_mode)
            assert stat.S_IMODE(facts.st_mode) == 0o700
            assert facts.st_uid == os.geteuid()
            assert not any(planted.iterdir())
            with LocalPlatform(PlatformConfig(data_dir=tmp_path / "other", robots=1)) as second:
                assert next(iter(second.agents.values())).config.socket_path.parent != folder
        assert not folder.exists()  # never reused by a later server
        assert stat.S_IMODE(data.stat().st_mode) == 0o700  # the data folder is no job's to read
    finally:
        planted.rmdir()
