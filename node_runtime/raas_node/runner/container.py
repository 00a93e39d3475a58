"""Running a user's entrypoint in a podman container: the isolation level for strangers' code.

Same contract as `raas_node.runner.launch.run_entrypoint` (a `RunRequest` in, a `RunOutcome`
out, the same verdicts and messages), but the run is a rootful podman container built from
`raas_node.runner.image.ensure_runtime_image`, so that code from anyone gets:

* no network (``--network none``: only its own loopback), a read-only root file system, no
  capabilities, ``no-new-privileges``, and uid/gid 65534 (nobody) with no extra groups;
* cgroup limits: memory without swap (``--memory`` = ``--memory-swap`` = ``limits.memory_bytes``,
  an OOM kill is ``MEMORY_LIMIT``), processes (``--pids-limit limits.max_processes``: a fork that
  fails is ``PROCESS_LIMIT``), and rlimits on file size and core dumps;
* a disk limit on everything it can write, all of it tmpfs (held in memory, so it also counts
  against the memory limit, and gone with the container): the scratch folder ``/scratch``
  (HOME; the code is unpacked into ``/scratch/work``, the working folder) of
  ``scratch_bytes`` (`RunLimits.scratch_bytes` where it exists, else `DEFAULT_SCRATCH_BYTES`),
  ``/tmp`` (a quarter of the memory limit, at most `TMPFS_MAX_BYTES`) and ``/dev/shm``
  (`SHM_BYTES`); ``/run`` and ``/var/tmp`` are read-only. A full disk is ``OUTPUT_LIMIT``.
  Nothing is written to the host: `RunRequest.scratch_dir` is removed when the run ends;
* the wall-clock and output limits of the subprocess launcher (stdout/stderr come through
  ``podman run``'s attach and the same `StreamCopier`); stopping is ``podman stop`` (SIGTERM,
  SIGKILL after `KILL_GRACE_S`; ``--init`` forwards the signal to the program);
* a hard stop that needs no runner: ``podman run --timeout`` (enforced by conmon) kills the
  container `HARD_STOP_MARGIN_S` after its time limit and grace, even when the server that
  started it was killed; every container carries the label ``io.raas.owner=<owner>`` naming the
  platform instance, so that `reap_containers` can remove what a dead instance left;
* mounts: each `RunRequest.python_path` folder read-only under ``/opt/raas-path/<n>`` (on
  PYTHONPATH) and the robot agent's socket;
* the scrubbed environment of the subprocess launcher (image defaults are dropped), with paths
  rewritten to the container's. The job (environment with the session token, entrypoint, code)
  reaches the container's first program, the starter (`raas_node.runner.container_starter`),
  through its stdin: the token is neither on podman's command line nor in ``podman inspect``.

Because a container can be started before its job is known, the start (`start_container`, a few
hundred ms) and the run (`run_started`) are separate steps: `run_in_container` does both, and
`raas_node.runner.warm_pool.ContainerPool` starts containers ahead of their jobs.

The robot agent's socket: ``RAAS_AGENT_SOCKET`` names a host socket; it is bind-mounted at
`CONTAINER_AGENT_SOCKET` and the variable rewritten. uid 65534 needs write permission on the
socket itself (host folders above it are not traversed inside the container): when it has none,
the socket is given group 65534 with group read/write (as root), and the run fails to launch
otherwise. The agent still refuses any session without the job's token.

Ignored from the request: `python_executable`, `sandbox_uid` and `required_modules` (the
interpreter is the image's `IMAGE_PYTHON`, the uid is 65534). Needs root; `--rm` is replaced by
an explicit ``podman rm`` after ``podman inspect`` has said whether the container was
OOM-killed (``--rm`` removes that evidence before it can be read).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import resource
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from raas_node.runner.container_starter import FAILED, READY, STARTED, STARTER_SOURCE, encode_job, read_marker
from raas_node.runner.image import IMAGE_PYTHON, PODMAN_RUNTIME, image_exists
from raas_node.runner.launch import (
    KILL_GRACE_S,
    RunLimits,
    RunOutcome,
    RunRequest,
    RunVerdict,
    Supervision,
    agent_socket_facts,
    judge_outcome,
    sandbox_environment,
    supervise,
)
from raas_node.runner.oom import MemoryWitness

log = logging.getLogger(__name__)

CONTAINER_UID = 65534
CONTAINER_SCRATCH = "/scratch"
CONTAINER_WORKDIR = f"{CONTAINER_SCRATCH}/work"
CONTAINER_AGENT_SOCKET = "/run/raas/agent.sock"
CONTAINER_PYTHON_PATH_ROOT = "/opt/raas-path"
CONTAINER_SEARCH_PATH = f"{Path(IMAGE_PYTHON).parent}:/usr/local/bin:/usr/bin:/bin"
NAME_PREFIX = "raas-run-"
RUN_LABEL = "io.raas.run"
OWNER_LABEL = "io.raas.owner"
"""Label naming the platform instance that started a container (`instance_label`)."""
AGENT_SOCKET_VARIABLE = "RAAS_AGENT_SOCKET"
NOFILE_LIMIT = 20000
TMPFS_MAX_BYTES = 256 * 1024**2
SHM_BYTES = 64 * 1024**2
DEFAULT_SCRATCH_BYTES = 512 * 1024**2
"""Scratch space of a run whose `RunLimits` has no ``scratch_bytes``."""
HARD_STOP_MARGIN_S = 5.0
"""How long after its time limit (and the stop's grace) a container is killed with no runner."""
START_TIMEOUT_S = 60.0
"""Longest wait for a started container's starter to say it is ready, or that the job started."""


_HARD_STOP_NAME = "raas-hard-stop"
"""The hard stop's process name (``$0`` of its shell): a process group of its own, found by `reap_containers`."""


class ContainerLaunchError(Exception):
    """A container cannot be started or given its job; the message says why."""


@dataclass(frozen=True)
class ContainerShape:
    """What a container fixes when it starts: everything about a run but its job (code,
    entrypoint, environment) and its time limit. A started container fits a request of the same shape."""

    memory_bytes: int
    max_processes: int
    max_file_bytes: int
    scratch_bytes: int
    agent_socket: Path | None = None
    python_path: tuple[Path, ...] = ()

    @classmethod
    def of(cls, request: RunRequest, *, scratch_bytes: int | None = None) -> ContainerShape:
        """The shape `request` needs; `scratch_bytes` overrides the limits' (see `scratch_bytes_of`)."""
        return cls.for_limits(
            request.limits,
            agent_socket=request.environment.get(AGENT_SOCKET_VARIABLE) or None,
            python_path=request.python_path,
            scratch_bytes=scratch_bytes,
        )

    @classmethod
    def for_limits(
        cls,
        limits: RunLimits,
        *,
        agent_socket: str | Path | None = None,
        python_path: Sequence[Path] = (),
        scratch_bytes: int | None = None,
    ) -> ContainerShape:
        """The shape of runs under `limits` with that agent socket and `python_path` folders."""
        return cls(
            memory_bytes=limits.memory_bytes,
            max_processes=limits.max_processes,
            max_file_bytes=limits.max_file_bytes,
            scratch_bytes=scratch_bytes if scratch_bytes is not None else scratch_bytes_of(limits),
            agent_socket=Path(agent_socket).resolve() if agent_socket else None,
            python_path=tuple(Path(folder).resolve() for folder in python_path),
        )


def scratch_bytes_of(limits: RunLimits) -> int:
    """The run's scratch space: ``limits.scratch_bytes`` where `RunLimits` has it, else `DEFAULT_SCRATCH_BYTES`."""
    return int(getattr(limits, "scratch_bytes", DEFAULT_SCRATCH_BYTES))


def instance_label(data_dir: Path) -> str:
    """A platform instance's owner label: 16 hex digits of a hash of its resolved data folder."""
    return hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]


