"""The job namespace's ValidatingAdmissionPolicy, evaluated with cel-python on real pods.

Pod Security cannot allow a single read-only hostPath (the agent's socket folder) without
allowing all of them, so the job namespace enforces ``privileged`` and this policy enforces the
rest of ``restricted``. No API server runs here: the policy's variables and validations are
compiled and evaluated with cel-python (RE2, as the API server) in the order the API server
uses, on the pods the operator's builders really make (which must pass) and on pods that break
one rule each (which must be refused with that rule's message). Kubernetes' CEL type-checking
against the Pod schema is not reproduced.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celpy
import pytest
from celpy.adapter import json_to_cel
from deploy.chart_rendering import chart_copy, one, render_objects

from raas_operator.jobs.model import JobSpec
from raas_operator.pods import PodSettings, fetch_pod, job_pod

CEL = celpy.Environment()
SETTINGS = PodSettings(image="localhost/raas-job:0.1.0")
SPEC = JobSpec.model_validate({"owner": "ada", "source": {"kind": "git", "url": "https://github.com/ada/c.git"}})
UID = "6f1c9a52-0000-4000-8000-000000000001"


def a_job_pod(wheels_url: str | None = None) -> dict[str, Any]:
    return job_pod(
        job_name="swingup",
        namespace="raas-jobs",
        job_uid=UID,
        spec=SPEC,
        robot="pendulum-1",
        commit="c" * 40,
        code_url="http://raas-minio:9000/b/code.tar.gz?sig=1",
        settings=SETTINGS,
        wheels_url=wheels_url,
    )


def a_fetch_pod() -> dict[str, Any]:
    return fetch_pod(
        job_name="swingup", namespace="raas-jobs", job_uid=UID, command=["python", "-m", "x"], settings=SETTINGS
    )


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    chart_dir: Path = chart_copy(tmp_path_factory.mktemp("chart"))
    objects = render_objects(chart_dir)
    binding = one(objects, "ValidatingAdmissionPolicyBinding", "raas-job-pods")
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "raas-jobs"}
    }
    spec: dict[str, Any] = one(objects, "ValidatingAdmissionPolicy", "raas-job-pods")["spec"]
    return spec


def refusals(policy: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    """Messages of the validations the pod fails (variables evaluated first, in order)."""
    activation: dict[str, Any] = {"object": json_to_cel(pod)}
    variables: dict[str, Any] = {}
    for variable in policy.get("variables", []):
        activation["variables"] = celpy.celtypes.MapType(variables)
        program = CEL.program(CEL.compile(variable["expression"]))
        variables[celpy.celtypes.StringType(variable["name"])] = program.evaluate(activation)
    activation["variables"] = celpy.celtypes.MapType(variables)
    failed = []
    for validation in policy["validations"]:
        result = CEL.program(CEL.compile(validation["expression"])).evaluate(activation)
        if result != celpy.celtypes.BoolType(True):
            failed.append(validation["message"])
    return failed


def test_the_pods_the_operator_builds_are_admitted(policy: dict[str, Any]) -> None:
    assert refusals(policy, a_job_pod()) == []
    assert refusals(policy, a_job_pod(wheels_url="http://raas-minio:9000/b/wheels.tar.gz?sig=2")) == []  # + install
    assert refusals(policy, a_fetch_pod()) == []


def _host_network(pod: dict[str, Any]) -> None:
    pod["spec"]["hostNetwork"] = True


def _other_host_path(pod: dict[str, Any]) -> None:
    pod["spec"]["volumes"].append({"name": "root", "hostPath": {"path": "/"}})


def _writable_socket_folder(pod: dict[str, Any]) -> None:
    for mount in pod["spec"]["containers"][0]["volumeMounts"]:
        if mount["name"] == "agent":
            del mount["readOnly"]


def _root_container(pod: dict[str, Any]) -> None:
    pod["spec"]["initContainers"][0]["securityContext"]["runAsUser"] = 0


def _no_run_as_non_root(pod: dict[str, Any]) -> None:
    del pod["spec"]["securityContext"]["runAsNonRoot"]
    del pod["spec"]["containers"][0]["securityContext"]["runAsNonRoot"]


def _escalation(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True


def _added_capability(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]


def _unconfined(pod: dict[str, Any]) -> None:
    pod["spec"]["securityContext"]["seccompProfile"] = {"type": "Unconfined"}


def _host_port(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80}]


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "host-network": (_host_network, "job pods may not share the host's network, process or IPC namespaces"),
    "other-host-path": (_other_host_path, "job pods may use restricted volume types and the hostPath /run/raas only"),
    "writable-socket-folder": (_writable_socket_folder, "the agent's socket folder must be mounted read-only"),
    "root-init-container": (_root_container, "job pods may not run as uid 0"),
    "no-run-as-non-root": (_no_run_as_non_root, "job pods must run as non-root (runAsNonRoot)"),
    "privilege-escalation": (
        _escalation,
        "job containers must set allowPrivilegeEscalation=false and may not be privileged",
    ),
    "added-capability": (_added_capability, "job containers must drop ALL capabilities"),
    "unconfined": (_unconfined, "job pods need the RuntimeDefault or a Localhost seccomp profile"),
    "host-port": (_host_port, "job pods may not use host ports"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_pod_breaking_one_rule_is_refused_for_that_rule(policy: dict[str, Any], breakage: str) -> None:
    change, message = BREAKAGES[breakage]
    pod = copy.deepcopy(a_job_pod())
    change(pod)
    assert refusals(policy, pod) == [message]


def test_the_policy_follows_the_socket_folder_value(tmp_path: Path) -> None:
    objects = render_objects(chart_copy(tmp_path), {"agent": {"socketDir": "/srv/raas"}})
    spec = one(objects, "ValidatingAdmissionPolicy", "raas-job-pods")["spec"]
    assert refusals(spec, a_job_pod()) == ["job pods may use restricted volume types and the hostPath /srv/raas only"]


def test_the_policy_can_be_switched_off(tmp_path: Path) -> None:
    objects = render_objects(chart_copy(tmp_path), {"admissionPolicy": {"enabled": False}})
    assert not [item for item in objects if item["kind"].startswith("ValidatingAdmissionPolicy")]
