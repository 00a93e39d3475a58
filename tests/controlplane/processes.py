"""Server processes a test run starts and must never leave behind (the control plane's, a real
kubelet's and its containerd's).

`die_with_parent` runs in each child before exec: the kernel SIGKILLs it when the test run's
process dies, however it dies. `ServerProcess` is one such child with its log file: `tail` for
failure messages, `stop` for a graceful end (SIGTERM, then SIGKILL after its timeout).
`stop_at_exit` registers an owner of such processes whose `stop` must run when the interpreter
exits normally (a test that failed halfway never ran its clean-up).
"""

from __future__ import annotations

import atexit
import ctypes
import signal
import subprocess
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


def die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test run's process dies, however it dies.

    Not SIGTERM: every server would get it at once; etcd goes first, and an API server whose etcd
    is gone sat in its graceful shutdown for minutes."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclass
class ServerProcess:
    """A started server: its name, its process and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_timeout_s: float = 15.0
    tail_lines: int = 15

    def tail(self) -> str:
        """The last `tail_lines` lines of its log (for failure messages)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-self.tail_lines :])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `stop_timeout_s`; waits for its end."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Stoppable(Protocol):
    def stop(self) -> None: ...


_LIVE: weakref.WeakSet[Stoppable] = weakref.WeakSet()  # type: ignore[type-var]


def stop_at_exit(owner: Stoppable) -> None:
    """Call `owner.stop()` when the interpreter exits, unless `forget` was called first."""
    _LIVE.add(owner)


def forget(owner: Stoppable) -> None:
    """`owner` stopped by itself: nothing to do for it at exit."""
    _LIVE.discard(owner)


@atexit.register
def _stop_all() -> None:
    for owner in list(_LIVE):
        owner.stop()
