"""The process launcher: every way a user's program can end gets a clear, classified outcome,
and the platform is unharmed (no leftover processes, limits enforced, no credentials leaked)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from raas_node.runner.launch import (
    RunLimits,
    RunOutcome,
    RunRequest,
    RunVerdict,
    SandboxUnavailableError,
    check_process_isolation,
    run_entrypoint,
)

FAST = RunLimits(time_limit_s=20, memory_bytes=1024**3, max_processes=32, max_output_bytes=64 * 1024)


@functools.lru_cache(maxsize=1)
def sandbox_python() -> str | None:
    """An interpreter a sandbox uid can run (these tests need only the standard library)."""
    if os.geteuid() != 0:
        return None
    for python in (sys.executable, "/usr/bin/python3"):
        with contextlib.suppress(SandboxUnavailableError):
            check_process_isolation(python)
            return python
    return None


def sandboxed() -> bool:
    """True when runs as root get their own uid."""
    return sandbox_python() is not None


def run(
    tmp_path: Path,
    source: str,
    limits: RunLimits = FAST,
    cancel_event: threading.Event | None = None,
    **request: object,
) -> RunOutcome:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "run.py").write_text(textwrap.dedent(source))
    request.setdefault("python_executable", sandbox_python() or sys.executable)
    outcome = run_entrypoint(
        RunRequest(
            code_dir=code,
            entrypoint="run.py",
            scratch_dir=tmp_path / "scratch",
            stdout_path=tmp_path / "stdout.txt",
            stderr_path=tmp_path / "stderr.txt",
            limits=limits,
            **request,  # type: ignore[arg-type]
        ),
        cancel_event,
    )
    return outcome


def test_a_clean_exit_completes_and_stdout_and_stderr_are_captured_separately(tmp_path: Path) -> None:
    outcome = run(tmp_path, "import sys\nprint('hello')\nprint('warning', file=sys.stderr)\n")
    assert outcome.verdict is RunVerdict.COMPLETED
    assert outcome.exit_code == 0
    assert (tmp_path / "stdout.txt").read_text() == "hello\n"
    assert (tmp_path / "stderr.txt").read_text() == "warning\n"


def test_an_exception_is_a_nonzero_exit_whose_message_names_the_error(tmp_path: Path) -> None:
    outcome = run(tmp_path, "raise ValueError('controller diverged')\n")
    assert outcome.verdict is RunVerdict.NONZERO_EXIT
    assert outcome.exit_code == 1
    assert "ValueError: controller diverged" in outcome.message


def test_an_explicit_exit_status_is_reported(tmp_path: Path) -> None:
    outcome = run(tmp_path, "import sys\nsys.exit(3)\n")
    assert outcome.verdict is RunVerdict.NONZERO_EXIT
    assert outcome.exit_code == 3


def test_an_infinite_loop_is_stopped_at_the_time_limit(tmp_path: Path) -> None:
    limits = RunLimits(time_limit_s=1.5, memory_bytes=1024**3, max_processes=32)
    started = time.monotonic()
    outcome = run(tmp_path, "while True:\n    pass\n", limits)
    assert outcome.verdict is RunVerdict.TIME_LIMIT
    assert "time limit of 2 s" in outcome.message or "time limit" in outcome.message
    assert time.monotonic() - started < 10


def test_a_program_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    limits = RunLimits(time_limit_s=1.0, memory_bytes=1024**3, max_processes=32)
    outcome = run(
        tmp_path, "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n", limits
    )
    assert outcome.verdict is RunVerdict.TIME_LIMIT
    assert outcome.duration_s < 10


def test_a_memory_hog_hits_the_memory_limit(tmp_path: Path) -> None:
    limits = RunLimits(time_limit_s=20, memory_bytes=512 * 1024**2, max_processes=32)
    outcome = run(tmp_path, "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))\n", limits)
    assert outcome.verdict is RunVerdict.MEMORY_LIMIT
    assert "512 MiB" in outcome.message


@pytest.mark.skipif(
    os.geteuid() == 0 and not sandboxed(),
    reason="as root without an interpreter a sandbox uid can run, RLIMIT_NPROC does not apply",
)
def test_a_fork_bomb_hits_the_process_limit_and_leaves_nothing_behind(tmp_path: Path) -> None:
    limits = RunLimits(time_limit_s=5, memory_bytes=512 * 1024**2, max_processes=16)
    source = """
        import os, time
        children = 0
        while True:
            try:
                if os.fork() == 0:
                    time.sleep(120)
                    os._exit(0)
                children += 1
            except BlockingIOError:
                raise
    """
    outcome = run(tmp_path, source, limits)
    assert outcome.verdict in (RunVerdict.PROCESS_LIMIT, RunVerdict.TIME_LIMIT)
    time.sleep(0.2)
    # Only this run's processes (by working folder): other test runs on the machine also run run.py.
    sleepers = [pid for pid in os.listdir("/proc") if pid.isdigit() and _cwd(pid).startswith(str(tmp_path))]
    assert sleepers == []


def _cwd(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def test_huge_output_is_cut_at_the_limit_and_the_run_stopped(tmp_path: Path) -> None:
    outcome = run(tmp_path, "while True:\n    print('x' * 1000)\n")
    assert outcome.verdict is RunVerdict.OUTPUT_LIMIT
    assert (tmp_path / "stdout.txt").stat().st_size == FAST.max_output_bytes


def test_the_environment_is_scrubbed_of_the_platforms_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("RAAS_API_TOKEN", "do-not-leak")
    with socket.socket(socket.AF_UNIX) as agent:
        agent.bind(str(tmp_path / "agent.sock"))
        (tmp_path / "agent.sock").chmod(0o666)
        source = "import os, json\nprint(json.dumps(dict(os.environ)))\n"
        environment = {"RAAS_AGENT_SOCKET": str(tmp_path / "agent.sock"), "RAAS_SESSION_TOKEN": "for-the-job"}
        outcome = run(tmp_path, source, environment=environment)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    seen = (tmp_path / "stdout.txt").read_text()
    assert "do-not-leak" not in seen
    assert "for-the-job" in seen
    assert "RAAS_AGENT_SOCKET" in seen


def test_the_run_works_in_a_scratch_copy_of_the_code_that_is_gone_afterwards(tmp_path: Path) -> None:
    outcome = run(tmp_path, "open('output.csv', 'w').write('1,2\\n')\nimport os\nprint(os.listdir())\n")
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    assert "output.csv" in (tmp_path / "stdout.txt").read_text()
    assert not (tmp_path / "code" / "output.csv").exists()
    assert list(tmp_path.rglob("output.csv")) == []


def test_cancelling_stops_the_run_at_once(tmp_path: Path) -> None:
    cancel = threading.Event()
    code = tmp_path / "code"
    code.mkdir()
    (code / "run.py").write_text("import time\ntime.sleep(60)\n")
    request = RunRequest(code, "run.py", tmp_path / "scratch", tmp_path / "o.txt", tmp_path / "e.txt", FAST)
    threading.Timer(0.5, cancel.set).start()
    outcome = run_entrypoint(request, cancel)
    assert outcome.verdict is RunVerdict.CANCELLED
    assert outcome.duration_s < 5


@pytest.mark.skipif(not sandboxed(), reason="a sandbox uid needs root and an interpreter other users can run")
def test_as_root_the_run_has_its_own_unprivileged_uid(tmp_path: Path) -> None:
    outcome = run(tmp_path, "import os\nprint(os.getuid(), os.getgid(), os.getgroups())\n")
    assert outcome.verdict is RunVerdict.COMPLETED
    uid, gid, groups = (tmp_path / "stdout.txt").read_text().split(maxsplit=2)
    assert int(uid) != 0
    assert int(gid) != 0
    assert groups.strip() == "[]"


@pytest.mark.skipif(not sandboxed(), reason="a sandbox uid needs root and an interpreter other users can run")
def test_concurrent_runs_get_their_own_uids_and_one_ending_never_kills_another(tmp_path: Path) -> None:
    slow_folder, quick_folder = tmp_path / "slow", tmp_path / "quick"
    for folder in (slow_folder, quick_folder):
        folder.mkdir()
    outcomes: dict[str, RunOutcome] = {}
    slow = threading.Thread(
        target=lambda: outcomes.update(
            slow=run(slow_folder, "import os, time\nprint(os.getuid(), flush=True)\ntime.sleep(3)\nprint('survived')\n")
        )
    )
    slow.start()
    time.sleep(1.0)  # the slow run is under way when the quick one starts and ends (sweeping its uid)
    outcomes["quick"] = run(quick_folder, "import os\nprint(os.getuid())\n")
    slow.join(timeout=30)
    assert outcomes["quick"].verdict is RunVerdict.COMPLETED
    assert outcomes["slow"].verdict is RunVerdict.COMPLETED, outcomes["slow"].message
    slow_uid, survived = (slow_folder / "stdout.txt").read_text().split()
    assert survived == "survived"
    assert int(slow_uid) != int((quick_folder / "stdout.txt").read_text())


def test_uid_leases_are_exclusive_until_released() -> None:
    from raas_node.runner.sandbox_uids import lease_sandbox_uid

    with lease_sandbox_uid(first=62000, count=2) as first, lease_sandbox_uid(first=62000, count=2) as second:
        assert first != second
        with pytest.raises(RuntimeError, match="in use"), lease_sandbox_uid(first=62000, count=2):
            pass
    with lease_sandbox_uid(first=62000, count=2) as again:
        assert again == first  # both are free again: the one leased longer ago comes first


def test_consecutive_leases_rotate_through_the_free_uids() -> None:
    from raas_node.runner.sandbox_uids import lease_sandbox_uid

    leased = []
    for _ in range(3):
        with lease_sandbox_uid(first=62010, count=3) as uid:
            leased.append(uid)
    assert sorted(leased) == [62010, 62011, 62012]


def test_a_run_that_fails_because_it_was_cancelled_is_reported_cancelled(tmp_path: Path) -> None:
    """The agent ends a cancelled job's session first: the program then fails on its own."""
    cancel = threading.Event()
    source = "import sys, time\ntime.sleep(0.5)\nsys.exit('RobotSessionError: the job was cancelled')\n"
    threading.Timer(0.2, cancel.set).start()
    outcome = run(tmp_path, source, cancel_event=cancel)
    assert outcome.verdict is RunVerdict.CANCELLED


