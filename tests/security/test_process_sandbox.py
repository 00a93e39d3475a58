"""Attacks on the process isolation level by the code of a job (security issue 12, items 2, 7, 9, 10, 11).

Each test is an attack that worked before the launcher ran jobs in a bubblewrap sandbox:

* item 2: with a scratch folder others could not reach (``chmod 700 D; cd D; raas serve``) the
  launcher fell back to root and the job read /etc/shadow; an interpreter the sandbox uid could
  not run made it fall back to root too;
* item 7: every sequential job ran as uid 61000 and shared the host's /tmp, so a job read what
  an earlier one left there;
* item 9: no disk limit, and the scratch folder stayed on disk after the run;
* item 10: a job outlived ``kill -9`` of its server;
* item 11: a job reached a TCP server on the host's 127.0.0.1 and any robot agent's socket, and
  could read the platform's data folder wherever its permissions allowed.

Network attacks only ever target 127.0.0.1 (a server the test runs itself).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from polling import wait_until

from raas_node.runner.launch import (
    RunLimits,
    RunOutcome,
    RunRequest,
    RunVerdict,
    SandboxUnavailableError,
    check_process_isolation,
    run_entrypoint,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the process sandbox with a uid per job needs root")

LIMITS = RunLimits(time_limit_s=60, memory_bytes=1024**3, max_processes=32, max_output_bytes=1024**2)
PYTHON = sys.executable
"""The repository's interpreter: under /work, which other users can read."""


def run_job(folder: Path, source: str, *, entrypoint: str = "run.py", **request: object) -> RunOutcome:
    """Run `source` as a job whose code, scratch and output live in `folder`."""
    code = folder / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / entrypoint).write_text(textwrap.dedent(source))
    request.setdefault("limits", LIMITS)
    request.setdefault("python_executable", PYTHON)
    return run_entrypoint(
        RunRequest(
            code_dir=code,
            entrypoint=entrypoint,
            scratch_dir=folder / "scratch",
            stdout_path=folder / "stdout.txt",
            stderr_path=folder / "stderr.txt",
            **request,  # type: ignore[arg-type]
        )
    )


def stdout(folder: Path) -> str:
    return (folder / "stdout.txt").read_text()


@pytest.fixture
def private_folder(tmp_path: Path) -> Path:
    """A folder other users cannot traverse (``chmod 700 D; cd D; raas serve``)."""
    folder = tmp_path / "D"
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)
    return folder


@pytest.fixture
def unreachable_python() -> Iterator[str]:
    """An interpreter only root can reach: a link to a real one in a 0700 folder outside /tmp."""
    folder = Path(tempfile.mkdtemp(prefix="raas-private-venv-", dir="/root"))
    (folder / "python").symlink_to(PYTHON)
    yield str(folder / "python")
    shutil.rmtree(folder)


# item 2 ----------------------------------------------------------------------------------------


def test_a_job_whose_scratch_parent_others_cannot_reach_still_runs_unprivileged_and_cannot_read_shadow(
    private_folder: Path,
) -> None:
    source = """
        import os
        print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())
        try:
            print(len(open("/etc/shadow").read()), "bytes of shadow")
        except PermissionError:
            print("shadow denied")
    """
    outcome = run_job(private_folder, source)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    ids, verdict = stdout(private_folder).splitlines()
    uid, euid, gid, groups = ids.split(maxsplit=3)
    assert 0 not in (int(uid), int(euid), int(gid))
    assert groups == "[]"
    assert verdict == "shadow denied"


def test_an_interpreter_the_sandbox_uid_cannot_run_fails_the_launch_with_advice_instead_of_running_as_root(
    tmp_path: Path, unreachable_python: str
) -> None:
    outcome = run_job(tmp_path, "import os\nprint(os.getuid())\n", python_executable=unreachable_python)
    assert outcome.verdict is RunVerdict.LAUNCH_FAILED
    assert f"cannot run {unreachable_python}" in outcome.message
    assert "--isolation container" in outcome.message
    assert not (tmp_path / "stdout.txt").exists() or stdout(tmp_path) == ""
    with pytest.raises(SandboxUnavailableError, match=r"cannot run .*--isolation container"):
        check_process_isolation(unreachable_python, ("json",))


def test_an_interpreter_behind_a_closed_folder_runs_unprivileged_and_the_rest_of_that_folder_stays_unseen(
    tmp_path: Path,
) -> None:
    """A checkout (and its virtual environment) in ``/root``: the job reaches the interpreter's
    folders, bound into an empty cover over ``/root``, and nothing else there."""
    closed = Path(tempfile.mkdtemp(prefix="raas-closed-", dir="/root"))
    try:
        (closed / "secret.txt").write_text("root's own")
        venv = closed / "venv"
        venv.mkdir(mode=0o755)
        venv.chmod(0o755)
        (venv / "python").symlink_to(PYTHON)
        source = f"""
            import os
            print(os.getuid())
            print(os.path.exists({str(closed / "secret.txt")!r}), sorted(os.listdir({str(closed)!r})))
        """
        outcome = run_job(tmp_path, source, python_executable=str(venv / "python"))
        assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
        uid, seen = stdout(tmp_path).splitlines()
        assert int(uid) != 0
        assert seen == "False ['venv']"
        check_process_isolation(str(venv / "python"), ("json",))
    finally:
        shutil.rmtree(closed)


