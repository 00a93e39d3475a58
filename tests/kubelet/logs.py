"""Container logs as a kubelet keeps them: one file per container, one entry per line, in the CRI
log format (``<RFC 3339 nano time> <stdout|stderr> <F|P> <text>``; ``P`` marks a partial line,
one written without its newline yet).

`ContainerLog` is the writer the runtime feeds from the container's stdout and stderr (two
threads may write at once); `read_log` gives the log back as ``GET /containerLogs`` serves it —
plain text (what the container wrote, streams interleaved), with ``timestamps``, the last
``tail_lines`` lines, ``since`` a time, cut at ``limit_bytes``; `LogFollower` reads new entries
as they are written (``follow=true``).
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass
from pathlib import Path


def _stamp() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}000Z"


class ContainerLog:
    """Appends a container's output to `path` in the CRI format; safe for one writer per stream."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pending: dict[str, bytes] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def write(self, stream: str, data: bytes) -> None:
        """Record `data` that the container wrote to `stream` (``stdout`` or ``stderr``)."""
        buffered = self._pending.pop(stream, b"") + data
        *lines, rest = buffered.split(b"\n")
        if rest:
            self._pending[stream] = rest
        if lines:
            self._append([(stream, "F", line) for line in lines])

    def close(self) -> None:
        """Write what is left of unterminated lines (as partial entries)."""
        pending, self._pending = self._pending, {}
        self._append([(stream, "P", rest) for stream, rest in pending.items()])

    def _append(self, entries: list[tuple[str, str, bytes]]) -> None:
        if not entries:
            return
        stamp = _stamp().encode()
        text = b"".join(
            b"%s %s %s %s\n" % (stamp, stream.encode(), tag.encode(), line) for stream, tag, line in entries
        )
        with self._lock, self.path.open("ab") as sink:
            sink.write(text)


@dataclass(frozen=True)
class Entry:
    """One line of a container's output (``partial``: without its newline)."""

    time: str
    stream: str
    partial: bool
    text: bytes

    def render(self, timestamps: bool) -> bytes:
        line = self.text if self.partial else self.text + b"\n"
        return (self.time.encode() + b" " + line) if timestamps else line


def parse(data: bytes) -> list[Entry]:
    """The entries of a log file's complete lines."""
    entries = []
    for line in data.split(b"\n"):
        parts = line.split(b" ", 3)
        if len(parts) == 4:
            entries.append(Entry(parts[0].decode(), parts[1].decode(), parts[2] == b"P", parts[3]))
    return entries


def since_ok(entry: Entry, since: str | None) -> bool:
    return since is None or _parse_time(entry.time) >= _parse_time(since)


def _parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 time (nanoseconds cut to microseconds)."""
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, tail = text.split(".", 1)
        digits = "".join(char for char in tail if char.isdigit())
        zone = tail[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.datetime.fromisoformat(text)


def read_log(
    path: Path,
    *,
    timestamps: bool = False,
    tail_lines: int | None = None,
    limit_bytes: int | None = None,
    since: str | None = None,
) -> bytes:
    """The log at `path` as the kubelet API serves it (see the module docstring)."""
    entries = [entry for entry in parse(path.read_bytes()) if since_ok(entry, since)] if path.exists() else []
    if tail_lines is not None:
        entries = entries[-tail_lines:] if tail_lines > 0 else []
    data = b"".join(entry.render(timestamps) for entry in entries)
    return data if limit_bytes is None else data[:limit_bytes]


def read_text(path: Path) -> str:
    """What the container wrote, as text (for termination messages and tests)."""
    return read_log(path).decode(errors="replace")


class LogFollower:
    """Reads the entries appended to a log file since the last call (complete lines only)."""

    def __init__(self, path: Path, since: str | None = None) -> None:
        self.path = path
        self.since = since
        self._offset = 0

    def skip_to(self, offset: int) -> None:
        self._offset = offset

    def new_entries(self) -> list[Entry]:
        try:
            with self.path.open("rb") as source:
                source.seek(self._offset)
                data = source.read()
        except FileNotFoundError:
            return []
        complete = data.rfind(b"\n") + 1
        self._offset += complete
        return [entry for entry in parse(data[:complete]) if since_ok(entry, self.since)]
