"""The local platform's result store: a folder by default, or S3/MinIO behind a spool.

With `S3Settings`, results go to the bucket through the minio SDK; while the bucket is
unreachable they wait in ``<data_dir>/spool`` and `SpoolFlusher` uploads them when it returns,
telling the platform which jobs still have results waiting (their status says so meanwhile).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gym_raas.results.layout import RESULTS_ROOT, job_prefix
from gym_raas.results.spool import SpoolingResultStore
from gym_raas.results.store import FilesystemResultStore, ResultStore, S3ResultStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3Settings:
    """Where an S3-compatible store (MinIO in the cluster) keeps result bundles."""

    endpoint: str
    """host:port, without scheme."""
    access_key: str
    secret_key: str
    bucket: str = "raas-results"
    secure: bool = True
    region: str | None = None


def open_result_store(data_dir: Path, s3: S3Settings | None) -> ResultStore:
    """The filesystem store under ``data_dir/results``, or S3 behind a spool in ``data_dir/spool``."""
    if s3 is None:
        return FilesystemResultStore(data_dir / "results")
    primary = S3ResultStore(
        s3.endpoint, s3.access_key, s3.secret_key, s3.bucket, secure=s3.secure, region=s3.region, retries=2
    )
    return SpoolingResultStore(primary, data_dir / "spool")


def pending_results(store: ResultStore, job_id: str) -> int:
    """Result files of `job_id` still waiting in the spool (0 for stores without one)."""
    if not isinstance(store, SpoolingResultStore):
        return 0
    return len(store.pending_keys(job_prefix(job_id)))


def jobs_with_pending_results(store: ResultStore) -> set[str]:
    """Jobs that have results in the spool."""
    if not isinstance(store, SpoolingResultStore):
        return set()
    prefix = f"{RESULTS_ROOT}/"
    return {key.split("/")[2] for key in store.pending_keys(prefix) if key.count("/") >= 3}


class SpoolFlusher:
    """Uploads spooled results every `interval_s` and reports jobs whose results all arrived.

    `on_uploaded(job_id)` is called once for each job that had spooled results and now has none.
    Runs in its own thread so that a slow or unreachable store never holds up dispatching.
    """

    def __init__(self, store: ResultStore, on_uploaded: Callable[[str], None], *, interval_s: float = 2.0) -> None:
        self.store = store
        self.on_uploaded = on_uploaded
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="raas-spool-flusher", daemon=True)

    def start(self) -> SpoolFlusher:
        if isinstance(self.store, SpoolingResultStore):
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def flush_once(self) -> int:
        """One upload round; returns how many files are still waiting."""
        if not isinstance(self.store, SpoolingResultStore):
            return 0
        waiting = jobs_with_pending_results(self.store)
        if not waiting:
            return 0
        remaining = self.store.flush()
        for job_id in waiting - jobs_with_pending_results(self.store):
            try:
                self.on_uploaded(job_id)
            except Exception:
                log.exception("job %s: could not record its uploaded results", job_id)
        return remaining

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.flush_once()
            except Exception:
                log.exception("spool flush failed")
