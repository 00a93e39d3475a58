"""The bubblewrap sandbox of the process isolation level: the command that runs a job inside it.

`sandbox_command` wraps a command (the job's ``python -s -u <entrypoint>``, or a probe) in
``bwrap``. Inside, the job sees:

* the host's root file system read-only (``--ro-bind / /``), except
* ``/tmp``: its scratch, a private tmpfs of `SandboxSpec.scratch_bytes` (mode 1777). The code is
  copied to `SANDBOX_WORKDIR` (``/tmp/work``, the working folder); ``/tmp`` is also HOME and
  TMPDIR. Writing more than the tmpfs holds fails with ENOSPC; nothing of it reaches the host's
  disk, and it vanishes with the sandbox's mount namespace when the run ends;
* ``/var/tmp`` and ``/dev/shm``: private tmpfs of `small_tmpfs_bytes` each;
* ``/run``: a private tmpfs (0755, root) holding only `SANDBOX_RUN_ROOT`: the code read-only
  (`SANDBOX_CODE`), each `SandboxSpec.python_path` folder read-only (``/run/raas/path/<n>``) and
  the robot agent's socket, exactly that one (`SANDBOX_AGENT_SOCKET`);
* an empty read-only tmpfs over each `SandboxSpec.hidden_paths` folder (the platform's data);
* a fresh ``/dev`` (null, zero, random, ...) and a ``/proc`` of its own pid namespace;
* its own network namespace (``--unshare-net``: only a loopback of its own, so no TCP/UDP to
  the host or beyond, no abstract Unix sockets of the host), pid namespace (``--unshare-pid``:
  it sees only its own processes; when the namespace's pid 1 dies the kernel kills the rest),
  IPC, UTS and (where possible) cgroup namespaces;
* ``--die-with-parent``: when the launcher dies (even ``kill -9``), bwrap is killed, and with it
  pid 1 of the namespace, and with that every process of the job.

As root (`SandboxSpec.uid` set), bwrap runs a short bash step as root inside the sandbox with only
the capabilities it needs (``CAP_SETUID``, ``CAP_SETGID``, ``CAP_CHOWN``, ``CAP_DAC_OVERRIDE``):
it copies the code into the tmpfs, gives it to the uid, reports on `started_fd` that the sandbox
is up, and execs ``setpriv`` to become the uid (and same-numbered gid) with no groups, no
capabilities (inheritable, bounding) and ``no_new_privs`` (setuid programs do nothing); a plain
``sh`` then execs the command with the uid's own rights (setpriv's exec would still use root's
capabilities to reach it). Without
`SandboxSpec.uid` (an unprivileged launcher) bwrap makes a user namespace and the job keeps the
launcher's own uid; the step only copies the code.

Not covered: the job can read whatever the host's permissions let any user read (only the
paths above are hidden), and a job can create user namespaces of its own where the kernel allows
them (its network, mounts and processes stay inside this sandbox).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SANDBOX_SCRATCH = "/tmp"
SANDBOX_WORKDIR = f"{SANDBOX_SCRATCH}/work"
SANDBOX_RUN_ROOT = "/run/raas"
SANDBOX_CODE = f"{SANDBOX_RUN_ROOT}/code"
SANDBOX_AGENT_SOCKET = f"{SANDBOX_RUN_ROOT}/agent.sock"
SANDBOX_PYTHON_PATH_ROOT = f"{SANDBOX_RUN_ROOT}/path"
STARTED_MARK = b"started"
"""What the setup step writes on `started_fd` just before the job's command starts."""
SMALL_TMPFS_MAX_BYTES = 64 * 1024**2
PRIVATE_MOUNTS = (Path(SANDBOX_SCRATCH), Path("/var/tmp"), Path("/dev/shm"), Path("/run"))
"""The sandbox's own tmpfs mounts, which hide the host's folders of the same name."""
_TOOLS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_ROOT_STEP_CAPABILITIES = ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE")