def hard_stop_after_s(time_limit_s: float) -> int:
    """Seconds after which a run of `time_limit_s` is killed with no runner (whole seconds, as podman takes them)."""
    return math.ceil(time_limit_s + KILL_GRACE_S + HARD_STOP_MARGIN_S)


@dataclass
class StartedContainer:
    """A running container whose starter waits for its one job (`run_started`), then ends with it."""

    name: str
    shape: ContainerShape
    process: subprocess.Popen[bytes]
    """The attached ``podman run`` client: its stdin carries the job, its stdout and stderr the job's."""
    witness: MemoryWitness
    folder: Path
    """conmon's working folder, where it writes an ``oom`` file on cgroup v1 (podman never reads it)."""
    started_at: float
    """`time.monotonic` when ``podman run`` was started."""
    timeout_s: int
    """The container's ``--timeout``: conmon kills it this long after its start."""
    socket_identity: tuple[int, int] | None = field(default=None)
    """(device, inode) of the agent socket mounted at start: a socket made anew since is not the mounted one."""

    def fits(self, shape: ContainerShape, time_limit_s: float) -> bool:
        """Whether this container can run a job of `shape` and `time_limit_s` now."""
        age = time.monotonic() - self.started_at
        return (
            self.process.poll() is None
            and shape == self.shape
            and age + hard_stop_after_s(time_limit_s) <= self.timeout_s
            and _socket_identity(shape.agent_socket) == self.socket_identity
        )


