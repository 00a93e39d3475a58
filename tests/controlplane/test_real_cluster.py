"""The CRDs, the chart and the operator's pods against a real Kubernetes API server.

One control plane per session (``control_plane`` of ``tests/conftest.py``: etcd, kube-apiserver with
Node,RBAC authorization and PodSecurity/ValidatingAdmissionPolicy admission, controller manager,
scheduler; no kubelet, so pods are only admitted, never run). What a lab would notice:

- the RaasJob and Robot CRDs of ``manifests/crds/`` are served; a resource that breaks the schema
  or a CEL rule is refused with the server's own message; unknown fields are pruned (or refused by
  kubectl's strict validation); status is written only through the status subresource;
- ``kubectl get rj`` / ``kubectl get robots`` print the CRDs' printer columns;
- ``helm install`` of ``charts/raas`` (the pinned helm) creates the namespaces with their Pod
  Security labels, RBAC, the admission policy and the NetworkPolicies, and the README's examples
  apply;
- the job and fetch pods the operator builds pass the job namespace's real admission, and the same
  pod made unsafe is refused with the policy's message;
- the chart's RBAC, asked with a real ServiceAccount token: the operator may do what its Roles
  grant and gets 403 for the rest;
- ``kubectl apply -k manifests/`` (the install without Helm) works on a fresh control plane;
- the fixture itself: missing binaries and a taken port fail the start with what to do, leaving
  no process or temp folder behind.
"""

from __future__ import annotations

import copy
import json
import secrets
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import kubernetes
import pytest
import yaml
from controlplane import cluster
from controlplane.chart_install import token_for
from controlplane.cluster import ControlPlane, ControlPlaneError

from raas_operator.jobs.model import JobSpec
from raas_operator.pods import PodSettings, fetch_pod, job_pod

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "manifests" / "crds"
MANIFESTS = ROOT / "manifests"
EXAMPLES = MANIFESTS / "examples"
BAD = ROOT / "tests" / "raas_operator" / "bad_resources"
CHART = ROOT / "charts" / "raas"
JOBS = "raas-jobs"
SYSTEM = "raas-system"

SETTINGS = PodSettings(image="localhost/raas-job:0.1.0")
SPEC = JobSpec.model_validate({"owner": "ada", "source": {"kind": "git", "url": "https://github.com/ada/c.git"}})
UID = "6f1c9a52-0000-4000-8000-000000000001"


def a_job_pod() -> dict[str, Any]:
    """The run pod exactly as the operator builds it, in the job namespace."""
    return job_pod(
        job_name="swingup",
        namespace=JOBS,
        job_uid=UID,
        spec=SPEC,
        robot="pendulum-1",
        commit="c" * 40,
        code_url="http://raas-minio:9000/results/swingup/code.tar.gz?X-Amz-Signature=abc",
        settings=SETTINGS,
        wheels_url="http://raas-minio:9000/results/swingup/wheels.tar.gz?X-Amz-Signature=def",
    )


def a_fetch_pod() -> dict[str, Any]:
    return fetch_pod(
        job_name="swingup",
        namespace=JOBS,
        job_uid=UID,
        command=["/opt/raas/bin/python3", "-m", "raas_node.runner.fetch_pod"],
        settings=SETTINGS,
    )


def socket_volume(pod: dict[str, Any]) -> dict[str, Any]:
    """The job pod's hostPath volume of the agent's socket folder."""
    (volume,) = (volume for volume in pod["spec"]["volumes"] if "hostPath" in volume)
    found: dict[str, Any] = volume
    return found


def socket_mount(pod: dict[str, Any]) -> dict[str, Any]:
    """The controller container's mount of that volume."""
    name = socket_volume(pod)["name"]
    (mount,) = (mount for mount in pod["spec"]["containers"][0]["volumeMounts"] if mount["name"] == name)
    found: dict[str, Any] = mount
    return found


def load(path: Path, namespace: str | None = None) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    if namespace is not None and "namespace" in document["metadata"]:
        document["metadata"]["namespace"] = namespace
    return document


