"""Request bodies are neither read before the token is checked nor without a cap (security issue
12, item 8), against a real ``raas serve`` over TCP.

FastAPI reads and parses a body before a route's dependencies check the token: a 400 MB POST
without a token took the server from 334 MB to 1.25 GB before its 401. Now the token is checked
first and the connection closed with the 401, and every body over its cap is a 413, as soon as the
declared ``Content-Length`` or the streamed size passes the cap.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

MIB = 1024 * 1024
UPLOAD_LIMIT = 64 * 1024


@dataclass
class Server:
    host: str
    port: int
    token: str
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``raas serve`` as users start it, with no robots (so no container image) and a small upload limit."""
    raas = shutil.which("raas", path=str(Path(sys.executable).parent)) or "raas"
    env = {**os.environ, "RAAS_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT), "PYTHONUNBUFFERED": "1"}
    data_dir = tmp_path_factory.mktemp("raas-data")
    process = subprocess.Popen(
        [raas, "serve", "--data-dir", str(data_dir), "--port", "0", "--robots", "0", "--isolation", "process"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # keep reading: the server must never block on a full pipe
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=drain, daemon=True).start()
    url = token = ""
    try:
        while not (url and token):
            line = lines.get(timeout=60)
            if line.startswith("RaaS API listening on "):
                url = line.split()[-1]
            elif line.startswith("admin token: "):
                token = line.split()[-1]
    except queue.Empty:
        process.kill()
        pytest.fail("raas serve printed no address and token within 60 s")
    parts = urlsplit(url)
    assert parts.hostname
    assert parts.port
    deadline = time.monotonic() + 60  # the address is printed before the server listens
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=30).raise_for_status()
            break
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.1)
    yield Server(parts.hostname, parts.port, token, process.pid)
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Exchange:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int
    """Body bytes the server's side of the connection accepted (read, or held in its buffers)."""


def exchange(server: Server, head: str, body: Iterable[bytes]) -> Exchange:
    """Send `head` and then `body` on a raw connection while reading the response, as a client
    that keeps sending until the server stops taking bytes would."""
    connection = socket.create_connection((server.host, server.port), timeout=60)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    response = bytearray()
    sent = 0

    def read() -> None:
        try:
            while chunk := connection.recv(65536):
                response.extend(chunk)
        except OSError:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    try:
        connection.sendall(head.encode())
        for chunk in body:
            connection.sendall(chunk)
            sent += len(chunk)
    except OSError:  # the server closed the connection: what it had not read is refused
        pass
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_WR)
    reader.join(timeout=120)
    connection.close()
    status_line, _, rest = bytes(response).partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    headers = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.decode().partition(":") for line in header_block.split(b"\r\n") if line)
    )
    assert status_line.startswith(b"HTTP/1.1 "), bytes(response[:200])
    return Exchange(int(status_line.split()[1]), headers, payload, sent)


def zeros(total: int, chunk: int = MIB) -> Iterator[bytes]:
    block = b"0" * chunk
    for _ in range(total // chunk):
        yield block


def chunked(total: int) -> Iterator[bytes]:
    for block in zeros(total, 256 * 1024):
        yield b"%x\r\n" % len(block) + block + b"\r\n"
    yield b"0\r\n\r\n"


def request_head(server: Server, path: str, headers: dict[str, str]) -> str:
    lines = [f"POST {path} HTTP/1.1", f"Host: {server.host}:{server.port}", *(f"{k}: {v}" for k, v in headers.items())]
    return "\r\n".join(lines) + "\r\n\r\n"


def test_a_huge_body_without_a_token_is_refused_before_it_is_read(server: Server) -> None:
    declared = 256 * MIB
    before = server.rss_bytes()
    head = request_head(server, "/api/v1/jobs", {"Content-Type": "application/json", "Content-Length": str(declared)})
    answer = exchange(server, head, zeros(declared))
    assert answer.status == 401, answer.body
    assert "bearer token" in json.loads(answer.body)["detail"]
    assert answer.headers["connection"] == "close"
    assert answer.sent < 32 * MIB  # the server stopped taking the body (its buffers aside)
    assert server.rss_bytes() - before < 64 * MIB  # loosely: nothing like the body was kept


def test_a_streamed_body_without_a_token_is_refused_before_it_is_read(server: Server) -> None:
    head = request_head(server, "/api/v1/jobs/upload", {"Transfer-Encoding": "chunked"})
    answer = exchange(server, head, chunked(256 * MIB))
    assert answer.status == 401
    assert answer.sent < 32 * MIB


def test_a_json_body_over_the_cap_is_413_from_its_content_length(server: Server) -> None:
    declared = 64 * MIB
    head = request_head(
        server,
        "/api/v1/jobs",
        {
            "Authorization": f"Bearer {server.token}",
            "Content-Type": "application/json",
            "Content-Length": str(declared),
        },
    )
    answer = exchange(server, head, zeros(declared))
    assert answer.status == 413, answer.body
    assert "1048576 bytes" in json.loads(answer.body)["detail"]
    assert answer.sent < 32 * MIB


def test_a_streamed_json_body_over_the_cap_is_413_once_it_passes_the_cap(server: Server) -> None:
    head = request_head(
        server,
        "/api/v1/jobs",
        {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    answer = exchange(server, head, chunked(64 * MIB))
    assert answer.status == 413, answer.body
    assert "limit" in json.loads(answer.body)["detail"]
    assert answer.headers["connection"] == "close"
    assert answer.sent < 32 * MIB


def test_an_upload_over_its_own_cap_is_413_and_one_within_it_is_read(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.token}"}
    big = httpx.post(
        f"{server.url}/api/v1/jobs/upload",
        headers=auth,
        files={"archive": ("c.zip", b"PK\x03\x04" + b"0" * (4 * UPLOAD_LIMIT), "application/zip")},
        timeout=60,
    )
    assert big.status_code == 413
    assert str(UPLOAD_LIMIT) in big.json()["detail"]
    small = httpx.post(
        f"{server.url}/api/v1/jobs/upload",
        headers=auth,
        files={"archive": ("c.txt", b"not an archive", "text/plain")},
        timeout=60,
    )
    assert small.status_code == 422  # read and judged: the cap left room for it


def test_a_json_body_within_the_cap_still_reaches_the_route(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/jobs",
        headers={"Authorization": f"Bearer {server.token}"},
        json={"source": {"kind": "git", "url": "https://github.com/a/b.git"}, "entrypoint": "x" * 200},
        timeout=60,
    )
    assert response.status_code == 422
    assert "entrypoint" in response.json()["detail"]