def run_in_container(
    request: RunRequest,
    cancel: threading.Event | None,
    image: str,
    *,
    owner: str | None = None,
    scratch_bytes: int | None = None,
) -> RunOutcome:
    """Run ``python <entrypoint>`` in a new container of `image` under the request's limits; blocks until it ends.

    `owner` labels the container (``io.raas.owner``) for `reap_containers`; `scratch_bytes`
    overrides the scratch space of the request's limits. The time limit counts from the start of
    the container.
    """
    cancel = cancel or threading.Event()
    start = time.monotonic()
    try:
        shape = ContainerShape.of(request, scratch_bytes=scratch_bytes)
        check_podman(image)
        timeout_s = hard_stop_after_s(request.limits.time_limit_s)
        container = start_container(image, shape, owner=owner, timeout_s=timeout_s)
    except (ContainerLaunchError, OSError) as error:
        shutil.rmtree(request.scratch_dir, ignore_errors=True)
        return RunOutcome(RunVerdict.LAUNCH_FAILED, None, time.monotonic() - start, str(error), 0, 0)
    try:
        return run_started(container, request, cancel, start=start)
    finally:
        discard(container)
        shutil.rmtree(request.scratch_dir, ignore_errors=True)


def check_podman(image: str) -> None:
    """`ContainerLaunchError` unless podman, runc, root and `image` are all there."""
    if shutil.which("podman") is None or shutil.which(PODMAN_RUNTIME) is None:
        raise ContainerLaunchError("podman or runc is not installed: run scripts/install-system-deps as root")
    if os.geteuid() != 0:
        raise ContainerLaunchError(
            "the container launcher needs root (rootful podman, scratch folders owned by uid 65534)"
        )
    if not image_exists(image):
        raise ContainerLaunchError(f"the container image {image} does not exist: build it with ensure_runtime_image()")


