"""A result store that never loses a result: writes go to a local spool while S3 is down."""

from __future__ import annotations

import logging
import mimetypes
import threading
from datetime import timedelta
from pathlib import Path

from gym_raas.results.store import FilesystemResultStore, ResultNotFoundError, ResultStore, StoreUnavailableError

log = logging.getLogger(__name__)

_CONTENT_TYPE_SUFFIX = ".content-type"


class SpoolingResultStore:
    """Wraps a primary store; when it is unreachable, results wait in a spool folder.

    Writes that fail with `StoreUnavailableError` are kept on disk (with their content type) and
    uploaded, oldest key first, by `flush` — call it periodically; it stops at the first failure
    and leaves the rest for the next call. Reads look in the spool first, so a spooled result is
    readable before it is uploaded. `pending_keys` tells callers (job status, metrics) what is
    still waiting.
    """

    def __init__(self, primary: ResultStore, spool_dir: str | Path) -> None:
        self.primary = primary
        self.spool = FilesystemResultStore(spool_dir)
        self._lock = threading.Lock()

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        try:
            self.primary.put_file(key, path, content_type)
        except StoreUnavailableError as error:
            log.warning("result store unreachable, spooling %s: %s", key, error)
            with self._lock:
                self.spool.put_file(key, path, content_type)
                self.spool.put_bytes(key + _CONTENT_TYPE_SUFFIX, content_type.encode(), "text/plain")

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self.primary.put_bytes(key, data, content_type)
        except StoreUnavailableError as error:
            log.warning("result store unreachable, spooling %s: %s", key, error)
            with self._lock:
                self.spool.put_bytes(key, data, content_type)
                self.spool.put_bytes(key + _CONTENT_TYPE_SUFFIX, content_type.encode(), "text/plain")

    def pending_keys(self, prefix: str = "") -> list[str]:
        """Keys written while the primary was down and not uploaded yet."""
        return [key for key in self.spool.list_keys(prefix) if not key.endswith(_CONTENT_TYPE_SUFFIX)]

    def flush(self) -> int:
        """Upload spooled results; returns how many are still pending afterwards."""
        with self._lock:
            for key in self.pending_keys():
                path = self.spool.path_of(key)
                type_path = self.spool.path_of(key + _CONTENT_TYPE_SUFFIX)
                content_type = (
                    type_path.read_text()
                    if type_path.exists()
                    else mimetypes.guess_type(key)[0] or "application/octet-stream"
                )
                try:
                    self.primary.put_file(key, path, content_type)
                except StoreUnavailableError:
                    break
                path.unlink()
                type_path.unlink(missing_ok=True)
                log.info("uploaded spooled result %s", key)
        return len(self.pending_keys())

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.spool.get_bytes(key)
        except ResultNotFoundError:
            return self.primary.get_bytes(key)

    def exists(self, key: str) -> bool:
        return self.spool.exists(key) or self.primary.exists(key)

    def list_keys(self, prefix: str) -> list[str]:
        spooled = set(self.pending_keys(prefix))
        try:
            stored = set(self.primary.list_keys(prefix))
        except StoreUnavailableError:
            stored = set()
        return sorted(spooled | stored)

    def delete(self, key: str) -> None:
        """Remove the object from the spool and the primary (raises if the primary is down)."""
        with self._lock:
            self.spool.delete(key)
            self.spool.delete(key + _CONTENT_TYPE_SUFFIX)
        self.primary.delete(key)

    def download_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        if self.spool.exists(key):
            return self.spool.download_url(key, expires)
        return self.primary.download_url(key, expires)