class SandboxToolMissingError(RuntimeError):
    """bwrap, setpriv or a shell tool is not installed."""


@dataclass(frozen=True)
class SandboxSpec:
    """One sandbox: who runs in it, how much scratch it has and what host paths it sees."""

    uid: int | None
    """Unprivileged uid (and gid) the command runs as (the launcher must be root); None: the
    launcher's own uid, in an unprivileged user namespace."""
    scratch_bytes: int
    code_dir: Path | None = None
    """Host folder copied into `SANDBOX_WORKDIR` before the command starts; None: no code."""
    agent_socket: Path | None = None
    """Host Unix socket mounted at `SANDBOX_AGENT_SOCKET`."""
    python_path: Sequence[Path] = ()
    """Host folders mounted read-only at `sandbox_python_path` (same order)."""
    hidden_paths: Sequence[Path] = ()
    """Host folders covered by an empty read-only tmpfs."""
    runtime_paths: Sequence[Path] = ()
    """Host folders the command needs at their own paths (the interpreter's environment, see
    `interpreter_paths`): where one lies behind a folder other users cannot traverse (a checkout
    in ``/root``), that folder is covered by an empty tmpfs and each path bound read-only into
    it, so the uid reaches exactly these and nothing else of the closed folder."""

    @property
    def small_tmpfs_bytes(self) -> int:
        """Size of ``/var/tmp`` and ``/dev/shm``."""
        return min(self.scratch_bytes, SMALL_TMPFS_MAX_BYTES)

    @property
    def sandbox_python_path(self) -> list[str]:
        """Where the `python_path` folders are inside the sandbox."""
        return [f"{SANDBOX_PYTHON_PATH_ROOT}/{index}" for index in range(len(self.python_path))]


def sandbox_command(spec: SandboxSpec, command: Sequence[str], started_fd: int) -> list[str]:
    """The whole ``bwrap ... -- bash -c <setup> ...`` command line that runs `command` in the sandbox.

    `started_fd` is an inherited pipe the setup step writes `STARTED_MARK` to (and closes) just
    before it execs `command`: a run whose pipe stayed silent never got past the sandbox's setup.
    Raises `SandboxToolMissingError` when a tool is not installed.
    """
    bwrap, bash = _tool("bwrap"), _tool("bash")
    return [*bwrap_options(spec, bwrap), "--", bash, "-c", _setup_script(spec, started_fd), "raas-sandbox", *command]


def bwrap_options(spec: SandboxSpec, bwrap: str = "bwrap") -> list[str]:
    """The bwrap program and its options (mounts, namespaces, capabilities), without the command."""
    small = str(spec.small_tmpfs_bytes)
    options = [
        bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--size", str(spec.scratch_bytes), "--perms", "1777", "--tmpfs", SANDBOX_SCRATCH,
        "--size", small, "--perms", "1777", "--tmpfs", "/var/tmp",
        "--size", small, "--perms", "1777", "--tmpfs", "/dev/shm",
        "--perms", "0755", "--tmpfs", "/run", "--perms", "0755", "--dir", SANDBOX_RUN_ROOT,
    ]  # fmt: skip
    options += reopened_paths(spec.runtime_paths)
    for folder in spec.hidden_paths:
        options += ["--perms", "0755", "--tmpfs", str(folder), "--remount-ro", str(folder)]
    if spec.code_dir is not None:
        options += ["--ro-bind", str(spec.code_dir), SANDBOX_CODE]
    if spec.python_path:  # bwrap would make the folder 0700
        options += ["--perms", "0755", "--dir", SANDBOX_PYTHON_PATH_ROOT]
    for folder, target in zip(spec.python_path, spec.sandbox_python_path, strict=True):
        options += ["--ro-bind", str(folder), target]
    if spec.agent_socket is not None:
        options += ["--ro-bind", str(spec.agent_socket), SANDBOX_AGENT_SOCKET]
    # No --new-session: the launcher starts bwrap in a session of its own without a terminal
    # (nothing to inject keystrokes into), and the sandbox stays in bwrap's process group.
    options += [
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", "raas-job", "--die-with-parent", "--chdir", "/",
    ]  # fmt: skip
    if spec.uid is not None:
        for capability in _ROOT_STEP_CAPABILITIES:
            options += ["--cap-add", capability]
    return options


