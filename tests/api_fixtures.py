"""A RaaS API app on a real local platform, and tokens for it (shared by the API tests).

`ApiHarness` is backend-neutral: the contract tests use only HTTP through it, so the same suite
runs against the Kubernetes store once it exists (add a backend to `BACKENDS`).
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from raas_api.auth.tokens import Role, TokenStore
from raas_api.http.app import create_app
from raas_api.settings import ApiSettings

BACKENDS = ("local",)

SHORT_CONTROLLER = """\
import gymnasium as gym
import numpy as np
import gym_raas
env = gym.make("RaasPendulum-v0", max_episode_steps={steps})
env.reset()
for _ in range({steps}):
    env.step(np.array([1.5], dtype=np.float32))
env.close()
print("done after {steps} steps")
"""


def controller_zip(steps: int = 20, *, files: dict[str, str] | None = None) -> bytes:
    """A zip of a controller folder, as the web page and the CLI upload it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("run.py", SHORT_CONTROLLER.format(steps=steps))
        for name, text in (files or {}).items():
            bundle.writestr(name, text)
    return buffer.getvalue()


@dataclass
class ApiHarness:
    client: TestClient
    tokens: TokenStore
    admin_token: str
    ada_token: str
    bob_token: str

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def as_ada(self) -> dict[str, str]:
        return self.auth(self.ada_token)

    def upload(self, token: str, steps: int = 20, **form: Any) -> Any:
        return self.client.post(
            "/api/v1/jobs/upload",
            headers=self.auth(token),
            files={"archive": ("controller.zip", controller_zip(steps), "application/zip")},
            data={key: str(value) for key, value in form.items()},
        )

    def wait(self, job_id: str, token: str, timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job: dict[str, Any] = self.client.get(f"/api/v1/jobs/{job_id}", headers=self.auth(token)).json()
            if job["phase"] in ("Succeeded", "Failed", "Cancelled", "TimedOut") or time.monotonic() > deadline:
                return job
            time.sleep(0.2)


@contextmanager
def api_harness(data_dir: Path, **settings: Any) -> Iterator[ApiHarness]:
    values: dict[str, Any] = {"data_dir": data_dir, "robots": 2, "allowed_git_hosts": ["127.0.0.1"]}
    values.update(settings)
    tokens = TokenStore(data_dir / "tokens.db")
    admin, _ = tokens.create("root", Role.ADMIN)
    ada, _ = tokens.create("ada")
    bob, _ = tokens.create("bob")
    app = create_app(ApiSettings(**values), tokens=tokens)
    with TestClient(app) as client:
        yield ApiHarness(client, tokens, admin, ada, bob)
    tokens.close()
