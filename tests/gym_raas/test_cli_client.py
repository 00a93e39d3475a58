"""The ``raas`` user CLI and its HTTP client: unit tests, then end to end against a real ``raas serve``."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import httpx
import pytest
from git_server import running_git_server
from polling import wait_until

from gym_raas.cli import commands
from gym_raas.cli.client import (
    DEFAULT_SERVER,
    TERMINAL_PHASES,
    RaasApiError,
    RaasClient,
    RaasConfigError,
    pack_folder,
    resolve_connection,
)
from gym_raas.cli.main import main
from gym_raas.params import PendulumParams, load_calibration

SHORT_CONTROLLER = """\
import gymnasium as gym, numpy as np, gym_raas
env = gym.make("RaasPendulum-v0", max_episode_steps=20)
env.reset()
[env.step(np.array([1.0], dtype=np.float32)) for _ in range(20)]
print("done")
"""
LONG_CONTROLLER = """\
import gymnasium as gym, numpy as np, gym_raas
env = gym.make("RaasPendulum-v0", max_episode_steps=4000)
env.reset()
for _ in range(4000):  # 200 s
    env.step(np.array([0.5], dtype=np.float32))
"""

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def raas(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    """Run ``raas ARGS...`` in process: (exit code, stdout, stderr); the developer's settings unseen."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    monkeypatch.delenv("RAAS_SERVER", raising=False)
    monkeypatch.delenv("RAAS_TOKEN", raising=False)

    def run(*arguments: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(arguments))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("raas: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def mock_client(answer: Callable[[httpx.Request], httpx.Response], server: str = "http://raas.test") -> RaasClient:
    return RaasClient(server, "secret", transport=httpx.MockTransport(answer))


def job_view(phase: str, **fields: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": "job-0123456789",
        "owner": "ada",
        "phase": phase,
        "reason": "",
        "message": "",
        "failure_class": None,
        "created_at": "2024-05-01T12:00:03+00:00",
        "source": {"kind": "git", "url": "https://example.com/c.git", "ref": "main"},
        "entrypoint": "run.py",
        "time_limit_s": 120,
        "priority": 0,
        "robot_request": {},
        "robot": None,
        "commit": None,
        "attempts": 0,
        "queue_position": None,
        "estimated_start": None,
        "steps": None,
        "summary": None,
        "results_pending": 0,
        "history": [],
    }
    view.update(fields)
    return view


# --- Connection settings ------------------------------------------------------------------------


def test_flags_beat_environment_which_beats_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "raas").mkdir()
    (tmp_path / "raas" / "config.json").write_text(json.dumps({"server": "http://file:1/", "token": "file-token"}))
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert resolve_connection(None, None, environ=environ) == ("http://file:1", "file-token")
    environ |= {"RAAS_SERVER": "http://env:2", "RAAS_TOKEN": "env-token"}
    assert resolve_connection(None, None, environ=environ) == ("http://env:2", "env-token")
    assert resolve_connection("http://flag:3", None, environ=environ) == ("http://flag:3", "env-token")
    assert resolve_connection("http://flag:3", "flag-token", environ=environ) == ("http://flag:3", "flag-token")


def test_without_any_setting_the_local_server_is_used_without_a_token(tmp_path: Path) -> None:
    assert resolve_connection(None, None, environ={"XDG_CONFIG_HOME": str(tmp_path)}) == (DEFAULT_SERVER, None)


def test_a_broken_config_file_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "raas").mkdir()
    (tmp_path / "raas" / "config.json").write_text("{not json")
    with pytest.raises(RaasConfigError, match=r"config\.json is not readable JSON"):
        resolve_connection(None, None, environ={"XDG_CONFIG_HOME": str(tmp_path)})


