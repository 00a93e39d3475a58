"""What the chart grants and denies: where the agent runs and what of the host it gets, the pods'
security contexts, RBAC verbs exactly as the deployment contract says, the job namespace's
NetworkPolicies against the labels the operator really puts on its pods, and the Pod Security
labels of the namespaces.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import celpy
import pytest
from celpy.adapter import json_to_cel
from deploy.chart_rendering import PROMETHEUS_OPERATOR, by_kind, chart_copy, one, pod_templates, render_objects

from raas_operator.jobs.model import JobSpec
from raas_operator.pods import PodSettings, fetch_pod, job_pod

VIRTUAL = {"agent": {"virtualRobots": {"enabled": True}}}
EXTERNAL_S3 = {
    "minio": {
        "enabled": False,
        "external": {"endpoint": "s3.lab.example:443", "existingSecret": "lab-s3", "egressCIDRs": ["192.0.2.10/32"]},
    }
}


@pytest.fixture(scope="module")
def chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chart_copy(tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="module")
def objects(chart_dir: Path) -> list[dict[str, Any]]:
    return render_objects(chart_dir, api_versions=PROMETHEUS_OPERATOR)


def agent_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "DaemonSet", "raas-agent")["spec"]["template"]["spec"]
    return spec


# --- the robot agent ------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, VIRTUAL], ids=["robots", "virtual-robots"])
def test_the_agent_runs_only_on_robot_nodes_and_tolerates_their_taint(chart_dir: Path, values: dict[str, Any]) -> None:
    pod = agent_pod(render_objects(chart_dir, values))
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "raas.dev/robot", "operator": "Exists"}]}]
    assert "nodeSelector" not in pod
    assert {"key": "raas.dev/robot", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert all(toleration.get("key") == "raas.dev/robot" for toleration in pod["tolerations"])


def test_the_agent_gets_exactly_the_host_access_it_needs(objects: list[dict[str, Any]]) -> None:
    pod = agent_pod(objects)
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert not pod.get("hostPID")
    assert not pod.get("hostIPC")
    host_paths = {volume["name"]: volume["hostPath"] for volume in pod["volumes"] if "hostPath" in volume}
    assert host_paths == {
        "socket": {"path": "/run/raas", "type": "DirectoryOrCreate"},
        "state": {"path": "/var/lib/raas", "type": "DirectoryOrCreate"},
    }
    (container,) = pod["containers"]
    assert "ports" not in container or all("hostPort" not in port for port in container["ports"])
    assert pod["securityContext"]["runAsUser"] == 0
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_agent_command_and_environment_follow_the_contract(objects: list[dict[str, Any]]) -> None:
    (container,) = agent_pod(objects)["containers"]
    assert container["command"] == [
        "/opt/raas/bin/raas-agent",
        "run",
        "--kubernetes",
        "--driver",
        "pigpio",
        "--socket",
        "/run/raas/agent.sock",
        "--recordings",
        "/var/lib/raas/recordings",
        "--metrics-port",
        "9105",
        "--drain-timeout",
        "600",
        "--pigpio-host",
        "127.0.0.1",
        "--pigpio-port",
        "8888",
    ]
    env = {item["name"]: item for item in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["RAAS_AGENT_SESSION_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "session-key"
    assert {"RAAS_AGENT_S3_ACCESS_KEY", "RAAS_AGENT_S3_SECRET_KEY"} <= env.keys()
    assert "RAAS_AGENT_ROBOT" not in env  # the robot's name comes from the node's label
    config = one(objects, "ConfigMap", "raas-agent")["data"]
    assert set(config) == {
        "RAAS_AGENT_JOB_NAMESPACE",
        "RAAS_AGENT_S3_ENDPOINT",
        "RAAS_AGENT_S3_BUCKET",
        "RAAS_AGENT_S3_SECURE",
        "RAAS_AGENT_CALIBRATION",
    }
    assert config["RAAS_AGENT_JOB_NAMESPACE"] == "raas-jobs"
    assert config["RAAS_AGENT_CALIBRATION"] == "/var/lib/raas/calibration.json"  # in the mounted state folder
    # A rollout or node drain lets the running job finish: the grace period outlasts the drain.
    assert agent_pod(objects)["terminationGracePeriodSeconds"] == 630
    assert one(objects, "DaemonSet", "raas-agent")["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1},
    }  # one robot at a time
    assert container["livenessProbe"]["tcpSocket"] == {"port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 9105, "protocol": "TCP"}]


def test_every_robot_node_pulls_the_job_image_before_its_first_job(
    objects: list[dict[str, Any]], chart_dir: Path
) -> None:
    prepull = one(objects, "DaemonSet", "raas-job-image")
    assert prepull["metadata"]["namespace"] == "raas-robots"
    spec = prepull["spec"]["template"]["spec"]
    agent = agent_pod(objects)
    assert spec["affinity"] == agent["affinity"]  # the robot nodes, as the agent
    assert spec["tolerations"] == agent["tolerations"]
    (container,) = spec["containers"]
    job_image = one(objects, "ConfigMap", "raas-operator")["data"]["RAAS_OPERATOR_IMAGE"]
    assert container["image"] == job_image  # exactly the image the job pods will run
    assert container["command"] == ["sleep", "infinity"]
    # Restricted in every way: no token, no root, no privileges, a few MiB.
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["memory"] == "16Mi"
    assert "hostNetwork" not in spec
    assert not any("hostPath" in volume for volume in spec.get("volumes", []))
    switched_off = render_objects(chart_dir, {"agent": {"prePullJobImage": False}})
    assert not [item for item in by_kind(switched_off, "DaemonSet") if item["metadata"]["name"] == "raas-job-image"]


def test_virtual_robots_use_the_simulator_without_the_host_network(chart_dir: Path) -> None:
    pod = agent_pod(render_objects(chart_dir, VIRTUAL))
    assert pod["hostNetwork"] is False
    assert pod["dnsPolicy"] == "ClusterFirst"
    command = pod["containers"][0]["command"]
    assert command[command.index("--driver") + 1] == "sim"
    assert not {"--pigpio-host", "--pigpio-port"} & set(command)
    assert {volume["hostPath"]["path"] for volume in pod["volumes"] if "hostPath" in volume} == {
        "/run/raas",
        "/var/lib/raas",
    }


# --- every pod template ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, VIRTUAL, EXTERNAL_S3], ids=["defaults", "virtual-robots", "external-s3"])
def test_every_pod_template_is_hardened(chart_dir: Path, values: dict[str, Any]) -> None:
    templates = pod_templates(render_objects(chart_dir, values))
    assert {"Deployment/raas-api", "Deployment/raas-operator", "DaemonSet/raas-agent"} <= templates.keys()
    for name, template in templates.items():
        pod = template["spec"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not pod.get("hostPID"), name
        assert not pod.get("hostIPC"), name
        assert pod.get("enableServiceLinks") is False, name
        if name != "DaemonSet/raas-agent":
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["securityContext"]["runAsUser"] != 0, name
            assert not pod.get("hostNetwork"), name
            assert not [volume for volume in pod.get("volumes", []) if "hostPath" in volume], name
        for volume in pod.get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), f"{name}: {volume['name']}"
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["privileged"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][bound].keys(), f"{name}: {bound}"


def test_only_pods_that_call_the_api_server_get_a_token(objects: list[dict[str, Any]]) -> None:
    templates = pod_templates(objects)
    tokens = {name for name, template in templates.items() if template["spec"].get("automountServiceAccountToken")}
    assert tokens == {"Deployment/raas-api", "Deployment/raas-operator", "DaemonSet/raas-agent"}
    for account in by_kind(objects, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_the_operator_runs_two_peered_replicas_with_a_disruption_budget(objects: list[dict[str, Any]]) -> None:
    deployment = one(objects, "Deployment", "raas-operator")
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == [
        "/opt/raas/bin/raas-operator",
        "--priority",
        "auto",
        "--liveness",
        "http://0.0.0.0:8080/healthz",
        "--metrics-port",
        "9106",
    ]
    budget = one(objects, "PodDisruptionBudget", "raas-operator")["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"] == deployment["spec"]["selector"]
    peering = one(objects, "KopfPeering", "raas-operator")
    assert (peering["apiVersion"], peering["metadata"]["namespace"]) == ("kopf.dev/v1", "raas-jobs")


def test_a_single_operator_gets_no_disruption_budget(chart_dir: Path) -> None:
    assert not by_kind(render_objects(chart_dir, {"operator": {"replicas": 1}}), "PodDisruptionBudget")


# --- RBAC -----------------------------------------------------------------------------------------

CONTRACT_RBAC: dict[tuple[str, str], dict[tuple[str, str], set[str]]] = {
    ("ClusterRole", "raas-agent"): {
        ("raas.dev", "robots"): {"get", "list", "watch", "create", "patch"},
        ("raas.dev", "robots/status"): {"get", "patch", "update"},
        ("", "nodes"): {"get"},
        ("", "events"): {"create"},
    },
    ("Role", "raas-jobs/raas-agent"): {("raas.dev", "raasjobs"): {"get", "list"}},
    ("Role", "raas-jobs/raas-operator"): {
        ("raas.dev", "raasjobs"): {"get", "list", "watch", "patch", "update", "delete"},  # delete: the TTL
        ("raas.dev", "raasjobs/status"): {"get", "list", "watch", "patch", "update"},
        ("", "pods"): {"get", "list", "watch", "create", "delete"},
        ("", "pods/log"): {"get"},
        ("", "secrets"): {"get", "create", "delete"},  # delete: a retry makes its immutable session token anew
        ("", "events"): {"create", "patch"},
        ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"},
    },
    ("ClusterRole", "raas-operator"): {
        ("raas.dev", "robots"): {"get", "list", "watch", "patch"},
        ("raas.dev", "robots/status"): {"get", "list", "watch", "patch"},
        ("", "events"): {"create"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
        ("", "namespaces"): {"get", "list", "watch"},
        ("", "nodes"): {"get", "list", "watch"},  # a robot whose Node is NotReady is out of service
    },
    ("Role", "raas-jobs/raas-api"): {
        ("raas.dev", "raasjobs"): {"get", "list", "watch", "create", "delete", "patch"},
        ("", "pods/log"): {"get"},
        ("", "events"): {"list"},
        ("", "secrets"): {"get", "list", "create", "patch"},  # API tokens (raas_api.auth.kubernetes_tokens)
    },
    ("ClusterRole", "raas-api"): {("raas.dev", "robots"): {"get", "list", "watch", "patch"}},
}
"""The deployment contract's RBAC, written out: (kind, [namespace/]name) → (apiGroup, resource) → verbs."""


