"""The web API on the Kubernetes backend for `benchmarks.api_bench`: RaasJobs stored in a real
control plane and ``raas serve`` in front of them, as the chart's API pod runs it.

* `seed_raasjobs`: finished RaasJobs of 20 owners (as the local benchmark seeds its SQLite store),
  created by concurrent admin clients, each status written through the status subresource.
* `cluster_server`: ``raas serve`` with ``RAAS_BACKEND=kubernetes`` in the chart's job namespace,
  logged in with a token of the chart's API ServiceAccount (a kubeconfig), results in S3 (moto's
  server), the bootstrap admin token set; ready once ``/readyz`` answers 200 (its job cache
  filled). Also a token of `owner` stored as the API stores tokens on a cluster (a Secret).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from benchmarks.operator_cluster import service_account_token, tests_on_path
from raas_api.stores.kubernetes import KubernetesJobStore
from raas_operator.jobs.model import JobSpec, JobStatus, Phase

BOOTSTRAP = "bench-bootstrap-admin-token"
SEED_WORKERS = 8


def seed_raasjobs(plane: Any, namespace: str, count: int) -> float:
    """`count` Succeeded RaasJobs of 20 owners in `namespace`; the seconds it took."""
    status = JobStatus(phase=Phase.SUCCEEDED, reason="Completed")
    owners = [f"user-{index}" for index in range(20)]
    local = threading.local()

    def create(index: int) -> None:
        if not hasattr(local, "store"):
            local.store = KubernetesJobStore(namespace, client.CustomObjectsApi(plane.api_client()))
        spec = JobSpec.model_validate(
            {"owner": owners[index % 20], "source": {"kind": "git", "url": "https://github.com/a/b.git"}}
        )
        local.store.create(spec, status)

    start = time.monotonic()
    with ThreadPoolExecutor(SEED_WORKERS) as pool:
        list(pool.map(create, range(count)))
    return time.monotonic() - start


@dataclass
class ClusterServer:
    url: str
    process: subprocess.Popen[str]
    owner_token: str


@contextlib.contextmanager
def cluster_server(plane: Any, scratch: Path, s3_endpoint: str, owner: str) -> Iterator[ClusterServer]:
    """``raas serve`` on the Kubernetes backend (module docstring)."""
    tests_on_path()
    from controlplane.chart_install import API, JOBS, token_kubeconfig

    from raas_api.auth.kubernetes_tokens import SecretTokenStore

    with plane.api_client() as admin:
        api_token = service_account_token(admin, *API)
        owner_token, _ = SecretTokenStore(JOBS, client.CoreV1Api(admin)).create(owner)
    kubeconfig = token_kubeconfig(plane, scratch / "api.kubeconfig", api_token, namespace=JOBS)
    environment = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "RAAS_BACKEND": "kubernetes",
        "RAAS_KUBERNETES_NAMESPACE": JOBS,
        "RAAS_LOCAL_MODE": "false",
        "RAAS_DATA_DIR": str(scratch / "cluster-api-data"),
        "RAAS_ADMIN_TOKEN": BOOTSTRAP,
        "RAAS_S3_ENDPOINT": s3_endpoint,
        "RAAS_S3_ACCESS_KEY": "bench",
        "RAAS_S3_SECRET_KEY": "bench-secret",
        "RAAS_S3_SECURE": "false",
        "RAAS_PRESIGNED_RESULT_LINKS": "false",
        "RAAS_REQUESTS_PER_SECOND": "1000000",
    }
    log = (scratch / "cluster-api.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gym_raas.cli.main", "serve", "--port", "0"],
        env=environment, stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = ""
        for line in process.stdout:
            if line.startswith("RaaS API listening on"):
                url = line.split()[-1]
                break
        if not url:
            raise RuntimeError(f"raas serve on the cluster did not start; see {scratch / 'cluster-api.log'}")
        threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its pipe drained
        _wait_ready(url, process)
        yield ClusterServer(url, process, owner_token)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(url: str, process: subprocess.Popen[str], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"raas serve on the cluster exited with status {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/readyz", timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"raas serve on the cluster was not ready within {timeout_s:.0f} s")
