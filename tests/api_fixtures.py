"""A RaaS API app on a real local platform, and tokens for it (shared by the API tests).

`ApiHarness` is backend-neutral: the contract tests use only HTTP through it, so the same suite
runs on every backend of `BACKENDS`.
"""

from __future__ import annotations

import base64
import contextlib
import io
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from controllers import steady_controller
from fastapi.testclient import TestClient
from git_server import GitServer

from raas_api.auth.tokens import Role, Tokens, TokenStore
from raas_api.http.app import create_app
from raas_api.settings import ApiSettings

if TYPE_CHECKING:
    from controlplane.cluster import ControlPlane

BACKENDS = ("local", "kubernetes")
"""The platforms the contract tests run on: the local one, and a cluster (RaasJobs and Robots in the
real control plane with the chart installed, run by the real kopf operator, pods bound by the real
scheduler and run in podman by the stand-in kubelet)."""


def controller_zip(steps: int = 20, *, files: dict[str, str] | None = None) -> bytes:
    """A zip of a controller folder, as the web page and the CLI upload it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("run.py", steady_controller(steps, torque=1.5))
        for name, text in (files or {}).items():
            bundle.writestr(name, text)
    return buffer.getvalue()


@dataclass
class ApiHarness:
    client: TestClient
    tokens: Tokens
    admin_token: str
    ada_token: str
    bob_token: str
    stored_tokens: Callable[[], bytes]
    """Everything the token store holds, as bytes (to prove no secret is in it)."""

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


def people(tokens: Tokens) -> tuple[str, str, str]:
    """Tokens of the harness's people: an admin, and the users ada and bob."""
    return tokens.create("root", Role.ADMIN)[0], tokens.create("ada")[0], tokens.create("bob")[0]


@contextmanager
def api_harness(data_dir: Path, **settings: Any) -> Iterator[ApiHarness]:
    values: dict[str, Any] = {"data_dir": data_dir, "robots": 2, "allowed_git_hosts": ["127.0.0.1"]}
    values.update(settings)
    tokens = TokenStore(data_dir / "tokens.db")
    admin, ada, bob = people(tokens)
    app = create_app(ApiSettings(**values), tokens=tokens)

    def stored() -> bytes:
        return b"".join(path.read_bytes() for path in data_dir.glob("tokens.db*"))

    with TestClient(app) as client:
        yield ApiHarness(client, tokens, admin, ada, bob, stored)
    tokens.close()


@contextmanager
def cluster_api_harness(
    data_dir: Path, git_server: GitServer, plane: ControlPlane, **settings: Any
) -> Iterator[ApiHarness]:
    """The API on the Kubernetes backend: the session's control plane with charts/raas installed
    (`plane`, the ``raas_chart`` fixture), two robots (``sim-1``, ``sim-2``: real agents on simulated
    pendulums with their Robot objects, stand-in kubelet nodes), the real kopf operator as the chart's
    operator ServiceAccount, podman pods, and the API speaking as the chart's API ServiceAccount
    (tests/cluster_world.py)."""
    from cluster_world import JOB_IMAGE, NAMESPACE, World, operator_environment, use_kubeconfig
    from controlplane.chart_install import API, token_for
    from kubelet.podman import PodmanRuntime, remove_leftover_containers
    from kubernetes import client
    from s3_server import running_s3_server

    from gym_raas.results.store import S3ResultStore
    from raas_api.auth.kubernetes_tokens import SecretTokenStore
    from raas_api.cluster.platform import ClusterPlatform
    from raas_node.runner.image import ensure_runtime_image
    from raas_operator.scheduling.core import Quotas

    values: dict[str, Any] = {
        "data_dir": data_dir,
        "backend": "kubernetes",
        "kubernetes_namespace": NAMESPACE,
        "local_mode": False,
        "presigned_result_links": False,  # as the chart sets it: users cannot reach the cluster's MinIO
        "allowed_git_hosts": ["127.0.0.1"],
    }
    values.update(settings)
    api_settings = ApiSettings(**values)
    runtime = PodmanRuntime({JOB_IMAGE: ensure_runtime_image()})
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        running_s3_server() as s3,
        contextlib.ExitStack() as stack,
    ):
        use_kubeconfig(monkeypatch, data_dir, plane)
        operator_environment(monkeypatch, s3)
        world = World(plane, s3, git_server, ["sim-1", "sim-2"], stack, runtime)
        with world.operator():
            api_client = stack.enter_context(plane.api_client(token_for(plane, *API)))
            platform = ClusterPlatform(
                NAMESPACE,
                S3ResultStore(s3.endpoint, "raas", "raas-secret", "raas-results", secure=False),
                api_client=api_client,
                quotas=Quotas(api_settings.max_running_per_owner, api_settings.max_queued_per_owner),
                max_time_limit_s=api_settings.max_time_limit_s,
            )
            tokens = SecretTokenStore(NAMESPACE, client.CoreV1Api(api_client))  # as on a cluster
            admin, ada, bob = people(tokens)
            app = create_app(api_settings, platform=platform.start(), tokens=tokens)

            def stored() -> bytes:
                secrets = world.core.list_namespaced_secret(NAMESPACE, label_selector="raas.dev/token=true").items
                return b"".join(base64.b64decode(value) for secret in secrets for value in (secret.data or {}).values())

            with TestClient(app) as test_client:
                yield ApiHarness(test_client, tokens, admin, ada, bob, stored)
            tokens.close()
        world.check_clean()
    assert remove_leftover_containers() == []
