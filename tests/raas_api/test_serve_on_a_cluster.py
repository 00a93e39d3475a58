"""``raas serve`` as the chart's API pod runs it (RAAS_BACKEND=kubernetes, settings from the
environment, the bootstrap admin token from a Secret, logged in with the chart's API
ServiceAccount token), against the real control plane with the chart installed, and moto's S3
server. No operator runs: this is the API's own part — submissions become RaasJobs, tokens become
Secrets, robots are read from Robots."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from controlplane.chart_install import API, JOBS, clear_chart_namespaces, token_for, token_kubeconfig
from controlplane.cluster import ControlPlane
from kubernetes import client
from s3_server import S3Server, running_s3_server

BOOTSTRAP = "bootstrap-admin-token-from-the-chart-secret"


@pytest.fixture
def cluster(raas_chart: ControlPlane) -> Iterator[ControlPlane]:
    """The chart's control plane, its shared namespaces emptied before and after."""
    clear_chart_namespaces(raas_chart)
    yield raas_chart
    clear_chart_namespaces(raas_chart)


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


def serve(cluster: ControlPlane, s3: S3Server, folder: Path) -> tuple[str, subprocess.Popen[str]]:
    kubeconfig = token_kubeconfig(cluster, folder / "kubeconfig", token_for(cluster, *API), JOBS)
    environment = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "RAAS_BACKEND": "kubernetes",
        "RAAS_KUBERNETES_NAMESPACE": JOBS,
        "RAAS_LOCAL_MODE": "false",
        "RAAS_DATA_DIR": str(folder / "data"),
        "RAAS_ADMIN_TOKEN": BOOTSTRAP,
        "RAAS_S3_ENDPOINT": s3.endpoint,
        "RAAS_S3_ACCESS_KEY": "raas",
        "RAAS_S3_SECRET_KEY": "raas-secret",
        "RAAS_S3_SECURE": "false",
        "RAAS_PRESIGNED_RESULT_LINKS": "false",
        "RAAS_ALLOWED_GIT_HOSTS": '["git.lab.example"]',
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gym_raas.cli.main", "serve", "--port", "0"],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "admin token:" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(60):
        process.kill()
        pytest.fail("raas serve did not start:\n" + "".join(lines))
    url = next(match.group(1) for line in lines if (match := re.match(r"RaaS API listening on (\S+)", line)))
    assert any("the bootstrap token (RAAS_ADMIN_TOKEN)" in line for line in lines)  # no session token printed
    return url, process


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.TransportError:  # the socket is bound before uvicorn serves it
        return False


def test_the_api_pod_serves_a_cluster(cluster: ControlPlane, s3: S3Server, tmp_path: Path) -> None:
    url, process = serve(cluster, s3, tmp_path)
    try:
        admin = {"Authorization": f"Bearer {BOOTSTRAP}"}
        deadline = time.monotonic() + 30
        while not ready(url):
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.2)
        assert httpx.get(f"{url}/api/v1/whoami", headers=admin).json() == {"owner": "admin", "role": "admin"}
        assert httpx.get(f"{url}/api/v1/robots", headers=admin).json() == []
        submitted = httpx.post(
            f"{url}/api/v1/jobs",
            json={"source": {"kind": "git", "url": "https://git.lab.example/raas/raas.git", "ref": "main"}},
            headers=admin,
        )
        assert submitted.status_code == 201, submitted.text
        job = submitted.json()["id"]
        with cluster.api_client() as cluster_admin:
            custom = client.CustomObjectsApi(cluster_admin)
            raasjob = custom.get_namespaced_custom_object("raas.dev", "v1alpha1", JOBS, "raasjobs", job)
        assert raasjob["spec"]["source"]["url"] == "https://git.lab.example/raas/raas.git"
        refused = httpx.post(f"{url}/api/v1/jobs", json={"source": {"kind": "local", "path": "/etc"}}, headers=admin)
        assert refused.status_code == 422  # no folders from the server's disk on a cluster
        metrics = httpx.get(f"{url}/metrics").text
        assert "raas_api_requests_total" in metrics
        assert "raas_queue_length" not in metrics  # the operator exports the fleet in a cluster
    finally:
        process.terminate()
        process.wait(timeout=20)