def granted(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[tuple[str, str], set[str]]]:
    found: dict[tuple[str, str], dict[tuple[str, str], set[str]]] = {}
    for role in by_kind(objects, "Role") + by_kind(objects, "ClusterRole"):
        metadata = role["metadata"]
        key = (
            role["kind"],
            f"{metadata['namespace']}/{metadata['name']}" if "namespace" in metadata else metadata["name"],
        )
        rules = found.setdefault(key, {})
        for rule in role["rules"]:
            assert not rule.get("resourceNames"), key
            assert not rule.get("nonResourceURLs"), key
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    rules.setdefault((group, resource), set()).update(rule["verbs"])
    return found


def test_rbac_grants_exactly_the_contract(objects: list[dict[str, Any]]) -> None:
    assert granted(objects) == CONTRACT_RBAC


def test_no_role_uses_wildcards_or_escalating_verbs(objects: list[dict[str, Any]]) -> None:
    for resources, verbs in ((key, verbs) for rules in granted(objects).values() for key, verbs in rules.items()):
        assert "*" not in verbs
        assert "*" not in resources
        assert not {"escalate", "bind", "impersonate"} & verbs


def test_each_role_is_bound_to_its_component_account_only(objects: list[dict[str, Any]]) -> None:
    accounts = {
        (item["metadata"]["namespace"], item["metadata"]["name"]) for item in by_kind(objects, "ServiceAccount")
    }
    assert accounts == {("raas-system", "raas-api"), ("raas-system", "raas-operator"), ("raas-robots", "raas-agent")}
    bindings = by_kind(objects, "RoleBinding") + by_kind(objects, "ClusterRoleBinding")
    assert len(bindings) == len(CONTRACT_RBAC)
    for binding in bindings:
        (subject,) = binding["subjects"]
        assert subject["kind"] == "ServiceAccount"
        assert subject["name"] == binding["roleRef"]["name"] == binding["metadata"]["name"]
        assert (subject["namespace"], subject["name"]) in accounts
        assert binding["roleRef"]["kind"] == binding["kind"].replace("Binding", "")