def start_container(
    image: str,
    shape: ContainerShape,
    *,
    owner: str | None,
    timeout_s: int,
    start_timeout_s: float = START_TIMEOUT_S,
) -> StartedContainer:
    """Start a container of `shape` whose starter waits for a job; returns once it is ready.

    Raises `ContainerLaunchError` (with podman's own last words) when it does not come up.
    """
    if shape.agent_socket is not None:
        _open_socket_to_container_user(shape.agent_socket)
    name = f"{NAME_PREFIX}{uuid.uuid4().hex[:16]}"
    witness = MemoryWitness(name)
    arguments = plan_container(
        shape, image, name, owner=owner, cgroup_parent=witness.cgroup_parent, timeout_s=timeout_s
    )
    folder = Path(tempfile.mkdtemp(prefix="raas-podman-"))
    try:
        process = subprocess.Popen(
            arguments,
            cwd=folder,
            env=_podman_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as error:
        witness.remove()
        shutil.rmtree(folder, ignore_errors=True)
        raise ContainerLaunchError(f"cannot start podman: {error}") from None
    container = StartedContainer(
        name, shape, process, witness, folder, time.monotonic(), timeout_s, _socket_identity(shape.agent_socket)
    )
    if read_marker(process.stdout, start_timeout_s) != READY:  # type: ignore[arg-type]
        detail = _last_words(container)
        discard(container)
        raise ContainerLaunchError(f"the container did not start: {detail}")
    return container


def plan_container(
    shape: ContainerShape,
    image: str,
    name: str,
    *,
    owner: str | None = None,
    cgroup_parent: str | None = None,
    timeout_s: int | None = None,
) -> list[str]:
    """The ``podman run`` command of a container of `shape` (no job, no secrets in it); no side effects."""
    mounts = [
        _bind(folder, f"{CONTAINER_PYTHON_PATH_ROOT}/{index}", read_only=True)
        for index, folder in enumerate(shape.python_path)
    ]
    if shape.agent_socket is not None:
        mounts.append(_bind(shape.agent_socket, CONTAINER_AGENT_SOCKET, read_only=False))
    tmpfs_bytes = _tmp_bytes(shape.memory_bytes)
    nproc_soft, nproc_hard = nproc_limits()
    arguments = [
        "podman", "run", "--interactive", "--detach-keys", "", "--runtime", PODMAN_RUNTIME, "--name", name,
        "--label", f"{RUN_LABEL}=1", "--pull", "never", "--init", "--log-driver", "none", "--http-proxy=false",
        "--unsetenv-all", "--network", "none", "--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--user", f"{CONTAINER_UID}:{CONTAINER_UID}",
        "--memory", str(shape.memory_bytes), "--memory-swap", str(shape.memory_bytes),
        "--pids-limit", str(shape.max_processes),
        "--ulimit", f"nofile={NOFILE_LIMIT}:{NOFILE_LIMIT}", "--ulimit", f"nproc={nproc_soft}:{nproc_hard}",
        "--ulimit", f"fsize={shape.max_file_bytes}:{shape.max_file_bytes}", "--ulimit", "core=0:0",
        "--tmpfs", f"{CONTAINER_SCRATCH}:rw,nosuid,nodev,size={shape.scratch_bytes},mode=0700,U",
        "--tmpfs", f"/tmp:rw,nosuid,nodev,size={tmpfs_bytes},mode=1777",
        "--shm-size", str(SHM_BYTES), "--workdir", CONTAINER_SCRATCH,
    ]  # fmt: skip
    if owner is not None:
        arguments += ["--label", f"{OWNER_LABEL}={owner}"]
    if timeout_s is not None:
        arguments += ["--timeout", str(timeout_s)]
    if cgroup_parent is not None:
        arguments += ["--cgroup-parent", cgroup_parent]
    for mount in mounts:
        arguments += ["--mount", mount]
    return [*arguments, image, IMAGE_PYTHON, "-I", "-S", "-c", STARTER_SOURCE]


def job_environment(request: RunRequest) -> dict[str, str]:
    """The whole environment of the request's program inside the container (paths rewritten)."""
    extra = dict(request.environment)
    if extra.get(AGENT_SOCKET_VARIABLE):
        extra[AGENT_SOCKET_VARIABLE] = CONTAINER_AGENT_SOCKET
    python_path = [f"{CONTAINER_PYTHON_PATH_ROOT}/{index}" for index in range(len(request.python_path))]
    return sandbox_environment(
        search_path=CONTAINER_SEARCH_PATH, home=CONTAINER_SCRATCH, tmpdir="/tmp", python_path=python_path, extra=extra
    )


def run_started(
    container: StartedContainer, request: RunRequest, cancel: threading.Event, *, start: float, hard_stop: bool = False
) -> RunOutcome:
    """Hand `request` to `container` and supervise it to its end; the container stays (see `discard`).

    The time limit counts from `start` (`time.monotonic`). With `hard_stop`, a detached host
    process kills the container `hard_stop_after_s` after `start` should this runner die (for a
    container whose own ``--timeout`` is longer than this job's limit).
    """
    process = container.process
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(encode_job(request.entrypoint, job_environment(request), IMAGE_PYTHON, request.code_dir))
        process.stdin.close()
    except OSError as error:
        detail = _last_words(container)
        message = f"cannot hand the job to its container: {error}; {detail}"
        return RunOutcome(RunVerdict.LAUNCH_FAILED, None, 0.0, message, 0, 0)
    warden = _hard_stop(container.name, start + hard_stop_after_s(request.limits.time_limit_s)) if hard_stop else None
    try:
        marker = read_marker(process.stdout, START_TIMEOUT_S)
        if marker != STARTED:
            return _not_started(container, marker, time.monotonic() - start)
        ended = supervise(process, request, cancel, start, lambda running: _stop(running, container.name))
        return _judge(container, request, ended, start)
    finally:
        if warden is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(warden.pid, signal.SIGKILL)
            warden.wait()


def discard(container: StartedContainer) -> None:
    """Remove the container and everything the run left on the host (cgroup folders, conmon's folder)."""
    _podman("rm", "--force", "--time", "0", container.name, timeout_s=60)
    process = container.process
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    container.witness.remove()
    shutil.rmtree(container.folder, ignore_errors=True)


def reap_containers(owner_label: str) -> int:
    """Kill and remove every container labelled with `owner_label` (a dead instance's runs and
    warm containers); returns how many there were.

    Call it at start, before retrying interrupted jobs and before starting containers of your
    own: it first kills the ``podman run`` clients still starting containers with that label (a
    dead instance's clients live on in their own sessions), so that none appears after it.
    """
    _kill_podman_clients(f"{OWNER_LABEL}={owner_label}")
    names = _container_names(f"label={OWNER_LABEL}={owner_label}")
    _kill_hard_stops(set(names))
    if names:
        _podman("rm", "--force", "--time", "0", *names, timeout_s=120)
        for name in names:
            MemoryWitness(name).remove(wait_s=0.5)
    return len(names)


def _kill_podman_clients(label: str) -> None:
    """SIGKILL every podman process whose command line holds ``--label <label>``."""
    wanted = label.encode()
    for pid, command in _processes():
        if Path(os.fsdecode(command[0])).name == "podman" and wanted in command:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _kill_hard_stops(names: set[str]) -> None:
    """SIGKILL the process groups of the hard stops (`_hard_stop`) waiting to kill containers `names`."""
    for pid, command in _processes():
        if _HARD_STOP_NAME.encode() in command and os.fsdecode(command[-1]) in names:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _processes() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, command line) of every other process on the machine."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = Path(entry.path, "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        if command and command[0]:
            yield int(entry.name), command


