"""Moving archives to and from presigned URLs (the pods that do it hold no store credentials)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from raas_node.runner.fetch import FetchError

TRANSFER_TIMEOUT_S = 120.0


def upload(archive: Path, url: str) -> None:
    """PUT the archive to a presigned URL; `FetchError` when the store refuses or is unreachable."""
    request = urllib.request.Request(
        url, data=archive.read_bytes(), method="PUT", headers={"Content-Type": "application/gzip"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TRANSFER_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as error:
        raise FetchError("UploadFailed", f"could not store {archive.name}: {error}") from None


def download(url: str, archive: Path) -> Path:
    """GET a presigned URL into `archive`; `FetchError` when the store refuses or is unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=TRANSFER_TIMEOUT_S) as response, archive.open("wb") as sink:
            while chunk := response.read(1 << 20):
                sink.write(chunk)
    except (urllib.error.URLError, OSError) as error:
        raise FetchError("DownloadFailed", f"could not read {archive.name}: {error}") from None
    return archive
