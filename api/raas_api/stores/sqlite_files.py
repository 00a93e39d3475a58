"""Opening the local platform's SQLite files (``jobs.db``, ``tokens.db``) with a check first.

A damaged file must stop the server at start with one sentence naming the file and what to do,
never a traceback later (with ``jobs.db`` damaged, the server used to print its address and a
fresh admin token, then die).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


class DamagedStoreError(RuntimeError):
    """A store file SQLite cannot read; the message names the file and what to do."""


def open_checked(path: Path, what: str) -> sqlite3.Connection:
    """A WAL-mode connection to `path` (created if missing), after SQLite's quick integrity check.

    `what` says what the file holds ("the jobs", "the API tokens") for the error message.
    Raises `DamagedStoreError` when the file is not a readable, intact SQLite database.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        verdict = connection.execute("PRAGMA quick_check").fetchone()
        if verdict is None or verdict[0] != "ok":
            raise sqlite3.DatabaseError(verdict[0] if verdict else "no answer to an integrity check")
        connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as error:
        connection.close()
        raise DamagedStoreError(
            f"{path} ({what}) is damaged and cannot be read ({error}): move it aside, or restore it from a"
            " backup, and start again (a new empty file is made in its place)"
        ) from None
    return connection
