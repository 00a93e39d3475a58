"""The fetch pod's program: ``python -m raas_node.runner.fetch_pod``.

Resolves the job's ref, fetches exactly that commit, checks the entrypoint, and uploads
``code.tar.gz`` to the presigned PUT URL the operator gave it (the pod holds no store
credentials). It reports through its termination message, which the operator reads from the
pod's status: the 40-hex commit on success, ``<Reason>: <message>`` (a `FetchError`) on failure,
with exit codes 0 and 1. Settings come from the environment the operator sets:

``RAAS_SOURCE_URL``, ``RAAS_SOURCE_REF``, ``RAAS_ENTRYPOINT``, ``RAAS_CODE_UPLOAD_URL`` and
``RAAS_TERMINATION_LOG`` (default ``/dev/termination-log``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from raas_node.runner.fetch import FetchError, fetch_git, resolve_ref

UPLOAD_TIMEOUT_S = 120.0


def upload(archive: Path, url: str) -> None:
    """PUT the archive to a presigned URL; `FetchError` when the store refuses or is unreachable."""
    request = urllib.request.Request(
        url, data=archive.read_bytes(), method="PUT", headers={"Content-Type": "application/gzip"}
    )
    try:
        with urllib.request.urlopen(request, timeout=UPLOAD_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as error:
        raise FetchError("UploadFailed", f"could not store code.tar.gz: {error}") from None


def fetch_and_upload(environment: Mapping[str, str], workdir: Path) -> str:
    """The commit that was fetched and uploaded."""
    url, ref = environment["RAAS_SOURCE_URL"], environment.get("RAAS_SOURCE_REF", "HEAD")
    commit = resolve_ref(url, ref)
    snapshot = fetch_git(url, commit, environment.get("RAAS_ENTRYPOINT", "run.py"), workdir)
    upload(snapshot.archive, environment["RAAS_CODE_UPLOAD_URL"])
    return commit


def main(environment: Mapping[str, str] | None = None) -> int:
    environment = os.environ if environment is None else environment
    report = Path(environment.get("RAAS_TERMINATION_LOG", "/dev/termination-log"))
    with tempfile.TemporaryDirectory(prefix="raas-fetch-") as scratch:
        try:
            commit = fetch_and_upload(environment, Path(scratch))
        except FetchError as error:
            report.write_text(f"{error.reason}: {error}"[:4000])
            print(f"{error.reason}: {error}", file=sys.stderr)
            return 1
        except KeyError as missing:
            report.write_text(f"FetchMisconfigured: the fetch pod has no {missing.args[0]}")
            return 1
    report.write_text(commit)
    print(f"fetched {commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