# --- NetworkPolicies ------------------------------------------------------------------------------

SETTINGS = PodSettings(image="localhost/raas-job:0.1.0")
SPEC = JobSpec.model_validate({"owner": "ada", "source": {"kind": "git", "url": "https://github.com/ada/c.git"}})
UID = "6f1c9a52-0000-4000-8000-000000000001"
JOB_POD = job_pod(
    job_name="swingup",
    namespace="raas-jobs",
    job_uid=UID,
    spec=SPEC,
    robot="pendulum-1",
    commit="c" * 40,
    code_url="http://raas-minio.raas-system.svc.cluster.local:9000/raas-results/code.tar.gz?sig=1",
    settings=SETTINGS,
)
FETCH_POD = fetch_pod(
    job_name="swingup", namespace="raas-jobs", job_uid=UID, command=["python", "-m", "x"], settings=SETTINGS
)
DNS_RULE = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
MINIO_RULE = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "raas-system"}},
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "raas",
                    "app.kubernetes.io/instance": "raas",
                    "app.kubernetes.io/component": "minio",
                }
            },
        }
    ],
    "ports": [{"protocol": "TCP", "port": 9000}],
}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector with matchLabels only (what the chart uses) selects these labels."""
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def policies_for(objects: list[dict[str, Any]], pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        policy
        for policy in by_kind(objects, "NetworkPolicy")
        if policy["metadata"]["namespace"] == pod["metadata"]["namespace"]
        and selects(policy["spec"]["podSelector"], pod["metadata"]["labels"])
    ]


def allowed_egress(objects: list[dict[str, Any]], pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The union of egress rules of the policies that select the pod (NetworkPolicies are additive)."""
    policies = policies_for(objects, pod)
    assert any("Egress" in policy["spec"]["policyTypes"] for policy in policies), "egress is not isolated"
    return [rule for policy in policies for rule in policy["spec"].get("egress", [])]


