"""Running a user's entrypoint as a subprocess with limits, and saying what happened.

The run gets a scratch folder (its HOME, TMPDIR and working directory, holding a copy of the
code), a scrubbed environment (no credentials: only what `RunRequest.environment` adds, such as
the robot agent's socket and session token), its own session (so the whole process tree can be
signalled), and limits:

* wall-clock time (SIGTERM, then SIGKILL 2 s later),
* address space (``RLIMIT_AS``) and file size (``RLIMIT_FSIZE``),
* processes (``RLIMIT_NPROC``; when the runner is root the run also gets its own unprivileged
  uid — ``sandbox_uid`` — so that the limit counts only its processes and every leftover
  process of the run can be killed at the end, even one that escaped its session; this needs an
  interpreter and a scratch folder that other users can reach, otherwise the run stays root
  with a warning — root ignores RLIMIT_NPROC),
* bytes written to stdout and stderr (the run is stopped when either passes the limit).

The runner reports facts (`RunVerdict`); mapping them to the platform's failure classes is the
platform's policy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import logging
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from raas_node.runner.sandbox_uids import FIRST_SANDBOX_UID, lease_sandbox_uid

log = logging.getLogger(__name__)

KILL_GRACE_S = 2.0
_STDERR_TAIL_BYTES = 8192


class RunVerdict(str, enum.Enum):
    """What ended a run."""

    COMPLETED = "Completed"
    NONZERO_EXIT = "NonZeroExit"
    KILLED_BY_SIGNAL = "KilledBySignal"
    TIME_LIMIT = "TimeLimit"
    MEMORY_LIMIT = "MemoryLimit"
    PROCESS_LIMIT = "ProcessLimit"
    OUTPUT_LIMIT = "OutputLimit"
    CANCELLED = "Cancelled"
    LAUNCH_FAILED = "LaunchFailed"


@dataclass(frozen=True)
class RunLimits:
    """Bounds on one run."""

    time_limit_s: float = 120.0
    memory_bytes: int = 2 * 1024**3
    """Address-space limit (RLIMIT_AS) of every process of the run."""
    max_processes: int = 64
    max_output_bytes: int = 10 * 1024**2
    """Per stream (stdout, stderr)."""
    max_file_bytes: int = 256 * 1024**2
    """Largest file the run may write."""


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to run one entrypoint."""

    code_dir: Path
    entrypoint: str
    scratch_dir: Path
    stdout_path: Path
    stderr_path: Path
    limits: RunLimits = field(default_factory=RunLimits)
    environment: Mapping[str, str] = field(default_factory=dict)
    python_path: Sequence[Path] = ()
    python_executable: str = sys.executable
    sandbox_uid: int | None = None
    """Unprivileged uid (and gid) to run as when the runner is root; None leases one that no
    concurrent run holds (`raas_node.runner.sandbox_uids`)."""
    required_modules: tuple[str, ...] = ()
    """Modules the run needs (e.g. ``gym_raas``); the sandbox uid is used only if it can import them."""


@dataclass(frozen=True)
class RunOutcome:
    """What happened."""

    verdict: RunVerdict
    exit_code: int | None
    duration_s: float
    message: str
    stdout_bytes: int
    stderr_bytes: int


DEFAULT_SANDBOX_UID = FIRST_SANDBOX_UID


def run_entrypoint(request: RunRequest, cancel: threading.Event | None = None) -> RunOutcome:
    """Run ``python <entrypoint>`` under the request's limits; blocks until it ends.

    As root without a `RunRequest.sandbox_uid`, the run leases a uid no concurrent run holds.
    """
    if request.sandbox_uid is None and os.geteuid() == 0:
        with lease_sandbox_uid() as uid:
            return _run(dataclasses.replace(request, sandbox_uid=uid), cancel)
    return _run(request, cancel)


def _run(request: RunRequest, cancel: threading.Event | None) -> RunOutcome:
    cancel = cancel or threading.Event()
    workdir = prepare_scratch(request)
    uid = _sandbox_uid(request)
    if uid is not None:
        give_to(request.scratch_dir, uid)
    environment = _scrubbed_environment(request, workdir)
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            [request.python_executable, "-s", "-u", request.entrypoint],
            cwd=workdir,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            user=uid,
            group=uid,
            extra_groups=[] if uid is not None else None,
            # RLIMIT_NPROC counts every process of the uid: a shared uid needs its current count.
            preexec_fn=_limits_setter(request.limits, 0 if uid is not None else _process_count(os.getuid())),  # noqa: PLW1509
            close_fds=True,
        )
    except OSError as error:
        return RunOutcome(RunVerdict.LAUNCH_FAILED, None, 0.0, f"cannot start Python: {error}", 0, 0)
    return _supervise(process, request, uid, cancel, start)


