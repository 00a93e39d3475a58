"""Leasing an unprivileged uid per run, a different one each time, and killing what a run left.

A run's uid is what its process limit counts and what the end-of-run sweep kills: two runs
sharing a uid would share a process budget and kill each other, and a run could read what an
earlier run of the same uid left behind. So:

* Leases are ``flock``s on one file per uid in a private folder (`lock_folder`: root-owned,
  mode 0700, checked), so they hold across every process on the machine (several platforms,
  several agents) and vanish with a crashed holder.
* Each lease takes the free uid that was leased least recently (the lock file's modification
  time is the last lease; never leased comes first), so consecutive runs rotate through the
  pool instead of all running as its first uid.
* `reap_sandbox_leftovers` kills every process of a pool uid that no live run holds (e.g. left
  by a runner that was killed); `kill_processes_of` is the sweep for one uid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

FIRST_SANDBOX_UID = 61000
SANDBOX_UID_COUNT = 1000
ROOT_LOCK_FOLDER = Path("/run/raas-sandbox-uids")
_SWEEP_ROUNDS = 50


class NoSandboxUidError(RuntimeError):
    """Every uid of the pool is leased."""


def lock_folder() -> Path:
    """The folder of lease files: ``/run/raas-sandbox-uids`` as root, else under the temp folder.

    Refuses a folder this process did not make private (another user's, a symlink, group or
    other access): its lock files are opened for writing.
    """
    user = os.geteuid()
    folder = ROOT_LOCK_FOLDER if user == 0 else Path(tempfile.gettempdir()) / f"raas-sandbox-uids-{user}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    facts = folder.lstat()
    if not stat.S_ISDIR(facts.st_mode) or facts.st_uid != user or stat.S_IMODE(facts.st_mode) & 0o077:
        raise RuntimeError(f"{folder} is not a private folder of uid {user}: remove it and try again")
    return folder


@contextlib.contextmanager
def lease_sandbox_uid(first: int = FIRST_SANDBOX_UID, count: int = SANDBOX_UID_COUNT) -> Iterator[int]:
    """Hold a uid from ``first .. first+count-1`` that no other run holds, until the block ends.

    Of the free uids, the one leased least recently.
    """
    folder = lock_folder()
    order, newest = _least_recently_leased_first(folder, first, count)
    for uid in order:
        descriptor = _try_lock(folder, uid)
        if descriptor is None:
            continue
        try:
            # The most recent lease from now on: an explicit stamp, as the file system's own clock
            # ticks too coarsely to order leases taken a few milliseconds apart.
            stamp = max(time.time_ns(), newest + 1)
            os.utime(descriptor, ns=(stamp, stamp))
            yield uid
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)
        return
    raise NoSandboxUidError(f"all {count} sandbox uids from {first} are in use")


def _least_recently_leased_first(folder: Path, first: int, count: int) -> tuple[list[int], int]:
    """The pool's uids, least recently leased first, and the newest lease's stamp."""
    last_lease: dict[int, int] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.isdigit() and first <= int(entry.name) < first + count:
                with contextlib.suppress(OSError):
                    last_lease[int(entry.name)] = entry.stat(follow_symlinks=False).st_mtime_ns
    order = sorted(range(first, first + count), key=lambda uid: (last_lease.get(uid, -1), uid))
    return order, max(last_lease.values(), default=0)


def _try_lock(folder: Path, uid: int) -> int | None:
    """An open, exclusively locked descriptor of `uid`'s lock file, or None when a run holds it."""
    descriptor = os.open(folder / str(uid), os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def reap_sandbox_leftovers(first: int = FIRST_SANDBOX_UID, count: int = SANDBOX_UID_COUNT) -> int:
    """Kill (SIGKILL) every process of a pool uid that no live run leases; returns how many.

    For a platform starting up: a runner killed before its end-of-run sweep leaves the uid
    unleased (its lock died with it) but its processes may still run.
    """
    owners = {uid for uid in _process_owners() if first <= uid < first + count}
    if not owners:
        return 0
    folder = lock_folder()
    killed = 0
    for uid in sorted(owners):
        descriptor = _try_lock(folder, uid)
        if descriptor is None:
            continue  # a live run holds it: those are its processes
        try:
            killed += kill_processes_of(uid)
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)
    return killed


def kill_processes_of(uid: int, signum: signal.Signals = signal.SIGKILL) -> int:
    """Send `signum` to every live process whose real, effective or saved uid is `uid`; returns how many.

    Repeats until none is left (a process may fork while being swept), at most a few dozen rounds.
    """
    signalled: set[int] = set()
    for _ in range(_SWEEP_ROUNDS):
        found = [pid for pid, uids in _processes() if uid in uids and pid != os.getpid()]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
                signalled.add(pid)
        if signum != signal.SIGKILL:
            break
        time.sleep(0.01)  # let the killed exit before looking again
    return len(signalled)


def _process_owners() -> set[int]:
    return {uid for _, uids in _processes() for uid in uids}


def _processes() -> Iterator[tuple[int, tuple[int, ...]]]:
    """(pid, (real, effective, saved uid)) of every process that is not a zombie."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry.name}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith(("Z", "X")):
            continue
        uids = fields.get("Uid", "").split()
        if len(uids) >= 3:
            yield int(entry.name), (int(uids[0]), int(uids[1]), int(uids[2]))