def reopened_paths(paths: Sequence[Path]) -> list[str]:
    """bwrap options that make `paths` reachable behind folders other users cannot traverse, and
    inside the sandbox's own private mounts (a checkout under ``/tmp``).

    Each topmost closed folder above a path is covered by an empty tmpfs (0755, root), and every
    path below it or below a private mount is bound read-only at its own place (the folders
    between made 0755); paths others can already reach need nothing.
    """
    behind: dict[Path, set[Path]] = {}
    for path in paths:
        private = next((mount for mount in PRIVATE_MOUNTS if mount in path.parents), None)
        cover = private or _closed_ancestor(path)
        if cover is not None and path.exists():
            behind.setdefault(cover, set()).add(path)
    options: list[str] = []
    for closed, inside in sorted(behind.items()):
        if closed not in PRIVATE_MOUNTS:  # those are the sandbox's own tmpfs already
            options += ["--perms", "0755", "--tmpfs", str(closed)]
        made: set[Path] = set()
        bound: list[Path] = []
        for path in sorted(inside):  # a folder before what is inside it
            if any(path == folder or folder in path.parents for folder in bound):
                continue  # visible already through the bind of a folder above it
            bound.append(path)
            between = [folder for folder in reversed(path.parents) if closed in folder.parents]
            for folder in between:  # bwrap would make them 0700: closed to the uid again
                if folder not in made:
                    made.add(folder)
                    options += ["--perms", "0755", "--dir", str(folder)]
            options += ["--ro-bind", str(path), str(path)]
    return options


def _closed_ancestor(path: Path) -> Path | None:
    """The topmost folder above `path` that other users cannot traverse, if any."""
    for folder in reversed(path.parents):
        if folder != folder.parent and not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder
    return None