def dry_run_create(plane: ControlPlane, manifest: dict[str, Any]) -> tuple[bool, str]:
    """``kubectl create --dry-run=server``: whether the server admitted `manifest`, and everything
    kubectl printed (warnings and errors included)."""
    result = plane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(manifest), check=False)
    return result.returncode == 0, result.stdout + result.stderr


def table(output: str) -> list[dict[str, str]]:
    """kubectl's table output as rows keyed by header (columns cut where the headers start)."""
    header, *lines = output.rstrip("\n").splitlines()
    names, starts = header.split(), list[int]()
    for name in names:
        starts.append(header.index(name, starts[-1] + 1 if starts else 0))
    ends = [*starts[1:], None]
    return [
        {name: line[start:end].strip() for name, start, end in zip(names, starts, ends, strict=True)} for line in lines
    ]


def api_error(call: Callable[[], object]) -> kubernetes.client.ApiException:
    """The server's refusal of `call` (which must be refused)."""
    with pytest.raises(kubernetes.client.ApiException) as refused:
        call()
    return refused.value


def message(error: kubernetes.client.ApiException) -> str:
    """The message of the server's Status."""
    return str(json.loads(error.body or "{}")["message"])


def as_dict(answer: object) -> dict[str, Any]:
    """A custom object as the client returns it (typed `object`)."""
    assert isinstance(answer, dict)
    return answer


def get(plane: ControlPlane, *args: str) -> dict[str, Any]:
    """``kubectl get ARGS -o json``, parsed."""
    found: dict[str, Any] = json.loads(plane.kubectl("get", *args, "-o", "json").stdout)
    return found


def pod_body(pod: dict[str, Any]) -> kubernetes.client.V1Pod:
    """A pod manifest as a request body: the client sends a dict as it is (typed as V1Pod)."""
    return cast(kubernetes.client.V1Pod, pod)


@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane) -> None:
    """The RaasJob and Robot CRDs, applied with kubectl and Established."""
    control_plane.kubectl("apply", "-f", str(CRDS))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    with control_plane.api_client() as client:
        yield client


@pytest.fixture
def chart(raas_chart: ControlPlane) -> None:
    """charts/raas installed as the chart README says (helm install, then label the release
    namespace), and its admission policy in force: once per session, by
    `controlplane.chart_install` (the chart's namespaces are fixed, so one install serves all)."""


