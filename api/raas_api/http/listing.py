"""A page of ``GET /api/v1/jobs`` as the bytes it is sent as, each job rendered once.

A listed job is a `schemas.JobView` serialised to JSON; building and serialising one (pydantic,
its whole phase history) cost most of a page. A job's view is a function of its stored record
(same id and version: same spec and status) and of the steps it has run, so `ViewCache` keeps the
rendered JSON under ``(id, version, steps)``: a finished job is rendered the first time it is
listed, a running one again only when it has moved on. The page is then these parts joined, the
same bytes ``JobList(...).model_dump_json()`` gives.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from raas_api.http.views import steps_now, view_at
from raas_api.lru import Lru
from raas_api.platform import Platform
from raas_api.stores.base import JobRecord

ViewKey = tuple[str, str, int | None]
"""(job id, version as text, steps run)."""


class ViewCache:
    """Rendered job views (JSON bytes), the `size` most recently listed (thread-safe)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._views: Lru[ViewKey, bytes] = Lru(size)
        self._lock = threading.Lock()

    def rendered(self, record: JobRecord, platform: Platform) -> bytes:
        """`record`'s view as JSON, rendered now unless it was at this version and step count."""
        steps = steps_now(record, platform)
        key = (record.job_id, str(record.version), steps)
        with self._lock:
            cached = self._views.lookup(key)
        if cached is not None:
            return cached
        view = view_at(record, steps).model_dump_json().encode()
        with self._lock:
            self._views.keep(key, view)
        return view

    def __len__(self) -> int:
        return len(self._views)


def render_page(records: Sequence[JobRecord], next_cursor: str | None, platform: Platform, views: ViewCache) -> bytes:
    """The body of a page of jobs: ``{"jobs":[...],"next_cursor":...}`` (a `schemas.JobList`)."""
    jobs = b",".join(views.rendered(record, platform) for record in records)
    return b'{"jobs":[' + jobs + b'],"next_cursor":' + json.dumps(next_cursor).encode() + b"}"
