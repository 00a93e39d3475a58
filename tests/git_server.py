"""Git repositories served over a real network connection (git daemon on 127.0.0.1) for tests."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": "/usr/bin:/bin",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env=GIT_IDENTITY, capture_output=True, text=True, check=True)
    return result.stdout.strip()


@dataclass
class GitServer:
    base: Path
    port: int

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}.git"

    def publish(
        self, name: str, files: Mapping[str, str | bytes], *, branch: str = "main", tag: str | None = None
    ) -> str:
        """Commit `files` as a new commit of repository `name` (created if needed); returns its SHA."""
        work = self.base / "work" / name
        bare = self.base / f"{name}.git"
        if not bare.exists():
            git("init", "--quiet", "--bare", "--initial-branch", branch, str(bare), cwd=self.base)
            work.mkdir(parents=True)
            git("init", "--quiet", "--initial-branch", branch, cwd=work)
            git("remote", "add", "origin", str(bare), cwd=work)
        for relative, content in files.items():
            target = work / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "--allow-empty", "-m", f"update {len(files)} files", cwd=work)
        if tag:
            git("tag", tag, cwd=work)
        git("push", "--quiet", "--tags", "origin", f"HEAD:{branch}", cwd=work)
        return git("rev-parse", "HEAD", cwd=work)


@contextmanager
def running_git_server(base: Path) -> Iterator[GitServer]:
    """`git daemon` exporting every repository under `base`, stopped at exit."""
    base.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    daemon = subprocess.Popen(
        [
            "git", "daemon", "--export-all", "--reuseaddr", f"--base-path={base}", "--listen=127.0.0.1",
            f"--port={port}", str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield GitServer(base, port)
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
