"""Admission of connections to a session server: every new connection's first frame, read at once.

A session server that reads each connection's hello in turn can be held up by one peer that
connects and sends nothing, or drips a byte at a time: the next client waits behind it. The
`HelloGate` instead accepts connections as they come and reads their first frames side by side
(one selector, non-blocking sockets), so a slow or silent peer never delays anyone else.

Spec sheet
----------
* **Total deadline**: a connection has ``deadline_s`` (3 s) from its accept to deliver its whole
  first frame, however the bytes trickle in; then it is given up (``timeout``).
* **Bounded waiting room**: at most ``max_pending`` (32) connections wait for their first frame.
  A new one beyond that evicts the one that has waited longest (``evicted``): a real client sends
  its hello as soon as it connects, so its wait is short, and a flood of idle connections only
  ever evicts its own kind. Running out of file descriptors evicts the same way.
* **Small first frames**: a first frame announced longer than ``max_frame_bytes`` (4 KiB) is
  refused unread (``too-large``).
* **Exact reads**: the gate reads exactly the frame's bytes, never beyond, so what the peer sends
  after its hello is still in the socket for the session server.
* **Hand-over**: `poll` returns `FirstFrame`s; each transfers its connection (blocking again)
  to the caller, who answers and closes it.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field

DEFAULT_DEADLINE_S = 3.0
DEFAULT_MAX_PENDING = 32
DEFAULT_MAX_FRAME_BYTES = 4096
_HEADER = struct.Struct(">I")


@dataclass(frozen=True)
class FirstFrame:
    """A connection out of the waiting room: with its first frame, or with why it has none."""

    connection: socket.socket
    payload: bytes | None
    problem: str = ""
    """Empty with a payload; else ``closed`` (the peer left before a whole frame), ``timeout``,
    ``too-large`` or ``evicted``."""
    detail: str = ""
    """One sentence on the problem, for the peer."""


@dataclass
class _Waiting:
    connection: socket.socket
    deadline: float
    received: bytearray = field(default_factory=bytearray)
    length: int | None = None
    """The announced payload length once the header is complete."""


class HelloGate:
    """Reads the first frame of every connection accepted on `listener` (see the module doc)."""

    def __init__(
        self,
        listener: socket.socket,
        *,
        deadline_s: float = DEFAULT_DEADLINE_S,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.listener = listener
        self.deadline_s = deadline_s
        self.max_pending = max_pending
        self.max_frame_bytes = max_frame_bytes
        self._waiting: OrderedDict[int, _Waiting] = OrderedDict()
        """By file descriptor, oldest first."""
        self._selector = selectors.DefaultSelector()
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ)

    @property
    def pending(self) -> int:
        """Connections waiting for their first frame now."""
        return len(self._waiting)

    def poll(self, timeout_s: float) -> list[FirstFrame]:
        """Wait up to `timeout_s` for activity; the connections that left the waiting room."""
        done: list[FirstFrame] = []
        now = time.monotonic()
        if self._waiting:
            earliest = next(iter(self._waiting.values())).deadline  # deadlines grow with arrival
            timeout_s = max(0.0, min(timeout_s, earliest - now))
        for key, _ in self._selector.select(timeout_s):
            if key.fileobj is self.listener:
                done.extend(self._accept())
            elif (waiting := self._waiting.get(key.fd)) is not None:
                done.extend(self._read(waiting))
        now = time.monotonic()
        for waiting in [item for item in self._waiting.values() if item.deadline <= now]:
            done.append(
                self._leave(waiting, None, "timeout", f"no complete hello within {self.deadline_s:g} s of connecting")
            )
        return done

    def close(self) -> None:
        """Close every waiting connection (the listener stays the caller's)."""
        for waiting in list(self._waiting.values()):
            self._leave(waiting, None, "closed").connection.close()
        self._selector.close()

    def _accept(self) -> list[FirstFrame]:
        try:
            connection, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:  # out of file descriptors: give up the longest wait to make room
            if not self._waiting:
                raise
            oldest = next(iter(self._waiting.values()))
            return [self._leave(oldest, None, "evicted", "too many connections are waiting to say hello")]
        connection.setblocking(False)
        done = []
        if len(self._waiting) >= self.max_pending:
            oldest = next(iter(self._waiting.values()))
            done.append(self._leave(oldest, None, "evicted", "too many connections are waiting to say hello"))
        waiting = _Waiting(connection, time.monotonic() + self.deadline_s)
        self._waiting[connection.fileno()] = waiting
        self._selector.register(connection, selectors.EVENT_READ)
        return done + self._read(waiting)  # a real client's hello is usually there already

    def _read(self, waiting: _Waiting) -> list[FirstFrame]:
        while True:
            wanted = (_HEADER.size if waiting.length is None else _HEADER.size + waiting.length) - len(waiting.received)
            try:
                chunk = waiting.connection.recv(wanted)
            except (BlockingIOError, InterruptedError):
                return []
            except OSError as error:
                return [self._leave(waiting, None, "closed", f"connection failed: {error}")]
            if not chunk:
                return [self._leave(waiting, None, "closed", "the connection closed before a whole hello")]
            waiting.received += chunk
            if waiting.length is None and len(waiting.received) == _HEADER.size:
                (waiting.length,) = _HEADER.unpack(waiting.received)
                if waiting.length > self.max_frame_bytes:
                    detail = f"a hello of {waiting.length} bytes exceeds the {self.max_frame_bytes}-byte limit"
                    return [self._leave(waiting, None, "too-large", detail)]
            if waiting.length is not None and len(waiting.received) == _HEADER.size + waiting.length:
                return [self._leave(waiting, bytes(waiting.received[_HEADER.size :]))]

    def _leave(self, waiting: _Waiting, payload: bytes | None, problem: str = "", detail: str = "") -> FirstFrame:
        self._waiting.pop(waiting.connection.fileno(), None)
        self._selector.unregister(waiting.connection)
        waiting.connection.setblocking(True)
        return FirstFrame(waiting.connection, payload, problem, detail)