def prepare_scratch(request: RunRequest) -> Path:
    """Copy the code into ``scratch/work`` and make ``scratch/tmp``; returns the working folder."""
    request.scratch_dir.mkdir(parents=True, exist_ok=True)
    workdir = request.scratch_dir / "work"
    shutil.copytree(request.code_dir, workdir, dirs_exist_ok=True)
    (request.scratch_dir / "tmp").mkdir(exist_ok=True)
    return workdir


def _sandbox_uid(request: RunRequest) -> int | None:
    """The uid to run as, or None to run as the runner's own user."""
    if os.geteuid() != 0:
        return None
    uid = request.sandbox_uid if request.sandbox_uid is not None else DEFAULT_SANDBOX_UID
    if not _traversable_by_others(request.scratch_dir.parent):
        log.warning("%s is not reachable by other users: running user code as root", request.scratch_dir.parent)
        return None
    if not _can_start_python_as(request.python_executable, uid, request.required_modules):
        log.warning("%s cannot be run by uid %d: running user code as root", request.python_executable, uid)
        return None
    return uid


def _traversable_by_others(folder: Path) -> bool:
    return all(os.stat(path).st_mode & stat.S_IXOTH for path in [folder.resolve(), *folder.resolve().parents])


@functools.lru_cache(maxsize=8)
def _can_start_python_as(python_executable: str, uid: int, modules: tuple[str, ...] = ()) -> bool:
    """Whether the interpreter, its standard library and `modules` are usable by `uid`."""
    imports = ", ".join(("encodings", "json", *modules))
    try:
        probe = subprocess.run(
            [python_executable, "-s", "-c", f"import {imports}"],
            user=uid,
            group=uid,
            extra_groups=[],
            cwd="/",
            env={},
            capture_output=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return False
    return probe.returncode == 0


def _process_count(uid: int) -> int:
    """Processes and threads the kernel counts against RLIMIT_NPROC for `uid`."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count


def give_to(folder: Path, uid: int) -> None:
    """Make `uid` (and its same-numbered group) own `folder` and everything in it."""
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)


def _scrubbed_environment(request: RunRequest, workdir: Path) -> dict[str, str]:
    return sandbox_environment(
        search_path=f"{Path(request.python_executable).parent}:/usr/local/bin:/usr/bin:/bin",
        home=str(request.scratch_dir),
        tmpdir=str(request.scratch_dir / "tmp"),
        python_path=[str(path) for path in request.python_path],
        extra=request.environment,
    )


def sandbox_environment(
    *, search_path: str, home: str, tmpdir: str, python_path: Sequence[str], extra: Mapping[str, str]
) -> dict[str, str]:
    """The whole environment of a run: fixed, credential-free variables, then `extra` (which wins)."""
    environment = {
        "PATH": search_path,
        "HOME": home,
        "TMPDIR": tmpdir,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if python_path:
        environment["PYTHONPATH"] = os.pathsep.join(python_path)
    environment.update(extra)
    return environment


def _limits_setter(limits: RunLimits, processes_already_running: int) -> Callable[[], None]:
    processes = limits.max_processes + processes_already_running

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_bytes, limits.max_file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class StreamCopier(threading.Thread):
    """Copies a pipe to a file, counting bytes; flags when the limit is passed."""

    def __init__(self, pipe: IO[bytes], path: Path, limit: int, over_limit: threading.Event) -> None:
        super().__init__(daemon=True)
        self.pipe, self.path, self.limit, self.over_limit = pipe, path, limit, over_limit
        self.written = 0
        self.tail = b""

    def run(self) -> None:
        with self.path.open("wb") as sink:
            while chunk := self.pipe.read1(65536):  # type: ignore[attr-defined]
                room = self.limit - self.written
                if room > 0:
                    sink.write(chunk[:room])
                    sink.flush()  # readable while the run goes on (live logs)
                    self.written += min(len(chunk), room)
                self.tail = (self.tail + chunk)[-_STDERR_TAIL_BYTES:]
                if len(chunk) > room:
                    self.over_limit.set()
        self.pipe.close()


@dataclass(frozen=True)
class Supervision:
    """How a supervised process ended: what stopped it (None: it ended by itself), when, its output."""

    stopped_for: RunVerdict | None
    duration_s: float
    stdout: StreamCopier
    stderr: StreamCopier


def supervise(
    process: subprocess.Popen[bytes],
    request: RunRequest,
    cancel: threading.Event,
    start: float,
    stop: Callable[[subprocess.Popen[bytes]], None],
    after_exit: Callable[[], None] = lambda: None,
) -> Supervision:
    """Copy the process's output under the output cap and stop it (`stop`) on cancel, output
    overflow or the time limit; `after_exit` runs once it has exited, before its output is
    drained (e.g. to kill leftovers that would hold the pipes open). Shared by both launchers."""
    limits = request.limits
    over_limit = threading.Event()
    assert process.stdout is not None
    assert process.stderr is not None
    stdout = StreamCopier(process.stdout, request.stdout_path, limits.max_output_bytes, over_limit)
    stderr = StreamCopier(process.stderr, request.stderr_path, limits.max_output_bytes, over_limit)
    stdout.start()
    stderr.start()
    deadline = start + limits.time_limit_s
    stopped_for: RunVerdict | None = None
    while process.poll() is None:
        if cancel.is_set():
            stopped_for = RunVerdict.CANCELLED
        elif over_limit.is_set():
            stopped_for = RunVerdict.OUTPUT_LIMIT
        elif time.monotonic() >= deadline:
            stopped_for = RunVerdict.TIME_LIMIT
        if stopped_for is not None:
            stop(process)
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.05)
    duration = time.monotonic() - start
    after_exit()
    stdout.join(timeout=5)
    stderr.join(timeout=5)
    if stopped_for is None and over_limit.is_set():
        stopped_for = RunVerdict.OUTPUT_LIMIT
    if stopped_for is None and cancel.is_set():  # it ended on its own meanwhile, e.g. its session was cancelled
        stopped_for = RunVerdict.CANCELLED
    return Supervision(stopped_for, duration, stdout, stderr)


def _supervise(
    process: subprocess.Popen[bytes], request: RunRequest, uid: int | None, cancel: threading.Event, start: float
) -> RunOutcome:
    ended = supervise(
        process, request, cancel, start, _stop, lambda: _kill_leftovers(process, uid, request.python_executable)
    )
    verdict, message = judge_outcome(
        process.returncode, ended.stopped_for, ended.stderr.tail, request.limits, request.entrypoint
    )
    return RunOutcome(
        verdict, process.returncode, ended.duration_s, message, ended.stdout.written, ended.stderr.written
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _kill_leftovers(process: subprocess.Popen[bytes], uid: int | None, python_executable: str) -> None:
    """Kill what the run left behind: its session, and every process of its sandbox uid."""
    _signal_group(process.pid, signal.SIGKILL)
    if uid is None:
        return
    # kill(-1) from a process running as the sandbox uid reaches exactly that uid's processes.
    subprocess.run(
        [python_executable, "-c", "import os, signal\ntry: os.kill(-1, signal.SIGKILL)\nexcept OSError: pass"],
        user=uid,
        group=uid,
        extra_groups=[],
        env={},
        check=False,
        timeout=10,
    )


def judge_outcome(
    returncode: int | None, stopped_for: RunVerdict | None, stderr_tail: bytes, limits: RunLimits, entrypoint: str
) -> tuple[RunVerdict, str]:
    """The verdict and a one-line message for a run that ended.

    `returncode` is ``-N`` for a run killed by signal N; `stopped_for` is why the supervisor
    stopped it (cancel, time, output) or a limit it learnt of otherwise (memory: a cgroup OOM
    kill); `stderr_tail` is the last bytes of stderr, searched for MemoryError and fork failures.
    """
    tail = stderr_tail.decode("utf-8", "replace")
    if stopped_for is RunVerdict.CANCELLED:
        return stopped_for, "the job was cancelled"
    if stopped_for is RunVerdict.TIME_LIMIT:
        return stopped_for, f"{entrypoint} ran longer than its time limit of {limits.time_limit_s:.0f} s"
    if stopped_for is RunVerdict.OUTPUT_LIMIT:
        return stopped_for, f"{entrypoint} wrote more than {limits.max_output_bytes} bytes to stdout or stderr"
    if returncode == 0:
        return RunVerdict.COMPLETED, f"{entrypoint} finished"
    out_of_memory = any(sign in tail for sign in ("MemoryError", "Cannot allocate memory", "std::bad_alloc"))
    if stopped_for is RunVerdict.MEMORY_LIMIT or out_of_memory:
        return RunVerdict.MEMORY_LIMIT, f"{entrypoint} ran out of its {limits.memory_bytes // 1024**2} MiB memory limit"
    if "BlockingIOError" in tail and "Resource temporarily unavailable" in tail:
        return RunVerdict.PROCESS_LIMIT, f"{entrypoint} tried to start more than {limits.max_processes} processes"
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else -returncode
        if returncode == -signal.SIGXFSZ:
            return RunVerdict.OUTPUT_LIMIT, f"{entrypoint} wrote a file larger than {limits.max_file_bytes} bytes"
        return RunVerdict.KILLED_BY_SIGNAL, f"{entrypoint} was killed by signal {name}"
    last = [line for line in tail.strip().splitlines() if line.strip()]
    detail = f": {last[-1].strip()}" if last else ""
    return RunVerdict.NONZERO_EXIT, f"{entrypoint} exited with status {returncode}{detail}"
