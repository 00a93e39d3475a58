"""Leasing an unprivileged uid per run, so that concurrent runs never share one.

A run's uid is what its process limit counts and what the end-of-run sweep kills (``kill(-1)``
as that uid): two runs sharing a uid would share a process budget and kill each other. Leases
are ``flock``s on one file per uid in a root-only folder, so they hold across every process
on the machine (several platforms, several agents) and vanish with a crashed holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

FIRST_SANDBOX_UID = 61000
SANDBOX_UID_COUNT = 1000


class NoSandboxUidError(RuntimeError):
    """Every uid of the pool is leased."""


def _lock_dir() -> Path:
    folder = Path(tempfile.gettempdir()) / "raas-sandbox-uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


@contextlib.contextmanager
def lease_sandbox_uid(first: int = FIRST_SANDBOX_UID, count: int = SANDBOX_UID_COUNT) -> Iterator[int]:
    """Hold a uid from ``first .. first+count-1`` that no other run holds, until the block ends."""
    folder = _lock_dir()
    for uid in range(first, first + count):
        descriptor = os.open(folder / str(uid), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        try:
            yield uid
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)
        return
    raise NoSandboxUidError(f"all {count} sandbox uids from {first} are in use")
