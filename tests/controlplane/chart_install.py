"""charts/raas installed once per test session on the real control plane, and API clients that
speak as the chart's ServiceAccounts (a pytest plugin: ``tests/conftest.py`` loads it).

- ``raas_chart`` (session): ``helm install raas charts/raas --namespace raas-system
  --create-namespace`` with the pinned helm, the release namespace then labelled
  ``pod-security.kubernetes.io/enforce=restricted`` as the chart README says, and waited on until
  the job namespace takes pods (its default ServiceAccount exists) and the chart's admission policy
  ``raas-job-pods`` is enforced. Left installed until the control plane stops: the chart's
  namespaces are fixed (raas-system, raas-robots, raas-jobs), so tests that write into them delete
  what they made.
- ``service_account_client(namespace, account)``: a `kubernetes.client.ApiClient` with a fresh
  TokenRequest token of that ServiceAccount (an hour), closed after the test; `API`, `AGENT`
  and `OPERATOR` name the chart's three. `token_for` and `token_kubeconfig` are the parts, for a
  component that logs in from a kubeconfig (a CLI, a subprocess).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from controlplane.cluster import ControlPlane

from raas_operator.jobs.model import JobSpec
from raas_operator.pods import PodSettings, job_pod

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "raas"
RELEASE = "raas"
SYSTEM = "raas-system"
JOBS = "raas-jobs"
ROBOTS = "raas-robots"
API = (SYSTEM, "raas-api")
AGENT = (ROBOTS, "raas-agent")
OPERATOR = (SYSTEM, "raas-operator")
REGISTRY = "localhost"
"""The chart's required registry: the images imported into each node, as an air-gapped lab does."""
TOKEN_LIFETIME_S = 3600
"""As long as a pod's projected ServiceAccount token (a module-scoped world may run for many minutes)."""
POLICY_WAIT_S = 30.0


def probe_pod() -> dict[str, Any]:
    """A job pod as the operator builds it, its socket volume widened to the host's ``/``: the
    admission policy refuses it once it is enforced."""
    spec = JobSpec.model_validate({"owner": "ada", "source": {"kind": "git", "url": "https://github.com/ada/c.git"}})
    pod = job_pod(
        job_name="policy-probe",
        namespace=JOBS,
        job_uid="6f1c9a52-0000-4000-8000-000000000002",
        spec=spec,
        robot="pendulum-1",
        commit="c" * 40,
        code_url="http://raas-minio:9000/results/policy-probe/code.tar.gz",
        settings=PodSettings(image="localhost/raas-job:0.1.0"),
    )
    (volume,) = (volume for volume in pod["spec"]["volumes"] if "hostPath" in volume)
    volume["hostPath"]["path"] = "/"
    return pod


def install_chart(plane: ControlPlane) -> None:
    """charts/raas installed as its README says, its admission policy in force (module docstring)."""
    plane.helm(
        "install", RELEASE, str(CHART), "--namespace", SYSTEM, "--create-namespace",
        "--set", f"images.registry={REGISTRY}",
    )  # fmt: skip
    plane.kubectl("label", "namespace", SYSTEM, "pod-security.kubernetes.io/enforce=restricted")
    # Pods are admitted only once the controller manager made the namespace's default ServiceAccount.
    plane.kubectl("-n", JOBS, "wait", "--for=create", "--timeout=60s", "serviceaccount/default")
    # The API server enforces a new policy once its informer has seen it (a second or so):
    # until then even a pod mounting the host's / is admitted.
    probe = json.dumps(probe_pod())
    deadline = time.monotonic() + POLICY_WAIT_S
    while True:
        tried = plane.kubectl("create", "--dry-run=server", "-f", "-", input=probe, check=False)
        if "ValidatingAdmissionPolicy 'raas-job-pods'" in tried.stdout + tried.stderr:
            return
        assert time.monotonic() < deadline, f"the chart's admission policy was not enforced within {POLICY_WAIT_S} s"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def raas_chart(control_plane: ControlPlane) -> ControlPlane:
    """The session's control plane with charts/raas installed (once per session)."""
    install_chart(control_plane)
    return control_plane


