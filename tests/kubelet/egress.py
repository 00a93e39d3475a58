"""Egress narrowed to named endpoints: a relay from a container's own loopback to the host's.

A container run with ``--network none`` has only its loopback. `LoopbackRelay` opens, inside
that container's network namespace (entered with ``setns`` from one short-lived thread, so the
rest of the process stays where it is), a listener on each allowed ``127.0.0.1:<port>``, and
relays every connection to the same address on the host. The program in the container can then
reach exactly those endpoints (the S3 server in the end-to-end tests) and nothing else: no other
host port, no other host, no DNS. It stands in for the cluster's NetworkPolicy that lets pods
reach MinIO only. Needs root (``setns`` into another process's network namespace).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Sequence

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(descriptor: int) -> None:
    if _libc.setns(descriptor, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


def _listen_in_namespace(pid: int, endpoints: Sequence[tuple[str, int]]) -> list[socket.socket]:
    """Listening sockets on `endpoints` inside the network namespace of process `pid`."""
    box: dict[str, list[socket.socket] | BaseException] = {}

    def enter_and_listen() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        listeners: list[socket.socket] = []
        try:
            _setns(target)
            try:
                for host, port in endpoints:
                    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    listener.bind((host, port))
                    listener.listen(16)
                    listeners.append(listener)
            finally:
                _setns(own)  # a socket stays in the namespace it was created in
            box["listeners"] = listeners
        except BaseException as error:
            for listener in listeners:
                listener.close()
            box["error"] = error
        finally:
            os.close(own)
            os.close(target)

    thread = threading.Thread(target=enter_and_listen, name=f"netns-{pid}")
    thread.start()
    thread.join()
    if "error" in box:
        raise OSError(f"cannot listen in the network namespace of process {pid}: {box['error']}")
    result = box["listeners"]
    assert isinstance(result, list)
    return result


class LoopbackRelay:
    """Relays ``127.0.0.1:<port>`` inside a container to the same address on the host (see the module)."""

    def __init__(self, pid: int, endpoints: Sequence[tuple[str, int]]) -> None:
        for host, _ in endpoints:
            if not host.startswith("127."):
                raise ValueError(f"only loopback endpoints can be relayed, not {host}")
        self._listeners = _listen_in_namespace(pid, endpoints) if endpoints else []
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        for listener in self._listeners:
            threading.Thread(target=self._accept, args=(listener,), name="relay-accept", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for sock in [*self._listeners, *self._connections]:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        address = listener.getsockname()
        while True:
            try:
                inside, _ = listener.accept()
            except OSError:
                return
            try:
                outside = socket.create_connection(address, timeout=10)
                outside.settimeout(None)
            except OSError:
                inside.close()
                continue
            with self._lock:
                if self._closed:
                    inside.close()
                    outside.close()
                    return
                self._connections += [inside, outside]
            for source, sink in ((inside, outside), (outside, inside)):
                threading.Thread(target=_pump, args=(source, sink), name="relay", daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