def test_output_is_readable_while_the_program_runs(tmp_path: Path) -> None:
    seen: list[str] = []

    def peek() -> None:
        time.sleep(1.5)
        seen.append((tmp_path / "stdout.txt").read_text())

    watcher = threading.Thread(target=peek)
    watcher.start()
    run(tmp_path, "import time\nprint('early', flush=True)\ntime.sleep(3)\n")
    watcher.join()
    assert seen == ["early\n"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the launcher as another user")
def test_an_ordinary_users_launcher_keeps_its_uid_but_the_run_has_no_network_and_a_private_tmp() -> None:
    folder = Path(tempfile.mkdtemp(prefix="raas-user-launch-"))
    try:
        (folder / "code").mkdir()
        (folder / "code" / "run.py").write_text(
            "import os, socket\nprint(os.getuid(), [name for _, name in socket.if_nameindex()], os.listdir('/tmp'))\n"
        )
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, 65534, 65534)
        launcher = (
            "import sys\nfrom pathlib import Path\nfrom raas_node.runner.launch import RunRequest, run_entrypoint\n"
            "f = Path(sys.argv[1])\n"
            "o = run_entrypoint(RunRequest(f / 'code', 'run.py', f / 'scratch', f / 'out.txt', f / 'err.txt'))\n"
            "print(o.verdict.value, o.message)\n"
        )
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        result = subprocess.run(
            [*as_nobody, sys.executable, "-c", launcher, str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd="/",
        )
        assert result.stdout.startswith("Completed"), result.stdout + result.stderr
        uid, interfaces, tmp = (folder / "out.txt").read_text().strip().split(" ", 2)
        assert (uid, interfaces) == ("65534", "['lo']")
        assert "'work'" in tmp  # its own scratch ...
        assert folder.name not in tmp  # ... and nothing of the host's /tmp (bar the interpreter's folders, if there)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
