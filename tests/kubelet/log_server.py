"""The kubelet API of one node, as far as logs go: ``GET /containerLogs/{namespace}/{pod}/{container}``
over HTTPS on ``127.0.0.1:<port>``, which the API server calls for ``pods/log`` (``kubectl logs``,
``read_namespaced_pod_log``).

- TLS with the node's serving certificate (signed by the cluster CA, IP 127.0.0.1: the API server
  checks it with ``--kubelet-certificate-authority``); a client certificate signed by the same CA
  is required, and only the API server's (common name
  `controlplane.cluster.KUBELET_CLIENT`) is served: any other gets 403.
- Query: ``follow`` (stream until the container ends or the client goes), ``tailLines``,
  ``limitBytes``, ``timestamps``, ``sinceSeconds`` / ``sinceTime``; ``previous=true`` finds
  nothing (containers never restart here: ``restartPolicy: Never``).
- A pod this node does not know, or a container not in the pod, is 404 with a message; a container
  that has not started is 400 ``... is waiting to start``, as a kubelet answers.
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from kubelet.logs import LogFollower, parse, read_log, since_ok
from kubelet.pod_runner import PodWork

FOLLOW_POLL_S = 0.2

Finder = Callable[[str, str], PodWork | None]
"""(namespace, pod name) → the pod's work on this node, or None."""


class _LogRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(http.server.BaseHTTPRequestHandler):
    server: KubeletServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read failures from the responses."""

    def do_GET(self) -> None:
        certificate = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        subject = {
            str(item[0]): str(item[1]) for part in cast(Any, certificate or {}).get("subject", ()) for item in part
        }
        if subject.get("commonName") != self.server.allowed_client:
            return self._fail(403, f"{subject.get('commonName', 'anonymous')} may not read this node's logs")
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(part) for part in url.path.split("/") if part]
        if len(parts) != 4 or parts[0] != "containerLogs":
            return self._fail(404, f"{url.path} is not served by the stand-in kubelet (only /containerLogs)")
        query = {key: values[-1] for key, values in urllib.parse.parse_qs(url.query).items()}
        try:
            self._logs(parts[1], parts[2], parts[3], query)
        except _LogRequestError as error:
            self._fail(error.status, str(error))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client went away (a follow ended by the caller)

    def _logs(self, namespace: str, pod: str, container: str, query: dict[str, str]) -> None:
        work = self.server.find(namespace, pod)
        if work is None:
            raise _LogRequestError(404, f'pod "{namespace}/{pod}" is not known on node "{self.server.node}"')
        spec = work.pod["spec"]
        names = [c["name"] for c in (spec.get("initContainers") or []) + spec["containers"]]
        if container not in names:
            raise _LogRequestError(404, f'container "{container}" not found in pod "{namespace}/{pod}"')
        if _flag(query, "previous"):
            raise _LogRequestError(
                400, f'previous terminated container "{container}" in pod "{pod}" not found (containers never restart)'
            )
        if container not in work.started:
            raise _LogRequestError(
                400, f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating'
            )
        timestamps = _flag(query, "timestamps")
        tail = _integer(query, "tailLines")
        limit = _integer(query, "limitBytes")
        since = query.get("sinceTime")
        if "sinceSeconds" in query:
            moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
                seconds=_integer(query, "sinceSeconds") or 0
            )
            since = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        path = work.log_file(container)
        if not _flag(query, "follow"):
            body = read_log(path, timestamps=timestamps, tail_lines=tail, limit_bytes=limit, since=since)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self._follow(work, container, path, timestamps, tail, limit, since)

    def _follow(
        self, work: PodWork, container: str, path: Path, timestamps: bool, tail: int | None, limit: int | None,
        since: str | None,
    ) -> None:  # fmt: skip
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        data = path.read_bytes() if path.exists() else b""
        complete = data.rfind(b"\n") + 1
        follower = LogFollower(path, since)
        follower.skip_to(complete)
        entries = [entry for entry in parse(data[:complete]) if since_ok(entry, since)]
        if tail is not None:
            entries = entries[-tail:] if tail > 0 else []
        left = limit
        while True:
            for entry in entries:
                chunk = entry.render(timestamps)
                if left is not None:
                    chunk, left = chunk[:left], left - len(chunk[:left])
                self.wfile.write(chunk)
                if left == 0:
                    return
            self.wfile.flush()
            ended = container in work.ended or self.server.stopping.is_set()
            entries = follower.new_entries()
            if not entries:
                if ended:
                    return
                time.sleep(FOLLOW_POLL_S)
                entries = follower.new_entries()

    def _fail(self, status: int, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _flag(query: dict[str, str], key: str) -> bool:
    return query.get(key, "false").lower() in ("true", "1")


def _integer(query: dict[str, str], key: str) -> int | None:
    if key not in query:
        return None
    try:
        return int(query[key])
    except ValueError:
        raise _LogRequestError(400, f"{key} must be an integer, got {query[key]!r}") from None


class KubeletServer(http.server.ThreadingHTTPServer):
    """The node's kubelet API on 127.0.0.1 (kernel-chosen port unless given); `close` stops it."""

    daemon_threads = True

    def __init__(
        self, node: str, find: Finder, certificate: Path, key: Path, authority: Path, allowed_client: str,
        port: int = 0,
    ) -> None:  # fmt: skip
        self.node, self.find, self.allowed_client = node, find, allowed_client
        self.stopping = threading.Event()
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(str(certificate), str(key))
        self.tls.load_verify_locations(str(authority))
        self.tls.verify_mode = ssl.CERT_REQUIRED
        super().__init__(("127.0.0.1", port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, args=(0.2,), name=f"kubelet-api-{node}", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> KubeletServer:
        self._thread.start()
        return self

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake in the request's own thread (a slow client holds up no other)."""
        request.settimeout(30)
        try:
            secured = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with contextlib.closing(secured):
            secured.settimeout(None)
            _Handler(secured, client_address, self)
            with contextlib.suppress(OSError):
                secured.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)