@functools.lru_cache(maxsize=8)
def interpreter_paths(python_executable: str, modules: tuple[str, ...] = ()) -> tuple[Path, ...]:
    """The folders `python_executable` runs from: its own, its prefix, ``sys.path`` and `modules`' folders.

    Asked of the interpreter itself (as the launcher, outside any sandbox); empty when it cannot
    say, so that the sandbox's own check reports the interpreter as unusable.
    """
    program = (
        "import importlib, json, os, sys\n"
        f"modules = [importlib.import_module(name) for name in {list(modules)!r}]\n"
        "found = [sys.prefix, *sys.path, *(os.path.dirname(m.__file__) for m in modules if m.__file__)]\n"
        "print(json.dumps([os.path.realpath(p) for p in found if p and os.path.isdir(p)]))"
    )
    try:
        completed = subprocess.run(
            [python_executable, "-s", "-c", program], capture_output=True, timeout=60, check=True, cwd="/"
        )
        found = json.loads(completed.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return ()
    return tuple(dict.fromkeys([*_link_folders(python_executable), *(Path(path) for path in found)]))


def _link_folders(program: str) -> list[Path]:
    """The folders of `program` and of every link on the way to the file it names (a venv's
    ``bin/python`` links to the base interpreter; a link to it may live elsewhere again)."""
    path, folders = Path(os.path.abspath(program)), []
    for _ in range(40):  # the kernel's own limit on links followed
        folders.append(path.parent)
        if not path.is_symlink():
            break
        path = Path(os.path.normpath(path.parent / os.readlink(path)))
    return folders


def _setup_script(spec: SandboxSpec, started_fd: int) -> str:
    """bash run first inside the sandbox: copy the code, signal `started_fd`, exec the command ("$@")."""
    steps = ["set -e"]
    if spec.code_dir is not None:
        steps += [
            f"{_tool('mkdir')} {SANDBOX_WORKDIR}",
            f"{_tool('cp')} -R {SANDBOX_CODE}/. {SANDBOX_WORKDIR}",
        ]
        if spec.uid is not None:
            steps.append(f"{_tool('chown')} -R -h {spec.uid}:{spec.uid} {SANDBOX_WORKDIR}")
        steps.append(f"cd {SANDBOX_WORKDIR}")
    steps += [f"printf {STARTED_MARK.decode()} >&{started_fd}", f"exec {started_fd}>&-"]
    if spec.uid is None:
        steps.append('exec "$@"')
    else:
        setpriv = [
            _tool("setpriv"), f"--reuid={spec.uid}", f"--regid={spec.uid}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
        ]  # fmt: skip
        # setpriv still holds its capabilities when it execs: a capability-free shell execs the
        # command, so that the uid's own rights decide whether it can be reached at all.
        trampoline = [_tool("sh"), "-c", 'exec "$@"', "raas-job"]
        steps.append(f'exec {shlex.join([*setpriv, *trampoline])} "$@"')
    return "\n".join(steps)


def _tool(name: str) -> str:
    found = shutil.which(name, path=_TOOLS_PATH)
    if found is None:
        package = {"bwrap": "bubblewrap", "setpriv": "util-linux"}.get(name, "coreutils")
        raise SandboxToolMissingError(
            f"{name} is not installed: install {package} (scripts/install-system-deps), or use --isolation container"
        )
    return found


class StartedPipe:
    """The pipe on which the sandbox's setup step says that the command is starting."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self._write_open = True

    def parent_side(self) -> None:
        """Close the write end in the launcher (call once the child has it); closes it only once.

        (Closing a descriptor twice would close whatever another thread opened under its number.)
        """
        if self._write_open:
            self._write_open = False
            os.close(self.write_fd)

    def started(self) -> bool:
        """Whether the setup step reported the start (read once the sandbox has ended); closes the pipe."""
        self.parent_side()
        try:
            return os.read(self.read_fd, 64).startswith(STARTED_MARK)
        except OSError:
            return False
        finally:
            os.close(self.read_fd)


@dataclass(frozen=True)
class ProbeResult:
    """How a short command ran in a sandbox."""

    started: bool
    """The sandbox came up (otherwise `detail` is bwrap's or the setup step's complaint)."""
    succeeded: bool
    detail: str
    """The last line of its stderr, or its exit status."""


def probe(
    spec: SandboxSpec, command: Sequence[str], environment: Mapping[str, str], timeout_s: float = 60
) -> ProbeResult:
    """Run `command` in a sandbox of `spec` (e.g. an import check) and say how it went."""
    pipe = StartedPipe()
    try:
        arguments = sandbox_command(spec, command, pipe.write_fd)
    except SandboxToolMissingError:
        pipe.started()
        raise
    try:
        completed = subprocess.run(
            arguments,
            cwd="/",
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            pass_fds=(pipe.write_fd,),
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        pipe.started()
        return ProbeResult(False, False, str(error))
    started = pipe.started()
    lines = [line.strip() for line in completed.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    detail = lines[-1] if lines else f"exit status {completed.returncode}"
    return ProbeResult(started, started and completed.returncode == 0, detail)


def sandboxed_processes(bwrap_pid: int) -> list[int]:
    """The processes running inside the sandbox of the bwrap process `bwrap_pid`.

    Every descendant of bwrap but bwrap and its child, the namespace's pid 1 (orphans inside the
    sandbox are re-parented to that pid 1, so the whole sandbox is among the descendants).
    """
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    inits = children.get(bwrap_pid, [])
    found: list[int] = []
    waiting = [child for init in inits for child in children.get(init, [])]
    while waiting:
        pid = waiting.pop()
        found.append(pid)
        waiting.extend(children.get(pid, []))
    return found