def token_for(plane: ControlPlane, namespace: str, account: str) -> str:
    """A token of ServiceAccount `namespace`/`account` (TokenRequest API, asked as the admin)."""
    request = kubernetes.client.AuthenticationV1TokenRequest(
        spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_LIFETIME_S)
    )
    with plane.api_client() as admin:
        granted = kubernetes.client.CoreV1Api(admin).create_namespaced_service_account_token(
            account, namespace, request
        )
    assert granted.status is not None
    assert granted.status.token
    return str(granted.status.token)


def token_kubeconfig(plane: ControlPlane, path: Path, token: str, namespace: str | None = None) -> Path:
    """A kubeconfig at `path` for the control plane as the bearer of `token` (its CA trusted)."""
    context: dict[str, str] = {"cluster": "raas-test", "user": "service-account"}
    if namespace is not None:
        context["namespace"] = namespace
    path.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "raas-test",
            "clusters": [{"name": "raas-test", "cluster": {
                "server": plane.server, "certificate-authority": str(plane.folder / "ca.crt"),
            }}],
            "users": [{"name": "service-account", "user": {"token": token}}],
            "contexts": [{"name": "raas-test", "context": context}],
        })
    )  # fmt: skip
    return path


def clear_chart_namespaces(plane: ControlPlane) -> None:
    """Remove, as the admin, what tests leave in the chart's shared namespaces: every RaasJob of the
    job namespace (finalizers dropped: no operator may be left to honour them), its pods (at once)
    and Secrets other than service-account tokens, and every Robot."""
    with plane.api_client() as admin:
        custom = kubernetes.client.CustomObjectsApi(admin)
        core = kubernetes.client.CoreV1Api(admin)
        for job in custom.list_namespaced_custom_object("raas.dev", "v1alpha1", JOBS, "raasjobs")["items"]:
            if job["metadata"].get("finalizers"):
                unblocked = {"metadata": {"finalizers": None}}
                name = job["metadata"]["name"]
                custom.patch_namespaced_custom_object("raas.dev", "v1alpha1", JOBS, "raasjobs", name, unblocked)
        custom.delete_collection_namespaced_custom_object("raas.dev", "v1alpha1", JOBS, "raasjobs")
        core.delete_collection_namespaced_pod(JOBS, grace_period_seconds=0)
        core.delete_collection_namespaced_secret(JOBS, field_selector="type!=kubernetes.io/service-account-token")
        custom.delete_collection_cluster_custom_object("raas.dev", "v1alpha1", "robots")


@contextlib.contextmanager
def robot_status_unchecked(plane: ControlPlane) -> Iterator[None]:
    """The Robot CRD with a status of any shape for the span of the ``with`` (as the admin), then
    the CRD as installed again. What is written meanwhile stays stored as written (a CRD is not
    re-applied to stored objects): the objects an older or newer writer left behind."""
    with plane.api_client() as admin:
        extensions = kubernetes.client.ApiextensionsV1Api(admin)
        installed = extensions.read_custom_resource_definition("robots.raas.dev")
        relaxed = admin.sanitize_for_serialization(installed)
        schema = relaxed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        schema["properties"]["status"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        extensions.replace_custom_resource_definition("robots.raas.dev", relaxed)
        try:
            yield
        finally:
            current = extensions.read_custom_resource_definition("robots.raas.dev")
            installed.metadata.resource_version = current.metadata.resource_version
            extensions.replace_custom_resource_definition("robots.raas.dev", installed)


def write_robot_status(custom: kubernetes.client.CustomObjectsApi, name: str, status: dict[str, Any]) -> bool:
    """Whether Robot `name` took `status` (False while the server refuses it as invalid: a CRD
    change takes a moment to be enforced)."""
    try:
        custom.patch_cluster_custom_object_status("raas.dev", "v1alpha1", "robots", name, {"status": status})
    except kubernetes.client.exceptions.ApiException as error:
        if error.status != 422:
            raise
        return False
    return True


ServiceAccountClient = Callable[[tuple[str, str]], kubernetes.client.ApiClient]
"""``service_account_client((namespace, account))``: an API client as that ServiceAccount."""


@pytest.fixture
def service_account_client(raas_chart: ControlPlane) -> Iterator[ServiceAccountClient]:
    """API clients holding tokens of the chart's ServiceAccounts (`API`, `AGENT`, `OPERATOR`),
    closed after the test."""
    with contextlib.ExitStack() as clients:

        def make(account: tuple[str, str]) -> kubernetes.client.ApiClient:
            client = raas_chart.api_client(token_for(raas_chart, *account))
            clients.callback(client.close)
            return client

        yield make