def test_the_cli_uses_the_server_of_the_config_file(raas: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = closed_port_url()
    (tmp_path / "raas").mkdir()
    (tmp_path / "raas" / "config.json").write_text(json.dumps({"server": dead, "token": "t"}))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    code, _, err = raas("robots")
    assert_one_line_error(code, err, f"cannot reach the RaaS server at {dead}")
    monkeypatch.setenv("RAAS_SERVER", "http://127.0.0.1:1")
    code, _, err = raas("status", "job-0123456789")
    assert_one_line_error(code, err, "cannot reach the RaaS server at http://127.0.0.1:1")


# --- Client and commands without a server -------------------------------------------------------


def test_a_folder_is_packed_without_git_caches_and_virtual_environments(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text("print('hi')\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "helper.py").write_text("")
    for skipped in (".git", "__pycache__", ".venv", "lib/__pycache__"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "junk").write_text("x")
    with tarfile.open(fileobj=io.BytesIO(pack_folder(tmp_path)), mode="r:gz") as archive:
        names = {member.name for member in archive.getmembers() if member.isfile()}
    assert names == {"run.py", "lib/helper.py"}


def test_server_errors_become_one_sentence_with_the_status() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/jobs"):
            problems = [{"loc": ["body", "entrypoint"], "msg": "String should match pattern", "type": "x"}]
            return httpx.Response(422, json={"detail": problems})
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    with mock_client(answer) as client:
        with pytest.raises(RaasApiError) as invalid:
            client.submit_git("https://example.com/c.git", entrypoint="x")
        assert str(invalid.value) == "entrypoint: String should match pattern (HTTP 422)"
        with pytest.raises(RaasApiError) as gateway:
            client.get_job("job-0123456789")
        assert gateway.value.status == 502


def test_downloads_send_the_token_only_to_the_api_server(tmp_path: Path) -> None:
    seen: dict[str, str | None] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("Authorization")
        return httpx.Response(200, content=b"data")

    with mock_client(answer) as client:
        client.download("/api/v1/jobs/job-0123456789/results/stdout.txt", tmp_path / "a")
        client.download("https://bucket.s3.example/stdout.txt?X-Amz-Signature=1", tmp_path / "b")
    assert seen == {"raas.test": "Bearer secret", "bucket.s3.example": None}
    assert (tmp_path / "b").read_bytes() == b"data"


def test_job_ids_cannot_escape_their_path_segment() -> None:
    paths: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"detail": "no job"})

    with mock_client(answer) as client, pytest.raises(RaasApiError):
        client.get_job("../robots")
    assert paths == ["/api/v1/jobs/..%2Frobots"]


def waiting_client(phases: list[dict[str, Any]]) -> RaasClient:
    answers = iter(phases)
    return mock_client(lambda request: httpx.Response(200, json=next(answers)))


PROGRESS = [
    job_view("Queued", queue_position=2),
    job_view("Queued", queue_position=1),
    job_view("Running", robot="sim-1", steps=5),
    job_view("Running", robot="sim-1", steps=5),
    job_view("Running", robot="sim-1", steps=9),
    job_view("Succeeded", robot="sim-1", summary={"steps": 9}),
]


def test_waiting_off_a_terminal_prints_one_line_per_change() -> None:
    display = io.StringIO()
    with waiting_client(PROGRESS) as client:
        final = commands.wait_for(client, "job-0123456789", display, poll_interval_s=0)
    assert final["phase"] == "Succeeded"
    assert display.getvalue().splitlines() == [
        "job-0123456789: Queued, position 2 in the queue",
        "job-0123456789: Queued, position 1 in the queue",
        "job-0123456789: Running on sim-1, 5 steps",
        "job-0123456789: Running on sim-1, 9 steps",
    ]


def test_waiting_on_a_terminal_rewrites_one_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    display = Terminal()
    with waiting_client(PROGRESS) as client:
        commands.wait_for(client, "job-0123456789", display, poll_interval_s=0)
    text = display.getvalue()
    assert text.count("\n") == 1
    assert text.endswith("\n")
    assert text.count("\r") == 4
    assert text.rstrip("\n").endswith("Running on sim-1, 9 steps\x1b[K")


def test_a_plugin_keeps_a_subcommand_name_it_took() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    group = parser.add_subparsers(dest="command")
    group.add_parser("status").set_defaults(handler="plugin")
    commands.add_parsers(group)
    assert parser.parse_args(["status"]).handler == "plugin"
    assert parser.parse_args(["robots"]).handler is commands.handle_robots


def test_submitting_something_that_is_neither_folder_nor_url_is_one_line(raas: Run, tmp_path: Path) -> None:
    code, _, err = raas("submit", str(tmp_path / "missing"), "--server", closed_port_url())
    assert_one_line_error(code, err, "is neither a folder nor a git URL")


# --- End to end against `raas serve` -----------------------------------------------------------


class Server:
    """A ``raas serve`` subprocess: its URL and admin token."""

    def __init__(self, data_dir: Path) -> None:
        command = [sys.executable, "-m", "gym_raas.cli.main", "serve", "--port", "0", "--robots", "2"]
        # git sources from the test's own git daemon on 127.0.0.1
        environment = {**os.environ, "RAAS_ALLOWED_GIT_SCHEMES": '["https", "git"]', "RAAS_ALLOWED_GIT_HOSTS": '["*"]'}
        self.process = subprocess.Popen(
            [*command, "--data-dir", str(data_dir)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.url = ""
        self.token = ""
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        if not wait_until(lambda: bool(self.url and self.token) or self.process.poll() is not None, timeout_s=60):
            self.stop()
            pytest.fail("raas serve printed no URL and token within 60 s")
        if not self.token:
            pytest.fail("raas serve exited:\n" + "\n".join(self.lines))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if match := re.match(r"RaaS API listening on (http://\S+)", line):
                self.url = match.group(1)
            elif match := re.match(r"admin token: (\S+)", line):
                self.token = match.group(1)

    def flags(self) -> list[str]:
        return ["--server", self.url, "--token", self.token]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("raas-serve"))
    yield running
    running.stop()


def controller_folder(root: Path, source: str) -> Path:
    folder = root / "controller"
    folder.mkdir()
    (folder / "run.py").write_text(source)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "run.cpython-311.pyc").write_bytes(b"junk")
    return folder


def run_cli(server: Server, *arguments: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gym_raas.cli.main", *arguments, *server.flags()],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def submitted_id(output: str) -> str:
    match = re.search(r"submitted (job-[0-9a-f]+)", output)
    assert match, output
    return match.group(1)


@pytest.fixture(scope="module")
def finished_job(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """The short controller, submitted as a folder with ``--wait``: (job id, the CLI's run)."""
    folder = controller_folder(tmp_path_factory.mktemp("short"), SHORT_CONTROLLER)
    completed = run_cli(server, "submit", str(folder), "--wait", "--time-limit", "120")
    return submitted_id(completed.stdout), completed


@pytest.mark.slow
def test_submit_wait_follows_the_job_and_prints_its_summary(finished_job: tuple[str, Any]) -> None:
    job, completed = finished_job
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Succeeded" in completed.stdout
    assert re.search(r"robot:\s+sim-\d", completed.stdout)
    assert re.search(r"steps:\s+20\b", completed.stdout)
    assert re.search(r"total reward:\s+-?\d+\.\d", completed.stdout)
    assert "swing-up time:" in completed.stdout
    assert re.search(r"sim-to-real:\s+\d+\.\d+ rad RMSE", completed.stdout)
    assert f"/api/v1/jobs/{job}/results" in completed.stdout
    assert f"{job}: Running" in completed.stderr  # the progress, one line per change off a terminal


@pytest.mark.slow
def test_status_and_list_show_the_finished_job(raas: Run, server: Server, finished_job: tuple[str, Any]) -> None:
    job, _ = finished_job
    code, out, _ = raas("status", job, *server.flags())
    assert code == 0
    assert re.search(r"phase:\s+Succeeded", out)
    assert re.search(r"steps run:\s+20\b", out)
    code, out, _ = raas("list", *server.flags())
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["JOB", "OWNER", "PHASE", "ROBOT", "STEPS", "CREATED", "SOURCE"]
    assert any(row.startswith(job) and "Succeeded" in row for row in rows)
    code, out, _ = raas("list", "--phase", "Succeeded", "--limit", "1", "--all", *server.flags())
    assert code == 0
    assert job in out
    code, out, _ = raas("list", "--phase", "Running", *server.flags())
    assert code == 0
    assert job not in out


@pytest.mark.slow
def test_logs_show_what_the_controller_printed(raas: Run, server: Server, finished_job: tuple[str, Any]) -> None:
    job, _ = finished_job
    code, out, _ = raas("logs", job, *server.flags())
    assert code == 0
    assert "done" in out
    code, out, _ = raas("logs", job, "--follow", *server.flags())
    assert code == 0
    assert "done" in out
    code, out, _ = raas("logs", job, "--stderr", *server.flags())
    assert code == 0
    assert "done" not in out


@pytest.mark.slow
def test_results_download_saves_every_file(
    raas: Run, server: Server, finished_job: tuple[str, Any], tmp_path: Path
) -> None:
    job, _ = finished_job
    code, out, _ = raas("results", job, *server.flags())
    assert code == 0
    assert "metadata.json" in out
    with RaasClient(server.url, server.token) as client:
        manifest = client.results(job)
    code, out, _ = raas("results", job, "--download", str(tmp_path / "results"), *server.flags())
    assert code == 0
    names = {item["name"] for item in manifest["files"]}
    assert {"metadata.json", "stdout.txt"} <= names
    assert {path.name for path in (tmp_path / "results").iterdir()} == names
    for item in manifest["files"]:
        if item["size"] is not None:
            assert (tmp_path / "results" / item["name"]).stat().st_size == item["size"]
    metadata = json.loads((tmp_path / "results" / "metadata.json").read_text())
    assert isinstance(metadata, dict)
    assert "done" in (tmp_path / "results" / "stdout.txt").read_text()


@pytest.mark.slow
def test_a_git_url_is_submitted_as_a_git_source(raas: Run, server: Server, tmp_path: Path) -> None:
    with running_git_server(tmp_path / "git") as git:
        commit = git.publish("controller", {"run.py": SHORT_CONTROLLER})
        code, out, err = raas("submit", git.url("controller"), "--ref", "main", "--wait", *server.flags())
    assert code == 0, out + err
    job = submitted_id(out)
    assert re.search(r"phase:\s+Succeeded", out)
    with RaasClient(server.url, server.token) as client:
        view = client.get_job(job)
    assert view["source"] == {"kind": "git", "url": git.url("controller"), "ref": "main"}
    assert view["commit"] == commit


@pytest.mark.slow
def test_cancel_stops_a_long_job(raas: Run, server: Server, tmp_path: Path) -> None:
    folder = controller_folder(tmp_path, LONG_CONTROLLER)
    code, out, err = raas("submit", str(folder), "--time-limit", "300", *server.flags())
    assert code == 0, err
    job = submitted_id(out)
    with RaasClient(server.url, server.token) as client:

        def stepping_or_over() -> bool:
            view = client.get_job(job)
            return bool(view["steps"]) or view["phase"] in TERMINAL_PHASES

        assert wait_until(stepping_or_over, timeout_s=60, interval_s=0.2)
        assert client.get_job(job)["phase"] == "Running"
        code, out, err = raas("cancel", job, *server.flags())
        assert code == 0, err
        assert out.startswith(f"{job}: ")
        assert wait_until(lambda: client.get_job(job)["phase"] == "Cancelled", timeout_s=30)


@pytest.mark.slow
def test_robots_lists_every_robot(raas: Run, server: Server) -> None:
    code, out, _ = raas("robots", *server.flags())
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["NAME", "STATE", "READY", "JOB", "TEMPERATURE"]
    assert len(rows) == 2


@pytest.mark.slow
def test_calibration_saves_a_file_the_simulator_loads(raas: Run, server: Server, tmp_path: Path) -> None:
    with RaasClient(server.url, server.token) as client:
        name = client.robots()[0]["name"]
    target = tmp_path / f"{name}.json"
    code, _, err = raas("calibration", name, "-o", str(target), *server.flags())
    assert code == 0, err
    document = json.loads(target.read_text())
    assert PendulumParams.from_dict(document["params"]) == load_calibration(target)
    env = gym.make("RaasPendulum-v0", calibration=str(target))
    env.reset(seed=0)
    env.close()


@pytest.mark.slow
def test_errors_from_the_server_are_one_line(raas: Run, server: Server) -> None:
    code, _, err = raas("status", "job-0000000000", *server.flags())
    assert_one_line_error(code, err, "job-0000000000", "(HTTP 404)")
    code, _, err = raas("robots", "--server", server.url, "--token", "not-a-token")
    assert_one_line_error(code, err, "(HTTP 401)")
    code, _, err = raas("calibration", "no-such-robot", *server.flags())
    assert_one_line_error(code, err, "(HTTP 404)")


def test_a_dead_server_is_one_line(raas: Run) -> None:
    dead = closed_port_url()
    code, _, err = raas("list", "--server", dead, "--token", "t")
    assert_one_line_error(code, err, f"cannot reach the RaaS server at {dead}")
