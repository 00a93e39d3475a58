"""The fetch pod's program: ``python -m raas_node.runner.fetch_pod``.

Resolves the job's ref, fetches exactly that commit, checks the entrypoint, and uploads
``code.tar.gz`` to the presigned PUT URL the operator gave it (the pod holds no store
credentials). When the code has a ``requirements.txt``, it also resolves the wheels for the
robots' platforms (`raas_node.runner.wheels`) and uploads them as ``wheels.tar.gz``. For code
uploaded through the web API (already stored) it only downloads it and resolves its wheels.

It reports through its termination message, which the operator reads from the pod's status:
the 40-hex commit on success (``uploaded`` for uploaded code), followed by `` +wheels`` when
it stored the wheels of a requirements.txt; ``<Reason>: <message>`` (a `FetchError`) on
failure; exit codes 0 and 1. Settings come from the environment the operator sets:

``RAAS_SOURCE_URL``, ``RAAS_SOURCE_REF``, ``RAAS_ENTRYPOINT``, ``RAAS_CODE_UPLOAD_URL`` (git
sources) or ``RAAS_CODE_DOWNLOAD_URL`` (uploaded code); ``RAAS_WHEELS_UPLOAD_URL`` and
``RAAS_WHEEL_PLATFORMS`` (comma-separated pip platform tags); pip's own ``PIP_INDEX_URL`` and
kin; ``RAAS_TERMINATION_LOG`` (default ``/dev/termination-log``).
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from raas_node.runner.fetch import fetch_git, resolve_ref, unpack_archive
from raas_node.runner.termination import DEFAULT_TERMINATION_LOG, run_reported
from raas_node.runner.transfer import download, upload
from raas_node.runner.wheels import DEFAULT_PLATFORMS, pack_wheelhouse, resolve_wheelhouse

UPLOADED = "uploaded"
"""The termination message of a fetch pod that took uploaded code (there is no commit)."""
WITH_WHEELS = "+wheels"
"""Appended (after a space) to the message when the code's requirements' wheels were stored."""


def fetch_and_upload(environment: Mapping[str, str], workdir: Path) -> str:
    """Fetch (or download) the code, store what is missing; the commit, or `UPLOADED`."""
    if "RAAS_CODE_DOWNLOAD_URL" in environment:  # uploaded through the web API: already stored
        code = workdir / "code"
        code.mkdir()
        unpack_archive(download(environment["RAAS_CODE_DOWNLOAD_URL"], workdir / "code.tar.gz"), code)
        result = UPLOADED
    else:
        url, ref = environment["RAAS_SOURCE_URL"], environment.get("RAAS_SOURCE_REF", "HEAD")
        result = resolve_ref(url, ref)
        snapshot = fetch_git(url, result, environment.get("RAAS_ENTRYPOINT", "run.py"), workdir)
        upload(snapshot.archive, environment["RAAS_CODE_UPLOAD_URL"])
        code = snapshot.directory
    requirements = code / "requirements.txt"
    if requirements.is_file() and environment.get("RAAS_WHEELS_UPLOAD_URL"):
        platforms = [tag.strip() for tag in environment.get("RAAS_WHEEL_PLATFORMS", "").split(",") if tag.strip()]
        wheels = resolve_wheelhouse(
            requirements, workdir / "wheels", platforms=platforms or DEFAULT_PLATFORMS, environment=environment
        )
        upload(pack_wheelhouse(wheels, workdir / "wheels.tar.gz"), environment["RAAS_WHEELS_UPLOAD_URL"])
        result += f" {WITH_WHEELS}"
    return result


def main(environment: Mapping[str, str] | None = None) -> int:
    environment = os.environ if environment is None else environment
    report = Path(environment.get("RAAS_TERMINATION_LOG", DEFAULT_TERMINATION_LOG))
    with tempfile.TemporaryDirectory(prefix="raas-fetch-") as scratch:
        step = functools.partial(fetch_and_upload, environment, Path(scratch))
        commit = run_reported(report, step, "FetchMisconfigured: the fetch pod has no")
    if commit is None:
        return 1
    report.write_text(commit)
    print(f"fetched {commit}")  # (a commit, or "uploaded"; and "+wheels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
