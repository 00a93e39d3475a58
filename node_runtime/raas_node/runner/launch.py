"""Running a user's entrypoint in a sandbox with limits, and saying what happened.

The process isolation level. What a run gets depends on who runs the launcher:

* **root** (a platform serving other people): the run is a bubblewrap sandbox
  (`raas_node.runner.sandbox`) as a sandbox uid of its own (`raas_node.runner.sandbox_uids`:
  leased, the least recently used free one, so consecutive runs never share a uid). It sees the
  host read-only, has a private size-limited tmpfs scratch (``/tmp``: HOME, TMPDIR and, in
  ``/tmp/work``, a copy of the code; ``limits.scratch_bytes``, ENOSPC beyond, gone when the run
  ends) and private ``/var/tmp``, ``/dev/shm`` and ``/run``, no network but its own loopback,
  its own pid namespace (it dies with the launcher: ``--die-with-parent``), no capabilities and
  ``no_new_privs``. Its only way out is the robot agent's socket named by ``RAAS_AGENT_SOCKET``,
  mounted at `SANDBOX_AGENT_SOCKET` (the variable is rewritten); `RunRequest.python_path`
  folders are mounted read-only (PYTHONPATH rewritten) and `RunRequest.hidden_paths` covered.
  User code never runs as root: when a sandbox uid cannot run the interpreter (with
  `RunRequest.required_modules`), or bubblewrap is missing, the run is ``LAUNCH_FAILED`` with a
  sentence saying what to change (`check_process_isolation` asks the same at start-up).
* **another user** (a developer running their own code): the run keeps that user's uid. Where
  unprivileged user namespaces work, it gets the same sandbox (private scratch and tmp, no
  network, its own pid namespace, dies with the launcher) but no uid of its own, so it can read
  what that user can read. Otherwise it is a plain subprocess in ``scratch_dir`` (its HOME,
  TMPDIR and working folder; removed when the run ends) with the limits below and nothing else.

Every run gets a scrubbed environment (no credentials: only what `RunRequest.environment` adds,
such as the robot agent's socket and session token) and limits:

* wall-clock time (SIGTERM to the program, then SIGKILL `KILL_GRACE_S` later),
* address space (``RLIMIT_AS``) and file size (``RLIMIT_FSIZE``),
* processes (``RLIMIT_NPROC``, counted per uid: with a uid of its own, only the run's processes;
  every leftover process of that uid is killed before and after the run),
* bytes written to stdout and stderr (the run is stopped when either passes the limit),
* scratch space (``limits.scratch_bytes``, in the sandbox).

The runner reports facts (`RunVerdict`); mapping them to the platform's failure classes is the
platform's policy.
"""

from __future__ import annotations

import contextlib
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

from raas_node.runner.sandbox import (
    SANDBOX_AGENT_SOCKET,
    SANDBOX_SCRATCH,
    SandboxSpec,
    SandboxToolMissingError,
    StartedPipe,
    interpreter_paths,
    probe,
    sandbox_command,
    sandboxed_processes,
)
from raas_node.runner.sandbox_uids import (
    FIRST_SANDBOX_UID,
    NoSandboxUidError,
    kill_processes_of,
    lease_sandbox_uid,
)

log = logging.getLogger(__name__)

KILL_GRACE_S = 2.0
AGENT_SOCKET_VARIABLE = "RAAS_AGENT_SOCKET"
_STDERR_TAIL_BYTES = 8192
_PROBE_SCRATCH_BYTES = 16 * 1024**2
_ADVICE = (
    "make the interpreter and its virtual environment readable by other users (chmod -R o+rX),"
    " or use --isolation container"
)


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


