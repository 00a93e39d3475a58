"""Which isolation level ``raas serve`` runs users' programs under, and what it promises.

Containers (podman: no network, read-only root, no capabilities, cgroup limits) are the default
wherever podman works: rootful, with runc. The process level is for one trusted developer
running their own code; a server in that mode refuses tokens for other people, at start and in
``raas admin token create`` (the server notes its mode in ``<data dir>/server.json``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from raas_api.local.platform import Isolation

SERVER_NOTE = "server.json"

PROCESS_LEVEL_NOTICE = (
    "isolation: process, for one trusted developer's own code. Each job runs under a uid of its own in "
    "private network, mount and process namespaces, but shares this machine's kernel, CPU and memory without "
    "cgroup limits and sees its world-readable files; do not run strangers' code this way: use "
    "--isolation container (podman)."
)


def podman_works() -> bool:
    """Whether the container level can run here: rootful podman with the runc runtime."""
    return os.geteuid() == 0 and shutil.which("podman") is not None and shutil.which("runc") is not None


def choose_isolation(requested: str | None) -> Isolation:
    """`requested` (``--isolation``), else ``RAAS_ISOLATION``, else containers where podman works."""
    chosen = requested or os.environ.get("RAAS_ISOLATION")
    if chosen:
        return Isolation(chosen)
    return Isolation.CONTAINER if podman_works() else Isolation.PROCESS


def note_isolation(data_dir: Path, isolation: Isolation) -> None:
    """Record the serving mode for ``raas admin`` (which refuses other people's tokens in process mode)."""
    (data_dir / SERVER_NOTE).write_text(json.dumps({"isolation": isolation.value}) + "\n")


def noted_isolation(data_dir: Path) -> Isolation | None:
    """The mode the last ``raas serve`` on `data_dir` ran in, if any."""
    try:
        return Isolation(json.loads((data_dir / SERVER_NOTE).read_text())["isolation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def strangers_refusal(isolation: Isolation | None, owners: set[str]) -> str | None:
    """Why tokens for `owners` (other people than the serving session) cannot be, or None."""
    if isolation is not Isolation.PROCESS or not owners:
        return None
    return (
        f"tokens for other people ({', '.join(sorted(owners))}) need --isolation container: the process level is "
        "for one trusted developer's own code; restart raas serve with --isolation container, or revoke them "
        "with raas admin token revoke"
    )
