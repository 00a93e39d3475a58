"""What the container tests share: whether rootful podman runs here, and a run request for a
one-file controller."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

from raas_node.runner.launch import RunLimits, RunRequest


def podman_unusable() -> str | None:
    """Why rootful podman cannot run containers on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "rootful podman needs root"
    if shutil.which("podman") is None:
        return "podman is not installed: run scripts/install-system-deps as root"
    info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=120, check=False)
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip().splitlines()[-1:]}"
    return None


def request_for(folder: Path, source: str, limits: RunLimits, **request: object) -> RunRequest:
    """A run of `source` as ``run.py`` in ``folder/code``, with its scratch and output files in `folder`."""
    (folder / "code").mkdir(parents=True, exist_ok=True)
    (folder / "code" / "run.py").write_text(textwrap.dedent(source))
    return RunRequest(
        code_dir=folder / "code",
        entrypoint="run.py",
        scratch_dir=folder / "scratch",
        stdout_path=folder / "stdout.txt",
        stderr_path=folder / "stderr.txt",
        limits=limits,
        **request,  # type: ignore[arg-type]
    )