def remove_leftover_containers() -> list[str]:
    """Force-remove every run container of every instance (e.g. left by a runner that crashed); returns their names."""
    names = _container_names(f"label={RUN_LABEL}")
    for name in names:
        _podman("rm", "--force", "--time", "0", name, timeout_s=60)
    return names


def _tmp_bytes(memory_bytes: int) -> int:
    """Size of the run's ``/tmp``: a quarter of its memory limit, at most `TMPFS_MAX_BYTES`."""
    return min(TMPFS_MAX_BYTES, memory_bytes // 4)


def _container_names(label_filter: str) -> list[str]:
    listing = _podman("ps", "--all", "--filter", label_filter, "--format", "{{.Names}}", timeout_s=60)
    return listing.stdout.split() if listing is not None and listing.returncode == 0 else []


def _podman_environment() -> dict[str, str]:
    environment = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    environment.update({key: value for key, value in os.environ.items() if key.startswith("CONTAINERS_")})
    return environment


def _bind(source: Path, target: str, *, read_only: bool) -> str:
    host = str(Path(source).resolve())
    if "," in host or "=" in host:
        raise ContainerLaunchError(f"cannot mount {host}: podman mounts cannot name paths containing ',' or '='")
    return f"type=bind,source={host},target={target}" + (",readonly" if read_only else "")


def nproc_limits() -> tuple[int, int]:
    """RLIMIT_NPROC for the container: the host's, capped at pid_max (podman caps its own there)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = 32768
    hard = pid_max if hard == resource.RLIM_INFINITY else min(hard, pid_max)
    soft = hard if soft == resource.RLIM_INFINITY else min(soft, hard)
    return soft, hard


def _socket_identity(socket: Path | None) -> tuple[int, int] | None:
    if socket is None:
        return None
    with contextlib.suppress(OSError):
        status = socket.stat()
        return status.st_dev, status.st_ino
    return None


def _open_socket_to_container_user(socket: Path) -> None:
    """Make sure uid 65534 may connect to `socket` (write permission on the socket inode)."""
    try:
        status = agent_socket_facts(socket)
    except ValueError as error:
        raise ContainerLaunchError(str(error)) from None
    writable = status.st_mode & stat.S_IWOTH or (status.st_mode & stat.S_IWGRP and status.st_gid == CONTAINER_UID)
    if writable or status.st_uid == CONTAINER_UID:
        return
    if os.geteuid() != 0:
        raise ContainerLaunchError(
            f"uid {CONTAINER_UID} cannot connect to {socket}: give it group {CONTAINER_UID} with g+rw"
        )
    os.chown(socket, -1, CONTAINER_UID)
    os.chmod(socket, stat.S_IMODE(status.st_mode) | stat.S_IRGRP | stat.S_IWGRP)


def _last_words(container: StartedContainer) -> str:
    """End a container that failed and say why, from podman's stderr (or its exit status)."""
    _podman("rm", "--force", "--time", "0", container.name, timeout_s=60)
    rest: list[bytes] = []
    stderr = container.process.stderr
    if stderr is not None:
        reader = threading.Thread(target=lambda: rest.append(stderr.read()), daemon=True)
        reader.start()
        reader.join(30)
    with contextlib.suppress(subprocess.TimeoutExpired):
        container.process.wait(timeout=5)
    last = [line for line in b"".join(rest)[-8192:].decode("utf-8", "replace").splitlines() if line.strip()]
    return last[-1].strip() if last else f"podman exited with status {container.process.returncode}"


def _not_started(container: StartedContainer, marker: bytes | None, duration: float) -> RunOutcome:
    if marker is not None and marker.startswith(FAILED):
        reason = marker[len(FAILED) :].decode("utf-8", "replace").strip()
    elif marker is None:
        _stop(container.process, container.name)
        reason = f"its starter did not answer within {START_TIMEOUT_S:.0f} s"
    else:
        reason = "its starter ended before starting it"
    message = f"the job did not start in its container: {reason}"
    return RunOutcome(RunVerdict.LAUNCH_FAILED, None, duration, message, 0, 0)


def _hard_stop(name: str, at: float) -> subprocess.Popen[bytes]:
    """A host process of its own session that kills container `name` at `at` (`time.monotonic`), runner or not."""
    delay = max(0.0, at - time.monotonic())
    podman = shutil.which("podman") or "podman"
    return subprocess.Popen(
        [
            "/bin/sh",
            "-c",
            'sleep "$1" && exec "$2" kill --signal KILL "$3"',
            _HARD_STOP_NAME,
            f"{delay:.1f}",
            podman,
            name,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_podman_environment(),
        start_new_session=True,
        close_fds=True,
    )


def _judge(container: StartedContainer, request: RunRequest, ended: Supervision, start: float) -> RunOutcome:
    limits, process = request.limits, container.process
    stopped_for, stderr = ended.stopped_for, ended.stderr
    written = (ended.stdout.written, stderr.written)
    state = _inspect(container.name)
    returncode = _as_signal_code(process.returncode)
    reported = bool(state.get("OOMKilled")) or (container.folder / "oom").exists()
    killed = returncode == -signal.SIGKILL
    if stopped_for is None and (reported or (killed and container.witness.hit_limit(limits.memory_bytes))):
        stopped_for = RunVerdict.MEMORY_LIMIT
    if stopped_for is None and killed and time.monotonic() >= start + limits.time_limit_s:
        stopped_for = RunVerdict.TIME_LIMIT  # the hard stop ended it: the supervisor was late
    verdict, message = judge_outcome(returncode, stopped_for, stderr.tail, limits, request.entrypoint)
    if verdict is RunVerdict.NONZERO_EXIT and b"No space left on device" in stderr.tail:
        verdict = RunVerdict.OUTPUT_LIMIT
        scratch_mib, tmp_mib = container.shape.scratch_bytes // 1024**2, _tmp_bytes(limits.memory_bytes) // 1024**2
        message = f"{request.entrypoint} ran out of disk space (scratch folder {scratch_mib} MiB, /tmp {tmp_mib} MiB)"
    return RunOutcome(verdict, returncode, ended.duration_s, message, *written)


def _stop(process: subprocess.Popen[bytes], name: str) -> None:
    """Stop the container (SIGTERM, SIGKILL after the grace period), then the podman client if it lingers."""
    _podman("stop", "--time", str(int(KILL_GRACE_S)), name, timeout_s=KILL_GRACE_S + 30)
    deadline = time.monotonic() + 15
    while process.poll() is None and time.monotonic() < deadline:
        # The container may not have existed yet when stop ran: keep killing until the client ends.
        _podman("kill", name, timeout_s=30)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.5)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _inspect(name: str) -> Mapping[str, object]:
    """The container's ``State`` from ``podman inspect`` ({} when there is no such container)."""
    result = _podman("inspect", "--type", "container", name, timeout_s=60)
    if result is None or result.returncode != 0:
        return {}
    with contextlib.suppress(ValueError, LookupError, TypeError):
        state = json.loads(result.stdout)[0]["State"]
        if isinstance(state, dict):
            return state
    return {}


def _as_signal_code(returncode: int | None) -> int | None:
    """A container's ``128 + N`` exit status as ``-N``, as `subprocess` reports a process killed by signal N."""
    if returncode is not None and returncode > 128 and (returncode - 128) in signal.Signals._value2member_map_:
        return -(returncode - 128)
    return returncode


def _podman(*arguments: str, timeout_s: float) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["podman", *arguments], capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("podman %s failed: %s", arguments[0], error)
        return None
