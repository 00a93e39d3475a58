"""Whether a container hit its memory limit, where podman cannot tell.

Podman reports a cgroup OOM kill as ``OOMKilled`` in ``podman inspect``; on cgroup v1 hosts
(such as these machines' hybrid cgroups) it never does: conmon 2.1 writes its ``oom`` file into
its working folder instead of where podman looks (the container launcher reads it there), and
the container's own cgroup is gone once it exits. `MemoryWitness` gives each
run a parent cgroup of its own (``--cgroup-parent``, cgroupfs manager only) that outlives the
container and whose counters are hierarchical: peak memory on v1, the ``oom_kill`` count on v2.
After the run it says whether the limit was reached, then removes the folders.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT_FOLDER = "raas-runs"
_PEAK_FRACTION = 0.95
"""A v1 peak this close to the limit counts as reaching it (the parent also holds conmon's few MB)."""


class MemoryWitness:
    """A per-run parent cgroup and what it saw; `cgroup_parent` is None when unavailable."""

    def __init__(self, run_name: str) -> None:
        self.relative = f"/{PARENT_FOLDER}/{run_name}"
        self.cgroup_parent: str | None = self.relative if _podman_uses_cgroupfs() else None

    def hit_limit(self, limit_bytes: int) -> bool:
        """Whether the run's memory reached `limit_bytes` (False when nothing was recorded)."""
        if self.cgroup_parent is None:
            return False
        if _cgroup_v2():
            events = CGROUP_ROOT / self.relative.lstrip("/") / "memory.events"
            with contextlib.suppress(OSError, ValueError):
                counts = dict(line.split() for line in events.read_text().splitlines())
                return int(counts.get("oom_kill", "0")) > 0
            return False
        peak = CGROUP_ROOT / "memory" / self.relative.lstrip("/") / "memory.max_usage_in_bytes"
        with contextlib.suppress(OSError, ValueError):
            return int(peak.read_text()) >= _PEAK_FRACTION * limit_bytes
        return False

    def remove(self, wait_s: float = 3.0) -> None:
        """Remove the run's cgroup folders in every hierarchy (retrying while conmon exits)."""
        if self.cgroup_parent is None:
            return
        roots = [CGROUP_ROOT] if _cgroup_v2() else [path for path in CGROUP_ROOT.iterdir() if path.is_dir()]
        deadline = time.monotonic() + wait_s
        for root in roots:
            folder = root / self.relative.lstrip("/")
            while folder.exists():
                with contextlib.suppress(OSError):
                    for child in sorted(folder.rglob("*"), key=lambda path: len(path.parts), reverse=True):
                        if child.is_dir():
                            child.rmdir()
                    folder.rmdir()
                if not folder.exists() or time.monotonic() > deadline:
                    break
                time.sleep(0.05)


@functools.lru_cache(maxsize=1)
def _podman_uses_cgroupfs() -> bool:
    if shutil.which("podman") is None:
        return False
    try:
        info = subprocess.run(
            ["podman", "info", "--format", "{{.Host.CgroupManager}}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return info.stdout.strip() == "cgroupfs"


def _cgroup_v2() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()
