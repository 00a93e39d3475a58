"""The stand-in kubelet with real podman containers, pod by pod, as a node of the real control
plane (the session's ``control_plane``; a namespace and a node of each test's own).

Hand-written pods (not the operator's) so that each part of the translation is seen to work on
its own: init and main containers sharing an emptyDir, the pod status as Kubernetes writes it,
termination messages, a missing Secret, runAsNonRoot, an OOM kill, activeDeadlineSeconds and
deletion. Podman is installed by scripts/install-system-deps (as root): without it these tests
fail, they do not skip.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from controlplane.cluster import ControlPlane
from kubernetes import client

from kubelet.environment import ContainerConfigError
from kubelet.kubelet import StandInKubelet
from kubelet.node import Node
from kubelet.podman import PodmanRuntime, remove_leftover_containers
from kubelet.podman_args import podman_plan
from kubelet.quantities import to_bytes, to_cpus
from raas_node.runner.image import IMAGE_PYTHON

IMAGE = "registry.example/raas-job:1"
NOBODY = {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534}
LOCKED = {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


class Cluster:
    def __init__(self, core: client.CoreV1Api, kubelet: StandInKubelet, namespace: str, node: str) -> None:
        self.core, self.kubelet, self.namespace, self.node = core, kubelet, namespace, node

    def create(self, name: str, containers: list[dict[str, Any]], **spec: Any) -> None:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 2, "automountServiceAccountToken": False,
                "nodeSelector": {"kubernetes.io/hostname": self.node}, "containers": containers, **spec,
            },
        }  # fmt: skip
        self.core.create_namespaced_pod(self.namespace, cast(Any, pod), _preload_content=False)

    def log(self, name: str) -> str:
        return str(self.core.read_namespaced_pod_log(name, self.namespace))

    def pod(self, name: str) -> dict[str, Any]:
        response = cast(Any, self.core.read_namespaced_pod(name, self.namespace, _preload_content=False))
        return cast(dict[str, Any], json.loads(response.data))

    def wait(self, name: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pod = self.pod(name)
            if done(pod):
                return pod
            time.sleep(0.2)
        raise AssertionError(f"{name}: {self.pod(name).get('status')}\nkubelet: {self.kubelet.errors}")

    def ended(self, name: str) -> dict[str, Any]:
        return self.wait(name, lambda pod: (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"))


@pytest.fixture
def cluster(control_plane: ControlPlane, namespace: str, runtime_image: str) -> Iterator[Cluster]:
    node = Node(f"node-{secrets.token_hex(3)}", PodmanRuntime({IMAGE: runtime_image}))
    kubelet = StandInKubelet(control_plane, [node], namespaces=[namespace])
    with kubelet, control_plane.api_client() as admin:
        yield Cluster(client.CoreV1Api(admin), kubelet, namespace, node.name)
    leftovers = remove_leftover_containers()
    assert leftovers == [], f"containers left behind: {leftovers}"
    assert kubelet.errors == []


def waiting_reason(pod: dict[str, Any]) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return str(statuses[0].get("state", {}).get("waiting", {}).get("reason", ""))


def waiting_message(pod: dict[str, Any]) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return str(statuses[0].get("state", {}).get("waiting", {}).get("message", ""))


def python(name: str, program: str, **container: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "command": [IMAGE_PYTHON, "-c", program], **container}


def test_init_and_main_containers_share_an_empty_dir_and_the_status_follows_kubernetes(cluster: Cluster) -> None:
    writer = "open('/shared/greeting', 'w').write('hello from init')"
    reader = (
        "import os\n"
        "print(open('/shared/greeting').read(), os.getuid(), os.getgid(), sorted(os.getgroups()))\n"
        "open('/dev/termination-log', 'w').write('all good')\n"
    )
    mounts = [{"name": "shared", "mountPath": "/shared"}]
    cluster.create(
        "share",
        [python("main", reader, volumeMounts=mounts, securityContext=LOCKED)],
        initContainers=[python("init", writer, volumeMounts=mounts, securityContext=LOCKED)],
        securityContext={**NOBODY, "fsGroup": 2000},
        volumes=[{"name": "shared", "emptyDir": {"sizeLimit": "1Mi"}}],
    )
    status = cluster.ended("share")["status"]
    assert status["phase"] == "Succeeded"
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    main = status["containerStatuses"][0]["state"]["terminated"]
    assert (main["exitCode"], main["reason"], main["message"]) == (0, "Completed", "all good")
    assert cluster.log("share") == "hello from init 65534 65534 [2000, 65534]\n"
    assert cluster.pod("share")["spec"]["nodeName"] == cluster.node


def test_an_empty_dir_holds_no_more_than_its_size_limit(cluster: Cluster) -> None:
    program = "open('/scratch/big', 'wb').write(bytes(2 * 1024 * 1024))"
    cluster.create(
        "full",
        [python("main", program, volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}])],
        volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}],
    )
    status = cluster.ended("full")["status"]
    assert status["phase"] == "Failed"
    assert "No space left on device" in cluster.log("full")


def test_a_failed_container_with_fallback_to_logs_gets_its_last_lines_as_message(cluster: Cluster) -> None:
    program = "import sys\nprint('first')\nprint('the last words')\nsys.exit(3)"
    cluster.create("fails", [python("main", program, terminationMessagePolicy="FallbackToLogsOnError")])
    status = cluster.ended("fails")["status"]
    assert status["phase"] == "Failed"
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert terminated["message"].endswith("the last words")


def test_a_failed_init_container_fails_the_pod_and_the_main_container_never_runs(cluster: Cluster) -> None:
    cluster.create("no-init", [python("main", "print('ran')")], initContainers=[python("init", "raise SystemExit(2)")])
    status = cluster.ended("no-init")["status"]
    assert status["phase"] == "Failed"
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 2
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"


def test_a_missing_secret_keeps_the_container_waiting_until_it_exists(cluster: Cluster) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    cluster.create("secretive", [python("main", "import os; print(os.environ['TOKEN'])", env=env)])

    # (Until the Node authorizer has seen the pod bound here, reading it is refused: the same wait.)
    pod = cluster.wait("secretive", lambda pod: waiting_message(pod) == 'secret "later" not found')
    assert pod["status"]["phase"] == "Pending"
    assert waiting_reason(pod) == "CreateContainerConfigError"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "later"}, "stringData": {"token": "s3cret"}}
    cluster.core.create_namespaced_secret(cluster.namespace, cast(Any, secret), _preload_content=False)
    assert cluster.ended("secretive")["status"]["phase"] == "Succeeded"
    assert cluster.log("secretive") == "s3cret\n"


def test_run_as_non_root_refuses_to_run_as_root(cluster: Cluster) -> None:
    cluster.create("rooted", [python("main", "print('ran')")], securityContext={"runAsNonRoot": True, "runAsUser": 0})
    pod = cluster.wait("rooted", lambda pod: waiting_reason(pod) == "CreateContainerConfigError")
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["message"] == "container's runAsUser breaks non-root policy"
    assert pod["status"]["phase"] == "Pending"


def test_a_container_over_its_memory_limit_is_oom_killed(cluster: Cluster) -> None:
    program = "blocks = [bytearray(16 * 1024 * 1024) for _ in range(64)]"
    cluster.create("hungry", [python("main", program, resources={"limits": {"memory": "64Mi", "cpu": "500m"}})])
    status = cluster.ended("hungry")["status"]
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert (status["phase"], terminated["exitCode"], terminated["reason"]) == ("Failed", 137, "OOMKilled")


@pytest.mark.slow
def test_a_pod_past_its_active_deadline_is_stopped_and_fails_with_deadline_exceeded(cluster: Cluster) -> None:
    cluster.create("slow", [python("main", "import time; time.sleep(600)")], activeDeadlineSeconds=3)
    status = cluster.ended("slow")["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "DeadlineExceeded")
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] in (137, 143)


def test_deleting_a_pod_stops_its_container(cluster: Cluster) -> None:
    cluster.create("doomed", [python("main", "import time; print('up', flush=True); time.sleep(600)")])
    cluster.wait("doomed", lambda pod: (pod.get("status") or {}).get("phase") == "Running")
    cluster.core.delete_namespaced_pod("doomed", cluster.namespace)
    deadline = time.monotonic() + 60
    while "doomed" not in cluster.kubelet.finished:
        assert time.monotonic() < deadline, "the deleted pod's container kept running"
        time.sleep(0.2)


# -- the translation, as data --------------------------------------------------------------------


def plan(container: dict[str, Any], pod_spec: dict[str, Any] | None = None, image_user: str = "") -> list[str]:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [container], **(pod_spec or {})}}
    return podman_plan(
        pod=pod, container=container, name="c", image="localhost/x", image_user=image_user, environment={"A": "1"},
        volumes={"v": Path("/tmp")}, termination_file=Path("/tmp/t"),
    ).arguments  # fmt: skip


def test_the_security_context_and_limits_become_podman_options() -> None:
    container = {
        "name": "c",
        "image": IMAGE,
        "command": ["/bin/x", "$(A)"],
        "args": ["--flag"],
        "securityContext": {**LOCKED, "runAsUser": 1000},
        "resources": {"limits": {"memory": "512Mi", "cpu": "1"}, "requests": {"cpu": "250m"}},
        "volumeMounts": [{"name": "v", "mountPath": "/data", "readOnly": True}],
    }
    arguments = plan(container, {"securityContext": {"runAsNonRoot": True, "runAsGroup": 7, "fsGroup": 9}})
    joined = " ".join(arguments)
    for expected in (
        "--network none",
        "--user 1000:7",
        "--group-add 9",
        "--read-only --read-only-tmpfs=false",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        f"--memory {512 * 2**20} --memory-swap {512 * 2**20}",
        "--cpus 1.000",
        "--cpu-shares 256",
        "type=bind,source=/tmp,target=/data,readonly",
        "type=bind,source=/tmp/t,target=/dev/termination-log",
        "--env A ",
    ):
        assert expected in joined
    assert arguments[-4:] == ["--entrypoint", '["/bin/x", "1"]', "localhost/x", "--flag"]


def test_run_as_non_root_is_checked_against_the_image_user() -> None:
    container = {"name": "c", "image": IMAGE, "securityContext": {"runAsNonRoot": True}}
    assert "--user" not in plan(container, image_user="1000")
    for user, message in (("", "will run as root"), ("0", "will run as root"), ("app", "non-numeric user")):
        with pytest.raises(ContainerConfigError, match=message):
            plan(container, image_user=user)
    with pytest.raises(ContainerConfigError, match="breaks non-root policy"):
        plan({**container, "securityContext": {"runAsNonRoot": True, "runAsUser": 0}})


def test_kubernetes_quantities() -> None:
    assert [to_bytes(q) for q in ("512Mi", "1G", "1.5Ki", "100", "1e3")] == [512 * 2**20, 10**9, 1536, 100, 1000]
    assert [to_cpus(q) for q in ("250m", "2", "0.5")] == [0.25, 2.0, 0.5]
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        to_bytes("12 MB")
