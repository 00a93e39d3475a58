"""Running a user's entrypoint in a podman container: the isolation level for strangers' code.

Same contract as `raas_node.runner.launch.run_entrypoint` (a `RunRequest` in, a `RunOutcome`
out, the same verdicts and messages), but the run is a rootful podman container built from
`raas_node.runner.image.ensure_runtime_image`, so that code from anyone gets:

* no network (``--network none``: only its own loopback), a read-only root file system, no
  capabilities, ``no-new-privileges``, and uid/gid 65534 (nobody) with no extra groups;
* cgroup limits: memory without swap (``--memory`` = ``--memory-swap`` = ``limits.memory_bytes``,
  an OOM kill is ``MEMORY_LIMIT``), processes (``--pids-limit limits.max_processes``: a fork that
  fails is ``PROCESS_LIMIT``), and rlimits on file size and core dumps;
* the wall-clock and output limits of the subprocess launcher (stdout/stderr come through
  ``podman run``'s attach and the same `StreamCopier`); stopping is ``podman stop`` (SIGTERM,
  SIGKILL after `KILL_GRACE_S`; ``--init`` forwards the signal to the program);
* mounts: the scratch folder (holding a copy of the code, owned by 65534) read-write as HOME and
  working folder ``/scratch/work``, a tmpfs ``/tmp``, each `RunRequest.python_path` folder
  read-only under ``/opt/raas-path/<n>`` (on PYTHONPATH), and the robot agent's socket;
* the scrubbed environment of the subprocess launcher (image defaults are dropped), with paths
  rewritten to the container's. `RunRequest.environment` values are handed to podman through its
  own environment (``--env NAME``), not its command line, so the session token is not in ``ps``.

The robot agent's socket: ``RAAS_AGENT_SOCKET`` names a host socket; it is bind-mounted at
`CONTAINER_AGENT_SOCKET` and the variable rewritten. uid 65534 needs write permission on the
socket itself (host folders above it are not traversed inside the container): when it has none,
the socket is given group 65534 with group read/write (as root), and the run fails to launch
otherwise. The agent still refuses any session without the job's token.

Ignored from the request: `python_executable`, `sandbox_uid` and `required_modules` (the
interpreter is the image's `IMAGE_PYTHON`, the uid is 65534). Needs root; `--rm` is replaced by
an explicit ``podman rm`` after ``podman inspect`` has said whether the container started and
whether it was OOM-killed (``--rm`` removes that evidence before it can be read).
"""

from __future__ import annotations

import contextlib
import json
import logging
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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from raas_node.runner.image import IMAGE_PYTHON, PODMAN_RUNTIME, image_exists
from raas_node.runner.launch import (
    KILL_GRACE_S,
    RunOutcome,
    RunRequest,
    RunVerdict,
    give_to,
    judge_outcome,
    prepare_scratch,
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
AGENT_SOCKET_VARIABLE = "RAAS_AGENT_SOCKET"
NOFILE_LIMIT = 20000
TMPFS_MAX_BYTES = 256 * 1024**2

_PODMAN_ERROR_CODES = (125, 126, 127)  # podman's own failure, command not executable, not found
# Variables podman itself reads: never passed by name through podman's environment.
_PODMAN_OWN_VARIABLES = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "TZ", "NOTIFY_SOCKET"})
_PODMAN_OWN_PREFIXES = ("CONTAINERS_", "XDG_", "BUILDAH_", "PODMAN_", "STORAGE_", "LC_")


class _LaunchError(Exception):
    """The run cannot start; the message says why."""


@dataclass(frozen=True)
class ContainerPlan:
    """A container run worked out from a request: podman's arguments and environment."""

    arguments: list[str]
    """The whole ``podman run`` command line (no secrets in it)."""
    podman_environment: dict[str, str]
    """podman's own environment, which carries the values of ``--env NAME`` variables."""