def test_job_pods_may_reach_only_minio_and_dns(objects: list[dict[str, Any]]) -> None:
    assert allowed_egress(objects, JOB_POD) == [MINIO_RULE, DNS_RULE]


def test_job_and_fetch_pods_accept_no_connections(objects: list[dict[str, Any]]) -> None:
    for pod in (JOB_POD, FETCH_POD):
        policies = policies_for(objects, pod)
        assert any("Ingress" in policy["spec"]["policyTypes"] for policy in policies)
        assert [rule for policy in policies for rule in policy["spec"].get("ingress", [])] == []


def test_fetch_pods_may_reach_git_ports_outside_the_cluster_minio_and_dns(objects: list[dict[str, Any]]) -> None:
    git_rule, *rest = allowed_egress(objects, FETCH_POD)
    assert rest == [MINIO_RULE, DNS_RULE]
    private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]
    assert git_rule == {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": private}}],
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 9418}],
    }
    # Every private range is out of reach by default: the campus network, the nodes, the cluster.
    for address in ("10.42.0.7", "10.43.0.1", "172.20.1.1", "192.168.1.10", "100.64.0.1", "169.254.169.254"):
        assert any(ipaddress.ip_address(address) in ipaddress.ip_network(cidr) for cidr in private), address


def test_a_lab_lets_fetch_pods_reach_its_own_git_server_and_nothing_else_private(chart_dir: Path) -> None:
    lab = {"networkPolicy": {"fetch": {"allowedCIDRs": [{"cidr": "10.1.2.3/32", "ports": [443, 3128]}]}}}
    _, lab_rule, *rest = allowed_egress(render_objects(chart_dir, lab), FETCH_POD)
    assert lab_rule == {
        "to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 3128}],
    }
    assert rest == [MINIO_RULE, DNS_RULE]
    broken_values = (
        [{"cidr": "10.1.2.3/32"}],
        [{"cidr": "not-a-cidr", "ports": [443]}],
        [{"cidr": "10.1.2.3/32", "ports": [0]}],
    )
    for broken in broken_values:
        with pytest.raises(Exception, match="allowedCIDRs"):
            render_objects(chart_dir, {"networkPolicy": {"fetch": {"allowedCIDRs": broken}}})


