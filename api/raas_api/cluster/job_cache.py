"""The web API's listings served from a watch-fed cache of the namespace's RaasJobs: `CachedJobStore`.

`KubernetesJobStore.list_jobs` reads every RaasJob of the namespace from the API server and
parses them all for each request (phases and robots live in the status, which label selectors
cannot see): with 10,000 RaasJobs a listing moved ~20 MB and took seconds. `CachedJobStore` does
what a client-go informer does:

* **list, then watch**: one paged list gives the namespace's RaasJobs and a resourceVersion, a
  watch from that version keeps them current (bookmarks move the version on); a watch that ends
  is resumed from the last version seen, and one the server refuses as too old (410 Gone) or that
  fails starts over with a fresh list (after a pause that grows to `MAX_RETRY_PAUSE_S`);
* **indexes**: jobs sorted newest first overall and per owner, and counts per owner and phase,
  so a page of 50 (the API's listing, an owner's listing with phase or robot filters, cursors) and
  the quota counts cost what the page costs, not what the namespace holds;
* **reads of one's own writes**: a job this store creates, or a status it writes, is in the cache
  as soon as the API server answers, before its watch event arrives;
* **fallback**: until the first list has completed (or after `stop`) listings and counts go to
  the API server as before, so an unstarted store behaves exactly like `KubernetesJobStore`.

`get`, `create` and `update_status` always go to the API server (a single object, and the version
check must be the server's). Listings may lag the cluster by the watch's delay (milliseconds):
another replica's or the operator's writes appear when their events arrive.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, cast

import urllib3
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from raas_api.stores.base import JobPage, JobRecord
from raas_api.stores.kubernetes import (
    GROUP,
    PLURAL,
    VERSION,
    KubernetesJobStore,
    decode_cursor,
    encode_cursor,
    job_record,
    listing_order,
)
from raas_operator.jobs.model import JobSpec, JobStatus, Phase

log = logging.getLogger(__name__)

LIST_PAGE = 500
WATCH_TIMEOUT_S = 240
"""The server ends each watch after this long; the cache then resumes from its last version."""
MAX_RETRY_PAUSE_S = 10.0

OrderKey = tuple[str, str]


class _Index:
    """RaasJobs by name, with order keys sorted overall and per owner, and counts per (owner, phase).

    Not thread-safe: `CachedJobStore` holds its lock around every use."""

    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}
        self.ordered: list[OrderKey] = []
        self.by_owner: dict[str, list[OrderKey]] = {}
        self.counts: Counter[tuple[str, Phase]] = Counter()

    def put(self, record: JobRecord) -> None:
        self.remove(record.job_id)
        key = listing_order(record)
        self.records[record.job_id] = record
        bisect.insort(self.ordered, key)
        bisect.insort(self.by_owner.setdefault(record.spec.owner, []), key)
        self.counts[(record.spec.owner, record.status.phase)] += 1

    def remove(self, name: str) -> None:
        old = self.records.pop(name, None)
        if old is None:
            return
        key = listing_order(old)
        _discard(self.ordered, key)
        owned = self.by_owner[old.spec.owner]
        _discard(owned, key)
        if not owned:
            del self.by_owner[old.spec.owner]
        self.counts[(old.spec.owner, old.status.phase)] -= 1
        if self.counts[(old.spec.owner, old.status.phase)] <= 0:
            del self.counts[(old.spec.owner, old.status.phase)]

    def newest_first(self, owner: str | None, cursor: str | None) -> Iterator[JobRecord]:
        keys = self.ordered if owner is None else self.by_owner.get(owner, [])
        end = len(keys) if cursor is None else bisect.bisect_left(keys, decode_cursor(cursor))
        for position in range(end - 1, -1, -1):
            yield self.records[keys[position][1]]


def _discard(keys: list[OrderKey], key: OrderKey) -> None:
    position = bisect.bisect_left(keys, key)
    if position < len(keys) and keys[position] == key:
        del keys[position]


class CachedJobStore:
    """`KubernetesJobStore` with listings and counts served from a watch-fed cache (module docstring)."""

    def __init__(self, store: KubernetesJobStore) -> None:
        self.store = store
        self.namespace = store.namespace
        self._lock = threading.Lock()
        self._index: _Index | None = None
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None

    # -- life cycle ------------------------------------------------------------------------------------

    def start(self, wait_s: float = 30.0) -> bool:
        """Start listing and watching; wait up to `wait_s` for the first list. Whether it is synced."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"raasjob-cache-{self.namespace}", daemon=True)
            self._thread.start()
        return self._synced.wait(wait_s)

    def stop(self) -> None:
        """Stop watching; listings go to the API server again."""
        self._stop.set()
        self._synced.clear()
        with self._lock:
            self._index = None
        response = self._response
        if response is not None:  # unblocks the watch thread's read at once
            response.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def synced(self) -> bool:
        """Whether listings are served from the cache (its first list has completed)."""
        return self._synced.is_set()

    def close(self) -> None:
        self.stop()
        self.store.close()

    # -- the JobStore interface ------------------------------------------------------------------------

    def create(self, spec: JobSpec, status: JobStatus | None = None) -> JobRecord:
        return self._remember(self.store.create(spec, status))

    def get(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def update_status(self, job_id: str, status: JobStatus, expected_version: int | str) -> JobRecord:
        return self._remember(self.store.update_status(job_id, status, expected_version))

    def list_jobs(
        self,
        *,
        owner: str | None = None,
        phases: Sequence[Phase] | None = None,
        robot: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        if cursor is not None:
            decode_cursor(cursor)  # a bad cursor is the caller's ValueError, cached or not
        with self._lock:
            index = self._index
            if index is not None:
                wanted = None if phases is None else set(phases)
                found: list[JobRecord] = []
                for record in index.newest_first(owner, cursor):
                    if wanted is not None and record.status.phase not in wanted:
                        continue
                    if robot is not None and record.status.robot != robot:
                        continue
                    found.append(record)
                    if len(found) > limit:
                        break
                page = found[:limit]
                next_cursor = encode_cursor(listing_order(page[-1])) if len(found) > limit else None
                return JobPage(tuple(page), next_cursor)
        return self.store.list_jobs(owner=owner, phases=phases, robot=robot, limit=limit, cursor=cursor)

    def count_by_owner(self, phases: Sequence[Phase]) -> dict[str, int]:
        with self._lock:
            index = self._index
            if index is not None:
                wanted = set(phases)
                counts: dict[str, int] = {}
                for (owner, phase), count in index.counts.items():
                    if phase in wanted:
                        counts[owner] = counts.get(owner, 0) + count
                return counts
        return self.store.count_by_owner(phases)

    # -- the watch thread ------------------------------------------------------------------------------

    def _remember(self, record: JobRecord) -> JobRecord:
        with self._lock:
            if self._index is not None:
                self._index.put(record)
        return record

    def _run(self) -> None:
        pause = 0.5
        while not self._stop.is_set():
            try:
                version = self._relist()
                pause = 0.5
                while not self._stop.is_set():
                    version = self._watch(version)
            except _ExpiredError:
                log.info("RaasJob watch in %s expired: listing again", self.namespace)
                continue
            except (ApiException, OSError, urllib3.exceptions.HTTPError, ValueError) as error:
                if self._stop.is_set():
                    return
                log.warning("RaasJob cache of %s: %s; listing again in %.1f s", self.namespace, error, pause)
            self._stop.wait(pause)
            pause = min(pause * 2, MAX_RETRY_PAUSE_S)

    def _relist(self) -> str:
        """Every RaasJob of the namespace into a fresh index (swapped in whole); the list's version."""
        index = _Index()
        token: str | None = None
        version = ""
        while True:
            arguments: dict[str, Any] = {"limit": LIST_PAGE}
            if token:
                arguments["_continue"] = token
            listing = cast(
                dict[str, Any],
                self.store.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, **arguments),
            )
            metadata = listing.get("metadata") or {}
            version = version or str(metadata.get("resourceVersion") or "")
            for item in listing.get("items", []):
                self._apply(index, "ADDED", item)
            token = metadata.get("continue")
            if not token:
                break
        with self._lock:
            if not self._stop.is_set():
                self._index = index
                self._synced.set()
        return version

    def _watch(self, version: str) -> str:
        """One watch from `version` until the server ends it; the last version seen."""
        try:
            response: Any = self.store.api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL,
                watch=True, resource_version=version, allow_watch_bookmarks=True,
                timeout_seconds=WATCH_TIMEOUT_S, _preload_content=False, _request_timeout=(10, WATCH_TIMEOUT_S + 30),
            )  # fmt: skip
        except ApiException as error:
            if error.status == 410:
                raise _ExpiredError from None
            raise
        self._response = response
        try:
            for line in _lines(response):
                if self._stop.is_set():
                    break
                event = json.loads(line)
                kind, item = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if item.get("code") == 410:
                        raise _ExpiredError
                    raise ValueError(f"the watch failed: {item.get('message', item)}")
                version = str((item.get("metadata") or {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                with self._lock:
                    if self._index is not None:
                        self._apply(self._index, kind, item)
        finally:
            self._response = None
            response.release_conn()
        return version

    @staticmethod
    def _apply(index: _Index, kind: str | None, item: dict[str, Any]) -> None:
        name = (item.get("metadata") or {}).get("name")
        if not name:
            return
        if kind == "DELETED" or not item.get("spec"):
            index.remove(name)
            return
        try:
            index.put(job_record(item))
        except (ValidationError, ValueError, KeyError) as error:
            index.remove(name)  # the CRD's schema should have refused it; listed by nobody
            log.warning("RaasJob %s cannot be read and is left out of listings: %s", name, error)


class _ExpiredError(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def _lines(response: Any) -> Iterator[bytes]:
    """The newline-separated events of a streaming watch response."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