# --- the CRDs ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("crds")
def test_raasjob_and_robot_crds_are_established_with_their_short_names(control_plane: ControlPlane) -> None:
    resources = table(control_plane.kubectl("api-resources", "--api-group=raas.dev").stdout)
    assert {(row["NAME"], row["SHORTNAMES"], row["NAMESPACED"], row["KIND"]) for row in resources} == {
        ("raasjobs", "rj", "true", "RaasJob"),
        ("robots", "rb", "false", "Robot"),
    }
    for name in ("raasjobs.raas.dev", "robots.raas.dev"):
        crd = json.loads(control_plane.kubectl("get", "crd", name, "-o", "json").stdout)
        conditions = {condition["type"]: condition["status"] for condition in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"


SCHEMA_REFUSALS = {
    "raasjob-bad-ref.yaml": 'spec.source.ref: Invalid value: "main branch": spec.source.ref in body should match',
    "raasjob-file-url.yaml": 'spec.source.url: Invalid value: "file:///etc": spec.source.url in body should match',
    "raasjob-missing-owner.yaml": "spec.owner: Required value",
    "raasjob-git-source-without-url.yaml": "spec.source.url: Required value",
    "raasjob-time-limit-too-long.yaml": "spec.time_limit_s in body should be less than or equal to 3600",
    "robot-missing-node.yaml": "spec.node_name: Required value",
    "robot-limit-out-of-bounds.yaml": "spec.limits.watchdog_ms in body should be less than or equal to 5000",
}
CEL_REFUSALS = {
    "raasjob-entrypoint-escapes.yaml": "entrypoint must be a relative path inside the repository, without '..'",
    "raasjob-ref-option-injection.yaml": "ref is not a valid git ref (no leading '-', no '..' or '//',",
}


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize(("file", "expected"), [*SCHEMA_REFUSALS.items(), *CEL_REFUSALS.items()])
def test_resource_breaking_the_schema_or_a_cel_rule_is_refused_with_the_servers_message(
    control_plane: ControlPlane, namespace: str, file: str, expected: str
) -> None:
    resource = load(BAD / file, namespace)
    admitted, output = dry_run_create(control_plane, resource)
    assert not admitted, output
    assert f'The {resource["kind"]} "{resource["metadata"]["name"]}" is invalid' in output
    assert expected in output


@pytest.mark.usefixtures("crds")
def test_raasjob_name_longer_than_a_label_value_is_refused_by_the_cel_rule(
    control_plane: ControlPlane, namespace: str
) -> None:
    job = load(EXAMPLES / "raasjob-swingup.yaml", namespace)
    job["metadata"]["name"] = "j" * 64
    admitted, output = dry_run_create(control_plane, job)
    assert not admitted
    assert "a RaasJob name is a label value on its pods: use at most 63 characters" in output


@pytest.mark.usefixtures("crds")
def test_unknown_fields_are_pruned_by_the_server_and_refused_by_kubectl_strict_validation(
    control_plane: ControlPlane, namespace: str, api: kubernetes.client.ApiClient
) -> None:
    job = load(BAD / "raasjob-unknown-field.yaml", namespace)
    refused = control_plane.kubectl("create", "-f", "-", input=json.dumps(job), check=False)
    assert refused.returncode != 0
    assert 'strict decoding error: unknown field "spec.gpu"' in refused.stderr
    objects = kubernetes.client.CustomObjectsApi(api)
    objects.create_namespaced_custom_object("raas.dev", "v1alpha1", namespace, "raasjobs", job)  # fieldValidation Warn
    stored = as_dict(
        objects.get_namespaced_custom_object("raas.dev", "v1alpha1", namespace, "raasjobs", "unknown-field")
    )
    assert "gpu" not in stored["spec"]
    assert stored["spec"]["owner"] == "ada"


@pytest.mark.usefixtures("crds")
def test_raasjob_status_is_written_only_through_its_subresource_and_spec_is_immutable(
    control_plane: ControlPlane, namespace: str, api: kubernetes.client.ApiClient
) -> None:
    objects = kubernetes.client.CustomObjectsApi(api)
    job = load(EXAMPLES / "raasjob-swingup.yaml", namespace)
    job["status"] = {"phase": "Succeeded"}
    created = as_dict(objects.create_namespaced_custom_object("raas.dev", "v1alpha1", namespace, "raasjobs", job))
    assert "status" not in created  # dropped on create: only the platform writes status

    def read() -> dict[str, Any]:
        return as_dict(objects.get_namespaced_custom_object("raas.dev", "v1alpha1", namespace, "raasjobs", "swingup"))

    objects.patch_namespaced_custom_object(
        "raas.dev", "v1alpha1", namespace, "raasjobs", "swingup", {"status": {"phase": "Running"}}
    )
    assert "status" not in read()
    objects.patch_namespaced_custom_object_status(
        "raas.dev", "v1alpha1", namespace, "raasjobs", "swingup",
        {"spec": {"owner": "mallory"}, "status": {"phase": "Queued", "queue_position": 2}},
    )  # fmt: skip
    after = read()
    assert after["status"]["phase"] == "Queued"
    assert after["status"]["queue_position"] == 2
    assert after["status"]["attempts"] == 0  # the schema's defaults fill the rest of the status
    assert after["spec"]["owner"] == "ada"
    bad_status = api_error(
        lambda: objects.patch_namespaced_custom_object_status(
            "raas.dev", "v1alpha1", namespace, "raasjobs", "swingup", {"status": {"phase": "Exploded"}}
        )
    )
    assert bad_status.status == 422
    assert 'status.phase: Unsupported value: "Exploded"' in message(bad_status)
    immutable = api_error(
        lambda: objects.patch_namespaced_custom_object(
            "raas.dev", "v1alpha1", namespace, "raasjobs", "swingup", {"spec": {"owner": "bob"}}
        )
    )
    assert immutable.status == 422
    assert "spec is immutable: delete the RaasJob and create a new one" in message(immutable)


@pytest.fixture
def robot(control_plane: ControlPlane, crds: None) -> Iterator[dict[str, Any]]:
    """The example Robot under a name of this test's own (Robots are cluster-wide); deleted after."""
    resource = load(EXAMPLES / "robot-pendulum-1.yaml")
    resource["metadata"]["name"] = f"pendulum-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "-f", "-", input=json.dumps(resource))
    yield resource
    control_plane.kubectl("delete", "robot", resource["metadata"]["name"], "--wait=false")


def test_robot_spec_and_status_are_written_apart(robot: dict[str, Any], api: kubernetes.client.ApiClient) -> None:
    objects = kubernetes.client.CustomObjectsApi(api)
    name = robot["metadata"]["name"]
    objects.patch_cluster_custom_object_status(
        "raas.dev", "v1alpha1", "robots", name,
        {"spec": {"maintenance": True}, "status": {"phase": "Ready", "jobs_completed": 3}},
    )  # fmt: skip
    objects.patch_cluster_custom_object(
        "raas.dev", "v1alpha1", "robots", name, {"spec": {"maintenance": True}, "status": {"phase": "Offline"}}
    )
    stored = as_dict(objects.get_cluster_custom_object("raas.dev", "v1alpha1", "robots", name))
    assert stored["spec"]["maintenance"] is True
    assert stored["status"]["phase"] == "Ready"
    assert stored["status"]["jobs_completed"] == 3
    negative = api_error(
        lambda: objects.patch_cluster_custom_object_status(
            "raas.dev", "v1alpha1", "robots", name, {"status": {"jobs_completed": -1}}
        )
    )
    assert "status.jobs_completed: Invalid value: -1: jobs_completed in body should be greater than or equal to 0" in (
        message(negative)
    )
    moved = api_error(
        lambda: objects.patch_cluster_custom_object(
            "raas.dev", "v1alpha1", "robots", name, {"spec": {"node_name": "pi-elsewhere"}}
        )
    )
    assert "node_name is immutable: delete the Robot and create one for the new node" in message(moved)


# --- kubectl as users type it ---------------------------------------------------------------------


@pytest.mark.usefixtures("crds")
def test_kubectl_get_rj_prints_phase_robot_queue_and_reward(control_plane: ControlPlane, namespace: str) -> None:
    for name in ("swingup", "waiting"):
        job = load(EXAMPLES / "raasjob-swingup.yaml", namespace)
        job["metadata"]["name"] = name
        control_plane.kubectl("create", "-f", "-", input=json.dumps(job))
    done = {"phase": "Succeeded", "robot": "pendulum-1", "reason": "Finished", "summary": {"total_reward": -123.5}}
    control_plane.kubectl(
        "-n",
        namespace,
        "patch",
        "rj",
        "swingup",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": done}),
    )
    control_plane.kubectl(
        "-n", namespace, "patch", "rj", "waiting", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Queued", "queue_position": 4}}),
    )  # fmt: skip
    output = control_plane.kubectl("-n", namespace, "get", "rj").stdout
    assert output.splitlines()[0].split() == ["NAME", "PHASE", "ROBOT", "QUEUE", "REWARD", "AGE"]
    rows = {row["NAME"]: row for row in table(output)}
    assert {key: rows["swingup"][key] for key in ("PHASE", "ROBOT", "QUEUE", "REWARD")} == {
        "PHASE": "Succeeded", "ROBOT": "pendulum-1", "QUEUE": "", "REWARD": "-123.5"
    }  # fmt: skip
    assert {key: rows["waiting"][key] for key in ("PHASE", "ROBOT", "QUEUE", "REWARD")} == {
        "PHASE": "Queued", "ROBOT": "", "QUEUE": "4", "REWARD": ""
    }  # fmt: skip
    wide = control_plane.kubectl("-n", namespace, "get", "raasjobs", "-o", "wide").stdout
    assert wide.splitlines()[0].split() == ["NAME", "PHASE", "ROBOT", "QUEUE", "REWARD", "OWNER", "REASON", "AGE"]
    assert {row["NAME"]: (row["OWNER"], row["REASON"]) for row in table(wide)} == {
        "swingup": ("ada", "Finished"),
        "waiting": ("ada", ""),
    }


def test_kubectl_get_robots_prints_phase_node_job_and_maintenance(
    control_plane: ControlPlane, robot: dict[str, Any]
) -> None:
    name = robot["metadata"]["name"]
    status = {"phase": "Busy", "current_job": "raas-jobs/swingup", "last_heartbeat": "2026-01-01T00:00:00Z"}
    control_plane.kubectl(
        "patch", "robot", name, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
    )
    output = control_plane.kubectl("get", "robots", name).stdout
    assert output.splitlines()[0].split() == ["NAME", "PHASE", "NODE", "JOB", "MAINTENANCE", "HEARTBEAT", "AGE"]
    (row,) = table(output)
    assert {key: row[key] for key in ("NAME", "PHASE", "NODE", "JOB", "MAINTENANCE")} == {
        "NAME": name, "PHASE": "Busy", "NODE": "pi-pendulum-1", "JOB": "raas-jobs/swingup", "MAINTENANCE": "false"
    }  # fmt: skip
    assert row["HEARTBEAT"].endswith(("d", "y"))  # an age (days or years ago), as kubectl prints dates
    wide = control_plane.kubectl("get", "rb", name, "-o", "wide").stdout
    (wide_row,) = table(wide)
    assert (wide_row["TYPE"], wide_row["COMPLETED"]) == ("pendulum", "0")


# --- the chart, installed for real --------------------------------------------------------------


def enforced_pod_security(plane: ControlPlane) -> dict[str, dict[str, str]]:
    """The Pod Security modes (enforce, warn, audit) of the three RaaS namespaces."""
    modes = {}
    for name in (SYSTEM, JOBS, "raas-robots"):
        labels = get(plane, "namespace", name)["metadata"]["labels"]
        modes[name] = {
            mode: labels.get(f"pod-security.kubernetes.io/{mode}", "") for mode in ("enforce", "warn", "audit")
        }
    return modes


def names(plane: ControlPlane, *args: str) -> set[str]:
    """The names of the objects ``kubectl get ARGS`` lists."""
    return {item["metadata"]["name"] for item in get(plane, *args)["items"]}


@pytest.mark.usefixtures("chart")
def test_helm_install_creates_namespaces_rbac_admission_policy_and_network_policies(
    control_plane: ControlPlane,
) -> None:
    (release,) = json.loads(control_plane.helm("list", "--namespace", SYSTEM, "-o", "json").stdout)
    assert (release["name"], release["status"]) == ("raas", "deployed")
    for crd in ("raasjobs.raas.dev", "robots.raas.dev", "kopfpeerings.kopf.dev"):
        control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}")
    hosts = {"enforce": "privileged", "warn": "restricted", "audit": "restricted"}
    assert enforced_pod_security(control_plane) == {
        SYSTEM: {"enforce": "restricted", "warn": "", "audit": ""},  # labelled by hand, as the README says
        JOBS: hosts,
        "raas-robots": hosts,
    }
    components = {"raas-agent", "raas-api", "raas-operator"}
    assert components <= names(control_plane, "clusterroles")
    assert components <= names(control_plane, "clusterrolebindings")
    assert names(control_plane, "-n", JOBS, "roles") == components
    assert names(control_plane, "-n", JOBS, "rolebindings") == components
    assert {"raas-api", "raas-operator"} <= names(control_plane, "-n", SYSTEM, "serviceaccounts")
    policy = get(control_plane, "validatingadmissionpolicy", "raas-job-pods")
    assert policy["spec"]["failurePolicy"] == "Fail"
    binding = get(control_plane, "validatingadmissionpolicybinding", "raas-job-pods")
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": JOBS
    }
    assert names(control_plane, "-n", JOBS, "networkpolicies") == {
        "raas-default-deny",
        "raas-job-egress",
        "raas-fetch-egress",
    }
    assert names(control_plane, "-n", JOBS, "kopfpeerings") == {"raas-operator"}