def test_with_an_external_s3_job_pods_reach_only_its_addresses(chart_dir: Path) -> None:
    objects = render_objects(chart_dir, EXTERNAL_S3)
    assert allowed_egress(objects, JOB_POD) == [
        {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": [{"protocol": "TCP", "port": 443}]},
        DNS_RULE,
    ]


def test_the_policies_select_the_labels_the_operator_really_uses(objects: list[dict[str, Any]]) -> None:
    names = {policy["metadata"]["name"] for policy in policies_for(objects, JOB_POD)}
    assert names == {"raas-default-deny", "raas-job-egress"}
    names = {policy["metadata"]["name"] for policy in policies_for(objects, FETCH_POD)}
    assert names == {"raas-default-deny", "raas-fetch-egress"}


@pytest.mark.parametrize("values", [{}, VIRTUAL], ids=["robots", "virtual-robots"])
def test_job_pods_cannot_reach_pigpiod_on_their_robot_node(chart_dir: Path, values: dict[str, Any]) -> None:
    """pigpiod listens on the robot node's localhost with no authentication (docs/k3s-raspberry-pi.md):
    a job pod must have a localhost of its own (no host network: neither from the pod builder nor
    allowed by the admission policy) and no egress to any IP range (node addresses, port 8888)."""
    objects = render_objects(chart_dir, values)
    spec = JOB_POD["spec"]
    assert not spec.get("hostNetwork")
    assert not spec.get("hostPID")
    containers = spec["containers"] + spec.get("initContainers", [])
    assert all("hostPort" not in port for container in containers for port in container.get("ports", []))
    validations = one(objects, "ValidatingAdmissionPolicy", "raas-job-pods")["spec"]["validations"]
    (host_namespaces,) = [rule for rule in validations if "hostNetwork" in rule["expression"]]
    allows = celpy.Environment().program(celpy.Environment().compile(host_namespaces["expression"]))
    on_host_network = {**JOB_POD, "spec": {**spec, "hostNetwork": True}}
    assert allows.evaluate({"object": json_to_cel(JOB_POD)}) == celpy.celtypes.BoolType(True)
    assert allows.evaluate({"object": json_to_cel(on_host_network)}) == celpy.celtypes.BoolType(False)
    egress = allowed_egress(objects, JOB_POD)
    peers = [peer for rule in egress for peer in rule["to"]]
    assert peers
    assert all("ipBlock" not in peer and "podSelector" in peer for peer in peers), peers
    assert {port["port"] for rule in egress for port in rule["ports"]} == {9000, 53}


def test_network_policies_can_be_left_to_the_lab(chart_dir: Path) -> None:
    assert not by_kind(render_objects(chart_dir, {"networkPolicy": {"enabled": False}}), "NetworkPolicy")


# --- namespaces -----------------------------------------------------------------------------------


def test_namespaces_carry_pod_security_labels(objects: list[dict[str, Any]]) -> None:
    namespaces = {item["metadata"]["name"]: item["metadata"]["labels"] for item in by_kind(objects, "Namespace")}
    assert set(namespaces) == {"raas-jobs", "raas-robots"}
    for labels in namespaces.values():
        assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
        assert labels["pod-security.kubernetes.io/audit"] == "restricted"
        assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    workloads = {
        item["kind"]: item["metadata"]["namespace"] for item in objects if item["kind"] in {"DaemonSet", "StatefulSet"}
    }
    assert workloads == {"DaemonSet": "raas-robots", "StatefulSet": "raas-system"}
    for name in ("raas-api", "raas-operator"):
        assert one(objects, "Deployment", name)["metadata"]["namespace"] == "raas-system"


def test_existing_namespaces_are_not_created(chart_dir: Path) -> None:
    objects = render_objects(chart_dir, {"namespaces": {"create": False, "jobs": "lab-jobs", "robots": "lab-robots"}})
    assert not by_kind(objects, "Namespace")
    assert one(objects, "KopfPeering", "raas-operator")["metadata"]["namespace"] == "lab-jobs"
    assert one(objects, "DaemonSet", "raas-agent")["metadata"]["namespace"] == "lab-robots"