def run_in_container(request: RunRequest, cancel: threading.Event | None, image: str) -> RunOutcome:
    """Run ``python <entrypoint>`` in a container of `image` under the request's limits; blocks until it ends."""
    cancel = cancel or threading.Event()
    name = f"{NAME_PREFIX}{uuid.uuid4().hex[:16]}"
    witness = MemoryWitness(name)
    try:
        _check_podman(image)
        prepare_scratch(request)
        give_to(request.scratch_dir, CONTAINER_UID)
        socket = request.environment.get(AGENT_SOCKET_VARIABLE)
        if socket:
            _open_socket_to_container_user(Path(socket))
        plan = plan_container(request, image, name, cgroup_parent=witness.cgroup_parent)
    except (_LaunchError, OSError) as error:
        return RunOutcome(RunVerdict.LAUNCH_FAILED, None, 0.0, str(error), 0, 0)
    # conmon writes an "oom" file into its working folder on cgroup v1 (where podman never reads
    # it): give podman a private one, so that the file litters nothing and can be read.
    with tempfile.TemporaryDirectory(prefix="raas-podman-") as podman_folder:
        start = time.monotonic()
        try:
            process = subprocess.Popen(
                plan.arguments,
                cwd=podman_folder,
                env=plan.podman_environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as error:
            return RunOutcome(RunVerdict.LAUNCH_FAILED, None, 0.0, f"cannot start podman: {error}", 0, 0)
        try:
            return _supervise(process, request, name, witness, Path(podman_folder) / "oom", cancel, start)
        finally:
            _podman("rm", "--force", "--time", "0", name, timeout_s=60)
            witness.remove()


def plan_container(request: RunRequest, image: str, name: str, *, cgroup_parent: str | None = None) -> ContainerPlan:
    """The ``podman run`` command for `request`; no side effects (it only reads host limits)."""
    limits = request.limits
    mounts = [_bind(request.scratch_dir, CONTAINER_SCRATCH, read_only=False)]
    python_path = []
    for index, folder in enumerate(request.python_path):
        target = f"{CONTAINER_PYTHON_PATH_ROOT}/{index}"
        mounts.append(_bind(folder, target, read_only=True))
        python_path.append(target)
    extra = dict(request.environment)
    if extra.get(AGENT_SOCKET_VARIABLE):
        mounts.append(_bind(Path(extra[AGENT_SOCKET_VARIABLE]), CONTAINER_AGENT_SOCKET, read_only=False))
        extra[AGENT_SOCKET_VARIABLE] = CONTAINER_AGENT_SOCKET
    environment = sandbox_environment(
        search_path=CONTAINER_SEARCH_PATH, home=CONTAINER_SCRATCH, tmpdir="/tmp", python_path=python_path, extra=extra
    )
    by_name = {key for key in request.environment if key != AGENT_SOCKET_VARIABLE and _passable_by_name(key)}
    tmpfs_bytes = min(TMPFS_MAX_BYTES, limits.memory_bytes // 4)
    nproc_soft, nproc_hard = nproc_limits()
    arguments = [
        "podman", "run", "--runtime", PODMAN_RUNTIME, "--name", name, "--label", f"{RUN_LABEL}=1",
        "--pull", "never", "--init", "--log-driver", "none", "--http-proxy=false", "--unsetenv-all",
        "--network", "none", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--user", f"{CONTAINER_UID}:{CONTAINER_UID}",
        "--memory", str(limits.memory_bytes), "--memory-swap", str(limits.memory_bytes),
        "--pids-limit", str(limits.max_processes),
        "--ulimit", f"nofile={NOFILE_LIMIT}:{NOFILE_LIMIT}", "--ulimit", f"nproc={nproc_soft}:{nproc_hard}",
        "--ulimit", f"fsize={limits.max_file_bytes}:{limits.max_file_bytes}", "--ulimit", "core=0:0",
        "--tmpfs", f"/tmp:rw,nosuid,nodev,size={tmpfs_bytes},mode=1777",
        "--workdir", CONTAINER_WORKDIR,
    ]  # fmt: skip
    if cgroup_parent is not None:
        arguments += ["--cgroup-parent", cgroup_parent]
    for mount in mounts:
        arguments += ["--mount", mount]
    for key, value in environment.items():
        arguments += ["--env", key if key in by_name else f"{key}={value}"]
    arguments += [image, IMAGE_PYTHON, "-s", "-u", request.entrypoint]
    podman_environment = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    podman_environment.update({key: value for key, value in os.environ.items() if key.startswith("CONTAINERS_")})
    podman_environment.update({key: environment[key] for key in by_name})
    return ContainerPlan(arguments, podman_environment)


def remove_leftover_containers() -> list[str]:
    """Force-remove every run container (e.g. left by a runner that crashed); returns their names."""
    listing = _podman("ps", "--all", "--filter", f"label={RUN_LABEL}", "--format", "{{.Names}}", timeout_s=60)
    names = listing.stdout.split() if listing is not None else []
    for name in names:
        _podman("rm", "--force", "--time", "0", name, timeout_s=60)
    return names


def _check_podman(image: str) -> None:
    if shutil.which("podman") is None or shutil.which(PODMAN_RUNTIME) is None:
        raise _LaunchError("podman or runc is not installed: run scripts/install-system-deps as root")
    if os.geteuid() != 0:
        raise _LaunchError("the container launcher needs root (rootful podman, scratch folders owned by uid 65534)")
    if not image_exists(image):
        raise _LaunchError(f"the container image {image} does not exist: build it with ensure_runtime_image()")


def _bind(source: Path, target: str, *, read_only: bool) -> str:
    host = str(Path(source).resolve())
    if "," in host or "=" in host:
        raise _LaunchError(f"cannot mount {host}: podman mounts cannot name paths containing ',' or '='")
    return f"type=bind,source={host},target={target}" + (",readonly" if read_only else "")


def _passable_by_name(key: str) -> bool:
    return key not in _PODMAN_OWN_VARIABLES and not key.startswith(_PODMAN_OWN_PREFIXES)


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


def _open_socket_to_container_user(socket: Path) -> None:
    """Make sure uid 65534 may connect to `socket` (write permission on the socket inode)."""
    try:
        status = socket.stat()
    except OSError as error:
        raise _LaunchError(f"the robot agent's socket {socket} is not there: {error.strerror}") from None
    if not stat.S_ISSOCK(status.st_mode):
        raise _LaunchError(f"the robot agent's socket {socket} is not a Unix socket")
    writable = status.st_mode & stat.S_IWOTH or (status.st_mode & stat.S_IWGRP and status.st_gid == CONTAINER_UID)
    if writable or status.st_uid == CONTAINER_UID:
        return
    if os.geteuid() != 0:
        raise _LaunchError(f"uid {CONTAINER_UID} cannot connect to {socket}: give it group {CONTAINER_UID} with g+rw")
    os.chown(socket, -1, CONTAINER_UID)
    os.chmod(socket, stat.S_IMODE(status.st_mode) | stat.S_IRGRP | stat.S_IWGRP)


def _supervise(
    process: subprocess.Popen[bytes],
    request: RunRequest,
    name: str,
    witness: MemoryWitness,
    conmon_oom_file: Path,
    cancel: threading.Event,
    start: float,
) -> RunOutcome:
    limits = request.limits
    ended = supervise(process, request, cancel, start, lambda running: _stop(running, name))
    stopped_for, duration, stdout, stderr = ended.stopped_for, ended.duration_s, ended.stdout, ended.stderr
    state = _inspect(name)
    written = (stdout.written, stderr.written)
    if stopped_for is None and not _started(state):
        last = [line for line in stderr.tail.decode("utf-8", "replace").splitlines() if line.strip()]
        detail = last[-1].strip() if last else f"podman exited with status {process.returncode}"
        return RunOutcome(RunVerdict.LAUNCH_FAILED, None, duration, f"the container did not start: {detail}", *written)
    returncode = _as_signal_code(process.returncode)
    reported = bool(state.get("OOMKilled")) or conmon_oom_file.exists()
    witnessed = returncode == -signal.SIGKILL and witness.hit_limit(limits.memory_bytes)
    if stopped_for is None and (reported or witnessed):
        stopped_for = RunVerdict.MEMORY_LIMIT
    verdict, message = judge_outcome(returncode, stopped_for, stderr.tail, limits, request.entrypoint)
    return RunOutcome(verdict, returncode, duration, message, *written)


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


def _started(state: Mapping[str, object]) -> bool:
    started_at = str(state.get("StartedAt", ""))
    return bool(started_at) and not started_at.startswith("0001-")


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