@pytest.mark.usefixtures("chart")
def test_swingup_example_applies_into_the_job_namespace(control_plane: ControlPlane) -> None:
    example = str(EXAMPLES / "raasjob-swingup.yaml")
    applied = control_plane.kubectl("apply", "-f", example)
    try:
        assert applied.stdout.strip() == "raasjob.raas.dev/swingup created"
        (row,) = table(control_plane.kubectl("-n", JOBS, "get", "rj", "swingup", "-o", "wide").stdout)
        assert (row["NAME"], row["OWNER"], row["PHASE"]) == ("swingup", "ada", "")  # no operator runs here
    finally:
        control_plane.kubectl("delete", "-f", example, "--wait=false")


# --- real admission of the operator's pods ------------------------------------------------------

HOSTPATH_WARNING = (
    'Warning: would violate PodSecurity "restricted:latest": restricted volume types '
    '(volume "agent" uses restricted volume type "hostPath")'
)


@pytest.mark.usefixtures("chart")
def test_job_pod_as_the_operator_builds_it_is_admitted_with_only_the_hostpath_warning(
    control_plane: ControlPlane,
) -> None:
    admitted, output = dry_run_create(control_plane, a_job_pod())
    assert admitted, output
    # The namespace warns at `restricted`: the agent's socket folder is the one thing it tolerates.
    assert [line for line in output.splitlines() if line.startswith("Warning:")] == [HOSTPATH_WARNING]


