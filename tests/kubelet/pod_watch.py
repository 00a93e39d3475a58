"""The pods bound to one node, as a kubelet follows them: list, then watch from the list's
resourceVersion, both with ``fieldSelector=spec.nodeName=<node>`` (the only pod list the Node
authorizer grants a node).

`PodWatch` calls `on_sync` with every pod after each list (so the kubelet notices what it missed)
and `on_event` with each watch event (``ADDED``, ``MODIFIED``, ``DELETED``). A watch that ends
(server timeout, dropped connection) resumes from the last resourceVersion seen (bookmarks
included); a ``410 Gone`` (``Expired``: the version was compacted) relists. Failures go to
`report` and are retried after a second.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client

from kubelet.outage import Reporter

WATCH_TIMEOUT_S = 30
RETRY_S = 1.0

Pod = dict[str, Any]


class GoneError(Exception):
    """The watch's resourceVersion is too old: relist."""


class PodWatch:
    """Follows node `node`'s pods from a daemon thread until `stop` (module docstring)."""

    def __init__(
        self,
        api: client.ApiClient,
        node: str,
        on_sync: Callable[[list[Pod]], None],
        on_event: Callable[[str, Pod], None],
        report: Reporter,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.node = node
        self.on_sync, self.on_event, self.report = on_sync, on_event, report
        self.selector = f"spec.nodeName={node}"
        self.relists = 0
        """How many times it listed (1 at start, one more after each ``410 Gone``)."""
        self._stop = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._loop, name=f"pod-watch-{node}", daemon=True)

    def start(self) -> PodWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            response.shutdown() if hasattr(response, "shutdown") else response.close()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
            except GoneError:
                version = None
            except client.exceptions.ApiException as error:
                if error.status == 410:
                    version = None
                    continue
                if self._stop.is_set():
                    return
                self.report(f"node {self.node} pod watch", error)
                self._stop.wait(RETRY_S)
            except Exception as error:
                if self._stop.is_set():
                    return
                self.report(f"node {self.node} pod watch", error)
                self._stop.wait(RETRY_S)

    def _list(self) -> str:
        self.relists += 1
        response = cast(
            Any, self.core.list_pod_for_all_namespaces(field_selector=self.selector, _preload_content=False)
        )
        document = json.loads(response.data)
        self.on_sync(list(document.get("items") or []))
        return str(document["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str:
        """Watch from `version` until the server ends the watch; the last version seen."""
        response = cast(Any, self.core.list_pod_for_all_namespaces(
            field_selector=self.selector, watch=True, resource_version=version, allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_S, _preload_content=False, _request_timeout=(10, WATCH_TIMEOUT_S + 30),
        ))  # fmt: skip
        self._response = response
        try:
            for line in response:
                if self._stop.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, pod = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if pod.get("code") == 410:
                        raise GoneError(pod.get("message", "too old resource version"))
                    raise RuntimeError(f"watch error: {pod.get('message', pod)}")
                version = str((pod.get("metadata") or {}).get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    self.on_event(str(kind), pod)
        finally:
            self._response = None
            response.release_conn()
        return version