class SandboxUnavailableError(RuntimeError):
    """The process isolation level cannot run jobs safely here; the message says what to change."""


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
    scratch_bytes: int = 512 * 1024**2
    """Size of the sandbox's scratch tmpfs (``/tmp``: code copy, HOME, TMPDIR); memory, not disk."""


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to run one entrypoint."""

    code_dir: Path
    entrypoint: str
    scratch_dir: Path
    """Host scratch folder of an unsandboxed run (a non-root launcher without user namespaces)."""
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
    """Modules the run needs (e.g. ``gym_raas``): a run whose uid cannot import them fails to launch."""
    hidden_paths: Sequence[Path] = ()
    """Host folders the sandboxed run must not see (e.g. the platform's data folder)."""


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


class _LaunchError(Exception):
    """The run cannot start; the message says why."""


def run_entrypoint(request: RunRequest, cancel: threading.Event | None = None) -> RunOutcome:
    """Run ``python <entrypoint>`` under the request's limits; blocks until it ends.

    As root without a `RunRequest.sandbox_uid`, the run leases a uid no concurrent run holds.
    """
    cancel = cancel or threading.Event()
    if os.geteuid() != 0:
        return _run_sandboxed(request, None, cancel) if user_namespaces_work() else _run_plain(request, cancel)
    if request.sandbox_uid is not None:
        return _run_sandboxed(request, request.sandbox_uid, cancel)
    try:
        with lease_sandbox_uid() as uid:
            return _run_sandboxed(request, uid, cancel)
    except NoSandboxUidError as error:
        return _launch_failed(f"{error}: wait for runs to end, or run fewer at once")


def check_process_isolation(
    python_executable: str, required_modules: tuple[str, ...] = (), hidden_paths: Sequence[Path] = ()
) -> None:
    """Raise `SandboxUnavailableError` unless runs can start here with `python_executable`.

    As root: bubblewrap and setpriv work and a sandbox uid can run the interpreter and import
    `required_modules` with `hidden_paths` hidden (as `RunRequest.hidden_paths`). Otherwise:
    the interpreter imports them (in the sandbox when user namespaces work). For the platform's
    start-up; a run checks the same before it starts.
    """
    hidden = [Path(folder).resolve() for folder in hidden_paths if Path(folder).is_dir()]
    if os.geteuid() == 0:
        try:
            with lease_sandbox_uid() as uid:
                _check_runnable(python_executable, required_modules, uid, hidden, use_cache=False)
        except NoSandboxUidError as error:
            raise SandboxUnavailableError(str(error)) from None
    elif user_namespaces_work():
        _check_runnable(python_executable, required_modules, None, hidden, use_cache=False)
    else:
        imports = ", ".join(("encodings", "json", *required_modules))
        try:
            completed = subprocess.run(
                [python_executable, "-s", "-c", f"import {imports}"], capture_output=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SandboxUnavailableError(f"cannot run {python_executable}: {error}") from None
        if completed.returncode != 0:
            raise SandboxUnavailableError(f"{python_executable} cannot import {imports}: install them for it")


@functools.lru_cache(maxsize=1)
def user_namespaces_work() -> bool:
    """Whether this (non-root) user can start a bubblewrap sandbox."""
    try:
        return probe(SandboxSpec(uid=None, scratch_bytes=_PROBE_SCRATCH_BYTES), ["true"], _tool_environment()).succeeded
    except SandboxToolMissingError:
        return False


def _run_sandboxed(request: RunRequest, uid: int | None, cancel: threading.Event) -> RunOutcome:
    try:
        if uid is not None and uid <= 0:
            raise _LaunchError(f"uid {uid} is privileged: a sandbox uid must be an unprivileged user's")
        spec = _sandbox_spec(request, uid)
        _check_runnable(request.python_executable, request.required_modules, uid, spec.hidden_paths)
        if uid is not None:
            kill_processes_of(uid)  # an earlier holder's leftovers would count against RLIMIT_NPROC
    except (_LaunchError, SandboxUnavailableError, OSError) as error:
        return _launch_failed(str(error))
    pipe = StartedPipe()
    try:
        command = sandbox_command(spec, [request.python_executable, "-s", "-u", request.entrypoint], pipe.write_fd)
    except SandboxToolMissingError as error:
        pipe.started()
        return _launch_failed(str(error))
    extra = dict(request.environment)
    if spec.agent_socket is not None:
        extra[AGENT_SOCKET_VARIABLE] = SANDBOX_AGENT_SOCKET
    environment = sandbox_environment(
        search_path=_search_path(request),
        home=SANDBOX_SCRATCH,
        tmpdir=SANDBOX_SCRATCH,
        python_path=spec.sandbox_python_path,
        extra=extra,
    )
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            command,
            cwd="/",
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            # RLIMIT_NPROC counts every process of the uid: a shared uid needs its current count.
            preexec_fn=_limits_setter(request.limits, 0 if uid is not None else _process_count(os.getuid())),  # noqa: PLW1509
            pass_fds=(pipe.write_fd,),
            close_fds=True,
        )
    except OSError as error:
        pipe.started()
        return _launch_failed(f"cannot start bubblewrap: {error}")
    pipe.parent_side()
    ended = supervise(process, request, cancel, start, _stop_sandbox, lambda: _kill_leftovers(process, uid))
    written = (ended.stdout.written, ended.stderr.written)
    if not pipe.started() and ended.stopped_for is None:
        return RunOutcome(RunVerdict.LAUNCH_FAILED, None, ended.duration_s, _setup_failure(ended.stderr.tail), *written)
    returncode = _as_signal_code(process.returncode)
    verdict, message = judge_outcome(
        returncode, ended.stopped_for, ended.stderr.tail, request.limits, request.entrypoint
    )
    return RunOutcome(verdict, returncode, ended.duration_s, message, *written)


def _sandbox_spec(request: RunRequest, uid: int | None) -> SandboxSpec:
    socket = request.environment.get(AGENT_SOCKET_VARIABLE)
    agent_socket = Path(socket) if socket else None
    if agent_socket is not None:
        _check_agent_socket(agent_socket, uid)
    for folder in request.python_path:
        if not Path(folder).is_dir():
            raise _LaunchError(f"the python_path folder {folder} does not exist")
    if not Path(request.code_dir).is_dir():
        raise _LaunchError(f"the code folder {request.code_dir} does not exist")
    return SandboxSpec(
        uid=uid,
        scratch_bytes=request.limits.scratch_bytes,
        code_dir=Path(request.code_dir).resolve(),
        agent_socket=agent_socket,
        python_path=[Path(folder).resolve() for folder in request.python_path],
        hidden_paths=[Path(folder).resolve() for folder in request.hidden_paths if Path(folder).is_dir()],
        runtime_paths=interpreter_paths(request.python_executable, request.required_modules),
    )


def agent_socket_facts(socket: Path) -> os.stat_result:
    """The robot agent's socket's file facts; `ValueError` saying why when it is missing or no socket.

    Shared by both launchers, which each check then who may connect to it."""
    try:
        facts = socket.stat()
    except OSError as error:
        raise ValueError(f"the robot agent's socket {socket} is not there: {error.strerror}") from None
    if not stat.S_ISSOCK(facts.st_mode):
        raise ValueError(f"the robot agent's socket {socket} is not a Unix socket")
    return facts


def _check_agent_socket(socket: Path, uid: int | None) -> None:
    try:
        facts = agent_socket_facts(socket)
    except ValueError as error:
        raise _LaunchError(str(error)) from None
    if uid is not None and not facts.st_mode & stat.S_IWOTH and facts.st_uid != uid:
        raise _LaunchError(
            f"uid {uid} cannot connect to the robot agent's socket {socket}: make it writable by others (mode 0666)"
            " and keep its folder private"
        )


def _check_runnable(
    python_executable: str, modules: tuple[str, ...], uid: int | None, hidden: Sequence[Path], *, use_cache: bool = True
) -> None:
    """Raise `SandboxUnavailableError` unless `uid` can run the interpreter and import `modules` in a sandbox.

    Successes are remembered: every sandbox uid has the same rights (no groups, no files).
    """
    key = (python_executable, modules, tuple(hidden), uid is None)
    if use_cache and key in _RUNNABLE:
        return
    imports = ", ".join(("encodings", "json", *modules))
    spec = SandboxSpec(
        uid=uid,
        scratch_bytes=_PROBE_SCRATCH_BYTES,
        hidden_paths=hidden,
        runtime_paths=interpreter_paths(python_executable, modules),
    )
    try:
        result = probe(spec, [python_executable, "-s", "-c", f"import {imports}"], _tool_environment())
    except SandboxToolMissingError as error:
        raise SandboxUnavailableError(str(error)) from None
    who = "this user" if uid is None else f"uid {uid}"
    if not result.started:
        raise SandboxUnavailableError(
            f"the process sandbox does not start ({result.detail}): run scripts/install-system-deps as root,"
            " or use --isolation container"
        )
    if not result.succeeded:
        needing = f" with {', '.join(modules)}" if modules else ""
        raise SandboxUnavailableError(f"{who} cannot run {python_executable}{needing} ({result.detail}): {_ADVICE}")
    _RUNNABLE.add(key)


_RUNNABLE: set[tuple[str, tuple[str, ...], tuple[Path, ...], bool]] = set()


def _setup_failure(stderr_tail: bytes) -> str:
    last = [line.strip() for line in stderr_tail.decode("utf-8", "replace").splitlines() if line.strip()]
    detail = last[-1] if last else "no message"
    return f"the sandbox did not start ({detail}): check that bubblewrap works (scripts/install-system-deps)"


def _tool_environment() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def _search_path(request: RunRequest) -> str:
    return f"{Path(request.python_executable).parent}:/usr/local/bin:/usr/bin:/bin"


def _launch_failed(message: str) -> RunOutcome:
    return RunOutcome(RunVerdict.LAUNCH_FAILED, None, 0.0, message, 0, 0)


def _stop_sandbox(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the program's processes in the sandbox; after the grace period SIGKILL to bwrap (and so to all)."""
    inside = sandboxed_processes(process.pid)
    for pid in inside:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    if not inside:  # not started yet: bwrap itself
        _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _as_signal_code(returncode: int | None) -> int | None:
    """bwrap's ``128 + N`` for a program killed by signal N as ``-N``, as `subprocess` reports it."""
    if returncode is not None and returncode > 128 and (returncode - 128) in signal.Signals._value2member_map_:
        return -(returncode - 128)
    return returncode


def _run_plain(request: RunRequest, cancel: threading.Event) -> RunOutcome:
    """A non-root launcher without user namespaces: a subprocess of the launcher's own user."""
    try:
        workdir = prepare_scratch(request)
        environment = sandbox_environment(
            search_path=_search_path(request),
            home=str(request.scratch_dir),
            tmpdir=str(request.scratch_dir / "tmp"),
            python_path=[str(path) for path in request.python_path],
            extra=request.environment,
        )
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
                preexec_fn=_limits_setter(request.limits, _process_count(os.getuid())),  # noqa: PLW1509
                close_fds=True,
            )
        except OSError as error:
            return _launch_failed(f"cannot start Python: {error}")
        ended = supervise(process, request, cancel, start, _stop, lambda: _kill_leftovers(process, None))
        verdict, message = judge_outcome(
            process.returncode, ended.stopped_for, ended.stderr.tail, request.limits, request.entrypoint
        )
        return RunOutcome(
            verdict, process.returncode, ended.duration_s, message, ended.stdout.written, ended.stderr.written
        )
    finally:
        shutil.rmtree(request.scratch_dir, ignore_errors=True)


def prepare_scratch(request: RunRequest) -> Path:
    """Copy the code into ``scratch/work`` and make ``scratch/tmp``; returns the working folder."""
    request.scratch_dir.mkdir(parents=True, exist_ok=True)
    workdir = request.scratch_dir / "work"
    shutil.copytree(request.code_dir, workdir, dirs_exist_ok=True)
    (request.scratch_dir / "tmp").mkdir(exist_ok=True)
    return workdir


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


def _kill_leftovers(process: subprocess.Popen[bytes], uid: int | None) -> None:
    """Kill what the run left behind: its process group, and every process of its sandbox uid."""
    _signal_group(process.pid, signal.SIGKILL)
    if uid is not None:
        kill_processes_of(uid)


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