@pytest.mark.usefixtures("chart")
def test_fetch_pod_as_the_operator_builds_it_is_admitted_without_warnings(control_plane: ControlPlane) -> None:
    admitted, output = dry_run_create(control_plane, a_fetch_pod())
    assert admitted, output
    assert "Warning" not in output


def _hostpath_root(pod: dict[str, Any]) -> None:
    socket_volume(pod)["hostPath"]["path"] = "/"


def _socket_writable(pod: dict[str, Any]) -> None:
    socket_mount(pod)["readOnly"] = False


def _run_as_root(pod: dict[str, Any]) -> None:
    pod["spec"]["securityContext"]["runAsUser"] = 0
    pod["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0


def _run_as_non_root_off(pod: dict[str, Any]) -> None:
    pod["spec"]["initContainers"][0]["securityContext"]["runAsNonRoot"] = False


def _privileged(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["securityContext"].update(privileged=True, allowPrivilegeEscalation=True)


def _host_network(pod: dict[str, Any]) -> None:
    pod["spec"]["hostNetwork"] = True


def _capability(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]


UNSAFE = {
    "hostpath-root": (_hostpath_root, "job pods may use restricted volume types and the hostPath /run/raas only"),
    "socket-writable": (_socket_writable, "the agent's socket folder must be mounted read-only"),
    "uid-0": (_run_as_root, "job pods may not run as uid 0"),
    "run-as-non-root-off": (_run_as_non_root_off, "job pods must run as non-root (runAsNonRoot)"),
    "privileged": (_privileged, "job containers must set allowPrivilegeEscalation=false and may not be privileged"),
    "host-network": (_host_network, "job pods may not share the host's network, process or IPC namespaces"),
    "capability": (_capability, "job containers must drop ALL capabilities"),
}


@pytest.mark.usefixtures("chart")
@pytest.mark.parametrize("unsafe", UNSAFE, ids=list(UNSAFE))
def test_job_pod_made_unsafe_is_refused_by_the_admission_policy_with_its_message(
    control_plane: ControlPlane, api: kubernetes.client.ApiClient, unsafe: str
) -> None:
    change, expected = UNSAFE[unsafe]
    pod = copy.deepcopy(a_job_pod())
    change(pod)
    core = kubernetes.client.CoreV1Api(api)
    refused = api_error(lambda: core.create_namespaced_pod(JOBS, pod_body(pod), dry_run="All"))
    assert refused.status == 422, refused.body
    assert message(refused) == (
        "pods \"swingup-1\" is forbidden: ValidatingAdmissionPolicy 'raas-job-pods' with binding "
        f"'raas-job-pods' denied request: {expected}"
    )


def test_pod_security_restricted_alone_would_refuse_the_job_pod(control_plane: ControlPlane) -> None:
    """Why the job namespace enforces `privileged` plus a policy: `restricted` refuses the socket."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    with control_plane.namespace("raas-jobs-restricted", labels) as name:
        pod = a_job_pod()
        pod["metadata"]["namespace"] = name
        admitted, output = dry_run_create(control_plane, pod)
    assert not admitted
    assert (
        'pods "swingup-1" is forbidden: violates PodSecurity "restricted:latest": restricted volume types '
        '(volume "agent" uses restricted volume type "hostPath")'
    ) in output


# --- RBAC, asked of the server --------------------------------------------------------------------


def forbidden(call: Callable[[], object]) -> str:
    """The 403 message of `call`."""
    refused = api_error(call)
    assert refused.status == 403, refused.body
    return message(refused)


@pytest.mark.usefixtures("chart")
def test_operator_token_may_do_what_its_roles_grant_and_nothing_more(
    control_plane: ControlPlane, api: kubernetes.client.ApiClient
) -> None:
    with control_plane.api_client(token_for(control_plane, SYSTEM, "raas-operator")) as operator:
        objects = kubernetes.client.CustomObjectsApi(operator)
        core = kubernetes.client.CoreV1Api(operator)
        jobs = as_dict(objects.list_namespaced_custom_object("raas.dev", "v1alpha1", JOBS, "raasjobs"))
        assert jobs["items"] == []
        assert as_dict(objects.list_cluster_custom_object("raas.dev", "v1alpha1", "robots"))["kind"] == "RobotList"
        created = core.create_namespaced_pod(JOBS, pod_body(a_job_pod()), dry_run="All")  # RBAC and admission
        assert created.metadata is not None
        assert created.metadata.name == "swingup-1"
        user = "system:serviceaccount:raas-system:raas-operator"
        assert forbidden(lambda: core.read_namespaced_secret("anything", "kube-system")) == (
            f'secrets "anything" is forbidden: User "{user}" cannot get resource "secrets" in API group "" '
            'in the namespace "kube-system"'
        )
        # get a job's own Secret, but never list the namespace's (the API's tokens live there).
        assert "cannot list resource" in forbidden(lambda: core.list_namespaced_secret(JOBS))
        assert "cannot list resource" in forbidden(lambda: core.list_namespaced_pod(SYSTEM))
        assert "cannot delete resource" in forbidden(
            lambda: objects.delete_cluster_custom_object("raas.dev", "v1alpha1", "robots", "pendulum-1")
        )
        assert "cannot create resource" in forbidden(
            lambda: objects.create_namespaced_custom_object(
                "raas.dev", "v1alpha1", JOBS, "raasjobs", load(EXAMPLES / "raasjob-swingup.yaml")
            )
        )


@pytest.mark.usefixtures("chart")
def test_api_and_agent_tokens_cannot_create_pods_in_the_job_namespace(
    control_plane: ControlPlane, api: kubernetes.client.ApiClient
) -> None:
    for namespace, account in ((SYSTEM, "raas-api"), ("raas-robots", "raas-agent")):
        with control_plane.api_client(token_for(control_plane, namespace, account)) as client:
            core = kubernetes.client.CoreV1Api(client)
            user = f"system:serviceaccount:{namespace}:{account}"

            def create_pod(core: kubernetes.client.CoreV1Api = core) -> object:
                return core.create_namespaced_pod(JOBS, pod_body(a_job_pod()), dry_run="All")

            assert forbidden(create_pod) == (
                f'pods is forbidden: User "{user}" cannot create resource "pods" in API group "" '
                f'in the namespace "{JOBS}"'
            )
    with control_plane.api_client(token_for(control_plane, "raas-robots", "raas-agent")) as agent:
        core = kubernetes.client.CoreV1Api(agent)
        assert "cannot get resource" in forbidden(lambda: core.read_namespaced_secret("raas", SYSTEM))


# --- the install without Helm ---------------------------------------------------------------------


def test_kubectl_apply_k_manifests_installs_on_a_fresh_control_plane() -> None:
    """manifests/README.md's steps, on a control plane of its own (the chart owns the session's)."""
    with ControlPlane() as fresh:
        peering = MANIFESTS / "generated" / "kopfpeerings.kopf.dev.yaml"
        fresh.kubectl("apply", "--server-side", "-f", str(CRDS), "-f", str(peering))
        fresh.kubectl(
            "wait", "--for=condition=established", "--timeout=60s",
            "crd/kopfpeerings.kopf.dev", "crd/raasjobs.raas.dev", "crd/robots.raas.dev",
        )  # fmt: skip
        applied = fresh.kubectl("apply", "--server-side", "-k", str(MANIFESTS)).stdout
        assert "validatingadmissionpolicy.admissionregistration.k8s.io/raas-job-pods serverside-applied" in applied
        assert "kopfpeering.kopf.dev/raas-operator serverside-applied" in applied
        again = fresh.kubectl("apply", "-k", str(MANIFESTS))  # the plain form, once the CRDs exist
        assert "deployment.apps/raas-operator configured" in again.stdout, again.stdout
        hosts = {"enforce": "privileged", "warn": "restricted", "audit": "restricted"}
        restricted = {"enforce": "restricted", "warn": "restricted", "audit": "restricted"}
        assert enforced_pod_security(fresh) == {SYSTEM: restricted, JOBS: hosts, "raas-robots": hosts}
        deployments = table(fresh.kubectl("-n", SYSTEM, "get", "deployments").stdout)
        assert {row["NAME"] for row in deployments} == {"raas-api", "raas-operator"}
        example = fresh.kubectl("apply", "--dry-run=server", "-f", str(EXAMPLES))
        assert "raasjob.raas.dev/swingup created (server dry run)" in example.stdout


# --- the fixture's own failures -----------------------------------------------------------------


def test_missing_binaries_fail_with_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etcd").write_text("#!/bin/sh\n")
    (tmp_path / "etcd").chmod(0o755)
    monkeypatch.setenv("RAAS_CONTROLPLANE_BIN", str(tmp_path))
    with pytest.raises(ControlPlaneError) as missing:
        ControlPlane()
    assert str(missing.value) == (
        "control-plane binaries kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm are missing "
        f"from {tmp_path}: run `make controlplane` (or point RAAS_CONTROLPLANE_BIN at the folder "
        "tests/controlplane/build.sh prints)"
    )


def test_a_taken_port_fails_the_start_with_the_servers_log_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    folders = set(Path(tempfile.gettempdir()).glob("raas-controlplane.*"))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        chosen = cluster.free_ports(5)
        monkeypatch.setattr(cluster, "free_ports", lambda count: [taken, *chosen[1:count]])
        plane = ControlPlane()
        with pytest.raises(ControlPlaneError) as failed:
            plane.start()
    assert str(failed.value).startswith("etcd exited with status 1 during start-up (a port taken or a bad flag;")
    assert "address already in use" in str(failed.value)
    assert plane.work is None
    assert set(Path(tempfile.gettempdir()).glob("raas-controlplane.*")) <= folders  # its temp folder is gone
