"""A real S3-compatible HTTP server for tests: moto in server mode on 127.0.0.1.

No MinIO server binary can be installed on these machines; moto speaks the same S3 HTTP API, so
the official minio SDK talks to it exactly as it talks to MinIO in the cluster. moto does not
check credentials, signatures or presigned-URL expiry: those rules are unit-tested in our code.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from moto.server import ThreadedMotoServer


@dataclass
class S3Server:
    host: str
    port: int
    server: ThreadedMotoServer

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def reset(self) -> None:
        """Wipe every bucket and object."""
        request = urllib.request.Request(f"http://{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        """Start again on the same port (after `stop`, to end a simulated outage)."""
        self.server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self.server.start()


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Server(host, port, server)
    try:
        yield s3
    finally:
        s3.server.stop()