def test_an_interpreter_under_the_hosts_tmp_is_reached_inside_the_sandboxs_own_tmp(tmp_path: Path) -> None:
    """A checkout under ``/tmp`` (CI clones there): the sandbox's private ``/tmp`` would hide it."""
    folder = Path(tempfile.mkdtemp(prefix="raas-tmp-venv-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        (folder / "python").symlink_to(PYTHON)
        outcome = run_job(tmp_path, "import os\nprint(os.getuid())\n", python_executable=str(folder / "python"))
        assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
        assert int(stdout(tmp_path)) != 0
        check_process_isolation(str(folder / "python"), ("json",))
    finally:
        shutil.rmtree(folder)


def test_the_start_up_check_passes_for_an_interpreter_others_can_run() -> None:
    check_process_isolation(PYTHON, ("json", "gym_raas"))


# item 7 ----------------------------------------------------------------------------------------


def test_sequential_jobs_run_as_different_uids(tmp_path: Path) -> None:
    uids = []
    for name in ("first", "second"):
        outcome = run_job(tmp_path / name, "import os\nprint(os.getuid())\n")
        assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
        uids.append(int(stdout(tmp_path / name)))
    assert 0 not in uids
    assert uids[0] != uids[1]


def test_a_private_file_a_job_leaves_in_tmp_is_invisible_to_the_next_job(tmp_path: Path) -> None:
    name = f"/tmp/raas-left-behind-{uuid.uuid4().hex}"
    writer = f"""
        import os
        descriptor = os.open({name!r}, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(descriptor, b"secret of job A")
        os.close(descriptor)
        print(os.listdir("/tmp"))
    """
    reader = f"""
        try:
            print(open({name!r}).read())
        except FileNotFoundError:
            print("not there")
        except PermissionError:
            print("denied")
    """
    try:
        assert run_job(tmp_path / "a", writer).verdict is RunVerdict.COMPLETED
        assert run_job(tmp_path / "b", reader).verdict is RunVerdict.COMPLETED
        assert stdout(tmp_path / "b") == "not there\n"
        assert not Path(name).exists()  # it never reached the host's /tmp
    finally:
        Path(name).unlink(missing_ok=True)


# item 9 ----------------------------------------------------------------------------------------


def test_writing_beyond_the_scratch_limit_fails_with_enospc_and_nothing_reaches_the_host_disk(tmp_path: Path) -> None:
    limits = RunLimits(
        time_limit_s=60, memory_bytes=1024**3, max_processes=32, max_file_bytes=1024**3, scratch_bytes=16 * 1024**2
    )
    source = """
        import errno
        written = 0
        try:
            with open("big.bin", "wb") as sink:
                for _ in range(64):
                    sink.write(b"x" * 1024**2)
                    sink.flush()
                    written += 1024**2
        except OSError as error:
            print(errno.errorcode[error.errno], written)
        else:
            print("wrote all", written)
    """
    outcome = run_job(tmp_path, source, limits=limits)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    code, written = stdout(tmp_path).split()
    assert code == "ENOSPC"
    assert int(written) <= 16 * 1024**2
    big_files = [path for path in tmp_path.rglob("*") if path.is_file() and path.stat().st_size > 1024**2]
    assert big_files == []


def test_nothing_of_the_scratch_is_left_on_disk_when_the_run_ends(tmp_path: Path) -> None:
    marker = f"raas-scratch-{uuid.uuid4().hex}"
    source = f"""
        import os, tempfile
        for folder in (os.getcwd(), os.environ["HOME"], tempfile.gettempdir()):
            with open(os.path.join(folder, {marker!r}), "w") as sink:
                sink.write("left behind?")
        print(os.getcwd())
    """
    outcome = run_job(tmp_path, source)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    scratch = tmp_path / "scratch"
    assert not scratch.exists() or not any(scratch.iterdir())
    assert list(tmp_path.rglob(marker)) == []
    assert not (Path(tempfile.gettempdir()) / marker).exists()


# item 11 ---------------------------------------------------------------------------------------


def test_a_job_cannot_connect_to_a_tcp_server_on_the_hosts_loopback(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        source = f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
                print("connected")
            except OSError as error:
                print("failed", type(error).__name__)
        """
        outcome = run_job(tmp_path, source)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody came
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    assert stdout(tmp_path).startswith("failed")


def test_a_job_sees_only_a_loopback_interface(tmp_path: Path) -> None:
    host_interfaces = [name for _, name in socket.if_nameindex()]
    if host_interfaces == ["lo"]:
        pytest.skip("this host has no interface but loopback: nothing to hide")
    outcome = run_job(tmp_path, "import socket\nprint([name for _, name in socket.if_nameindex()])\n")
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    assert stdout(tmp_path) == "['lo']\n"


def test_a_job_reaches_its_own_robot_socket_but_not_the_one_beside_it(tmp_path: Path) -> None:
    sockets = tmp_path / "sockets"
    sockets.mkdir(mode=0o700)
    listeners = []
    for name in ("own.sock", "other.sock"):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(sockets / name))
        (sockets / name).chmod(0o666)  # as the agent makes it: the private folder is what guards it
        listener.listen(8)
        listener.setblocking(False)
        listeners.append(listener)
    source = f"""
        import os, socket
        for path in (os.environ["RAAS_AGENT_SOCKET"], {str(sockets / "other.sock")!r}):
            try:
                socket.socket(socket.AF_UNIX).connect(path)
                print("connected")
            except OSError as error:
                print("failed", type(error).__name__)
        print(sorted(os.listdir(os.path.dirname(os.environ["RAAS_AGENT_SOCKET"]))))
    """
    try:
        outcome = run_job(tmp_path / "job", source, environment={"RAAS_AGENT_SOCKET": str(sockets / "own.sock")})
        assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
        own, other, listing = stdout(tmp_path / "job").splitlines()
        assert own == "connected"
        assert other.startswith("failed")
        assert "other.sock" not in listing
        listeners[0].accept()[0].close()  # the job's connection arrived
        with pytest.raises(BlockingIOError):
            listeners[1].accept()
    finally:
        for listener in listeners:
            listener.close()


def test_a_job_cannot_see_a_hidden_folder_even_where_others_could_read_it(tmp_path: Path) -> None:
    data = Path(tempfile.mkdtemp(prefix="raas-data-", dir="/srv"))  # outside the job's private /tmp
    try:
        data.chmod(0o755)
        (data / "jobs.db").write_text("every job's secrets")
        (data / "jobs.db").chmod(0o644)
        source = f"""
            import os
            print(os.listdir({str(data)!r}))
            try:
                print(open({str(data / "jobs.db")!r}).read())
            except OSError as error:
                print("failed", type(error).__name__)
        """
        outcome = run_job(tmp_path, source, hidden_paths=[data])
        assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
        assert stdout(tmp_path) == "[]\nfailed FileNotFoundError\n"
    finally:
        shutil.rmtree(data)


# item 10 ---------------------------------------------------------------------------------------

LAUNCHER = """
import sys
from pathlib import Path
from raas_node.runner.launch import RunLimits, RunRequest, run_entrypoint
folder, entrypoint = Path(sys.argv[1]), sys.argv[2]
run_entrypoint(RunRequest(folder / "code", entrypoint, folder / "scratch", folder / "stdout.txt",
                          folder / "stderr.txt", RunLimits(time_limit_s=600), python_executable=sys.executable))
"""


def processes_running(marker: str) -> list[int]:
    """Live processes whose command line contains `marker`."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                command = Path(f"/proc/{entry.name}/cmdline").read_bytes()
                state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker.encode() in command and state != "Z":
                found.append(int(entry.name))
    return found


def test_killing_the_launcher_with_sigkill_kills_the_whole_job(tmp_path: Path) -> None:
    entrypoint = f"job_{uuid.uuid4().hex}.py"
    source = """
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.fork() == 0:
            os.setsid()  # a child that left the job's session
            time.sleep(600)
            os._exit(0)
        print("ready", flush=True)
        time.sleep(600)
    """
    code = tmp_path / "code"
    code.mkdir()
    (code / entrypoint).write_text(textwrap.dedent(source))
    launcher = subprocess.Popen([PYTHON, "-c", LAUNCHER, str(tmp_path), entrypoint], cwd="/")
    try:
        assert wait_until(lambda: "ready" in _read(tmp_path / "stdout.txt"), timeout_s=120, interval_s=0.1)
        assert len(processes_running(entrypoint)) >= 2
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        assert wait_until(lambda: not processes_running(entrypoint), timeout_s=60, interval_s=0.1)
    finally:
        launcher.kill()
        launcher.wait()
        for pid in processes_running(entrypoint):  # what the old launcher left behind
            os.kill(pid, signal.SIGKILL)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_reaping_kills_stray_processes_of_unleased_sandbox_uids_and_spares_leased_ones() -> None:
    from raas_node.runner.sandbox_uids import lease_sandbox_uid, reap_sandbox_leftovers

    with lease_sandbox_uid() as stray_uid:
        pass  # now the most recently leased: no run takes it while the test runs
    strays = []
    try:
        with lease_sandbox_uid() as live_uid:
            for uid in (stray_uid, live_uid):
                identity = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
                strays.append(subprocess.Popen(["setpriv", *identity, "sleep", "600"]))
            assert wait_until(lambda: all(_uid_of(stray.pid) in (stray_uid, live_uid) for stray in strays), 10)
            assert reap_sandbox_leftovers() >= 1
            assert strays[0].wait(timeout=30) == -signal.SIGKILL
            assert strays[1].poll() is None  # a live run leases that uid: its processes are its own
    finally:
        for stray in strays:
            stray.kill()
            stray.wait()


def _uid_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
