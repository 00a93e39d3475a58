"""The stand-in kubelet as the nodes of the real control plane (the session's ``control_plane``).

Two robot nodes, labelled and tainted ``raas.dev/robot=<robot>``, each registered with its own
client certificate; the real kube-scheduler binds the pods, the kubelet runs them with podman and
serves their logs to the API server. What a cluster would show:

- a pod lands on the node its nodeSelector and toleration pick, never on one whose taint it does
  not tolerate (it stays Pending, Unschedulable), and goes Pending → Running → Succeeded;
- ``kubectl logs`` (and ``read_namespaced_pod_log``) of a pod, with ``--tail``, ``--limit-bytes``,
  ``--timestamps`` and ``-f``; an unknown container is refused with a message;
- a deleted pod stays, marked for deletion, while its container gets SIGTERM and its grace; then
  it is gone;
- a node that stops renewing its Lease is marked NotReady by the node lifecycle controller;
- the kubelet API serves the API server's client certificate only; an unknown pod or container is
  404 with a message;
- the kubelet API serves the API server's client certificate only; an unknown pod or container is
  404 with a message;
- a node's credentials cannot write another node's pods' status nor read a Secret no pod of its
  references (the Node authorizer and NodeRestriction refuse).
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from controlplane.cluster import ControlPlane
from kubernetes import client

from kubelet.kubelet import StandInKubelet
from kubelet.node import Node
from kubelet.podman import PodmanRuntime, remove_leftover_containers
from raas_node.runner.image import IMAGE_PYTHON

pytestmark = pytest.mark.slow

IMAGE = "registry.example/raas-job:1"
WAIT_S = 90.0


@dataclass
class Nodes:
    plane: ControlPlane
    namespace: str
    kubelet: StandInKubelet
    robots: dict[str, str]
    """Robot name → its node's name."""
    core: client.CoreV1Api

    def create(self, name: str, program: str, robot: str, *, tolerate: str | None = None, **spec: Any) -> None:
        """A pod running `program` pinned to `robot`'s node, tolerating `tolerate`'s taint (default: its own)."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 2,
                "nodeSelector": {"raas.dev/robot": robot},
                "tolerations": [
                    {"key": "raas.dev/robot", "operator": "Equal", "value": tolerate or robot, "effect": "NoSchedule"}
                ],
                "containers": [{"name": "main", "image": IMAGE, "command": [IMAGE_PYTHON, "-u", "-c", program]}],
                **spec,
            },
        }
        self.core.create_namespaced_pod(self.namespace, cast(Any, pod), _preload_content=False)

    def pod(self, name: str) -> dict[str, Any]:
        response = cast(Any, self.core.read_namespaced_pod(name, self.namespace, _preload_content=False))
        return cast(dict[str, Any], json.loads(response.data))

    def wait(self, name: str, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            pod = self.pod(name)
            if done(pod):
                return pod
            time.sleep(0.2)
        raise AssertionError(f"{name} never {what}: {self.pod(name).get('status')}\nkubelet: {self.kubelet.errors}")

    def phase(self, name: str, *phases: str) -> dict[str, Any]:
        return self.wait(name, lambda pod: (pod.get("status") or {}).get("phase") in phases, f"reached {phases}")

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl("-n", self.namespace, *args, check=check)


@pytest.fixture
def nodes(control_plane: ControlPlane, namespace: str, runtime_image: str) -> Iterator[Nodes]:
    suffix = secrets.token_hex(3)
    runtime = PodmanRuntime({IMAGE: runtime_image})
    robots = {f"robot-{letter}-{suffix}": f"node-{letter}-{suffix}" for letter in "ab"}
    taint = "raas.dev/robot"
    kubelet = StandInKubelet(
        control_plane,
        [
            Node(node, runtime, labels={taint: robot}, taints=[{"key": taint, "value": robot, "effect": "NoSchedule"}])
            for robot, node in robots.items()
        ],
        namespaces=[namespace],  # (the chart's agent DaemonSet, if installed, targets robot nodes too)
    )
    with kubelet, control_plane.api_client() as admin:
        yield Nodes(control_plane, namespace, kubelet, robots, client.CoreV1Api(admin))
    leftovers = remove_leftover_containers()
    assert leftovers == [], f"containers left behind: {leftovers}"
    assert kubelet.errors == []


def robot(nodes: Nodes, index: int) -> str:
    return list(nodes.robots)[index]


def test_the_scheduler_binds_a_pod_to_the_node_it_selects_and_tolerates_and_its_status_follows(nodes: Nodes) -> None:
    first, second = robot(nodes, 0), robot(nodes, 1)
    nodes.create("picked", "import time; print('up'); time.sleep(2); print('bye')", first)
    running = nodes.phase("picked", "Running", "Succeeded")
    assert running["spec"]["nodeName"] == nodes.robots[first]
    done = nodes.phase("picked", "Succeeded")
    conditions = {condition["type"]: condition["status"] for condition in done["status"]["conditions"]}
    assert conditions["PodScheduled"] == "True"
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert nodes.kubelet.started["picked"] == nodes.robots[first]

    # Selects the second robot but tolerates only the first one's taint: no node may take it.
    nodes.create("refused", "print('never')", second, tolerate=first)

    def unschedulable(pod: dict[str, Any]) -> bool:
        conditions = (pod.get("status") or {}).get("conditions") or []
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions)

    pending = nodes.wait("refused", unschedulable, "was found unschedulable")
    assert pending["status"]["phase"] == "Pending"
    assert not pending["spec"].get("nodeName")
    assert "refused" not in nodes.kubelet.started


def test_kubectl_logs_of_a_pod_come_from_its_node(nodes: Nodes) -> None:
    program = "import sys, time\nfor i in range(5): print('line', i)\nprint('oops', file=sys.stderr)\ntime.sleep(3)"
    nodes.create("talker", program, robot(nodes, 0))
    nodes.phase("talker", "Running")
    follow = subprocess.Popen(
        [str(nodes.plane.binaries / "kubectl"), "--kubeconfig", str(nodes.plane.kubeconfig), "-n", nodes.namespace,
         "logs", "-f", "talker"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    nodes.phase("talker", "Succeeded")
    followed, errors = follow.communicate(timeout=60)
    assert follow.returncode == 0, errors
    whole = nodes.kubectl("logs", "talker").stdout
    assert followed == whole
    # stdout in order; stderr interleaved wherever it came (two pipes, as on a real node)
    assert [line for line in whole.splitlines() if line != "oops"] == [f"line {i}" for i in range(5)]
    assert sorted(whole.splitlines()) == sorted([f"line {i}" for i in range(5)] + ["oops"])
    assert nodes.core.read_namespaced_pod_log("talker", nodes.namespace, container="main") == whole
    assert nodes.kubectl("logs", "talker", "--tail=2").stdout.splitlines() == whole.splitlines()[-2:]
    assert nodes.kubectl("logs", "talker", "--limit-bytes=9").stdout == whole[:9]
    stamped = nodes.kubectl("logs", "talker", "--timestamps").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == whole.splitlines()
    assert all(line.split(" ", 1)[0].endswith("Z") for line in stamped)
    unknown = nodes.kubectl("logs", "talker", "-c", "ghost", check=False)
    assert unknown.returncode != 0
    assert "container ghost is not valid for pod talker" in unknown.stderr  # (the API server checks the spec)
    previous = nodes.kubectl("logs", "talker", "--previous", check=False)
    assert previous.returncode != 0
    assert "previous terminated container" in previous.stderr


def test_a_deleted_pod_stays_marked_while_its_container_stops_within_its_grace(nodes: Nodes) -> None:
    program = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    print('got SIGTERM, tidying up', flush=True); time.sleep(2); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('up', flush=True)\n"
        "time.sleep(600)\n"
    )
    nodes.create("doomed", program, robot(nodes, 0), terminationGracePeriodSeconds=30)
    nodes.phase("doomed", "Running")
    nodes.wait("doomed", lambda pod: "up\n" in nodes.kubectl("logs", "doomed").stdout, "said it was up")
    uid = nodes.pod("doomed")["metadata"]["uid"]
    nodes.core.delete_namespaced_pod("doomed", nodes.namespace)

    marked = nodes.pod("doomed")  # not gone: the kubelet has its container to stop first
    assert marked["metadata"]["uid"] == uid
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    deadline = time.monotonic() + WAIT_S
    seen: list[str] = []
    while True:
        try:
            seen.append(nodes.kubectl("logs", "doomed").stdout)
        except Exception:
            break  # the pod is gone (or its node forgot it): the log is no more
        assert time.monotonic() < deadline, f"the deleted pod stayed: {nodes.pod('doomed')['status']}"
        time.sleep(0.2)
    assert any("got SIGTERM, tidying up" in log for log in seen)  # it had its grace to stop
    with pytest.raises(client.exceptions.ApiException) as gone:
        nodes.pod("doomed")
    assert gone.value.status == 404
    assert "doomed" in nodes.kubelet.finished


def test_a_node_that_stops_renewing_its_lease_is_marked_not_ready(nodes: Nodes) -> None:
    name = nodes.robots[robot(nodes, 1)]

    def ready() -> dict[str, Any]:
        node = json.loads(cast(Any, nodes.core.read_node(name, _preload_content=False)).data)
        return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")

    assert ready()["status"] == "True"
    nodes.kubelet.go_not_ready(name)
    deadline = time.monotonic() + WAIT_S
    while ready()["status"] == "True":
        assert time.monotonic() < deadline, "the node lifecycle controller never noticed"
        time.sleep(0.5)
    condition = ready()
    assert (condition["status"], condition["reason"]) == ("Unknown", "NodeStatusUnknown")
    document = json.loads(cast(Any, nodes.core.read_node(name, _preload_content=False)).data)
    taints = {taint["key"] for taint in document["spec"].get("taints") or []}
    assert "node.kubernetes.io/unreachable" in taints


def test_a_node_may_not_write_another_nodes_pods_nor_read_secrets_its_pods_do_not_reference(nodes: Nodes) -> None:
    first, second = robot(nodes, 0), robot(nodes, 1)
    for name in ("referenced", "unreferenced"):
        nodes.core.create_namespaced_secret(
            nodes.namespace, cast(Any, {"metadata": {"name": name}, "stringData": {"token": name}})
        )
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "referenced", "key": "token"}}}]
    nodes.create("on-first", "import os; print(os.environ['TOKEN'])", first,
                 containers=[{"name": "main", "image": IMAGE, "env": env,
                              "command": [IMAGE_PYTHON, "-c", "import os; print(os.environ['TOKEN'])"]}])  # fmt: skip
    nodes.create("on-second", "print('hello')", second)
    nodes.phase("on-first", "Succeeded")
    nodes.phase("on-second", "Succeeded")
    assert nodes.kubectl("logs", "on-first").stdout == "referenced\n"  # read as the node: allowed

    with nodes.plane.node_client(nodes.robots[first]) as as_first:
        core = client.CoreV1Api(as_first)
        assert core.read_namespaced_secret("referenced", nodes.namespace).data is not None
        with pytest.raises(client.exceptions.ApiException) as unreferenced:
            core.read_namespaced_secret("unreferenced", nodes.namespace)
        assert unreferenced.value.status == 403
        assert "no relationship found between node" in str(unreferenced.value.body)
        with pytest.raises(client.exceptions.ApiException) as foreign:
            core.patch_namespaced_pod_status(
                "on-second", nodes.namespace, {"status": {"phase": "Failed"}},
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        assert foreign.value.status == 403
        assert nodes.robots[first] in str(foreign.value.body)
    assert nodes.pod("on-second")["status"]["phase"] == "Succeeded"


def kubelet_get(nodes: Nodes, node: str, path: str, client_certificate: str) -> tuple[int, str]:
    """GET `path` of `node`'s kubelet API with the control plane's client certificate `client_certificate`."""
    context = ssl.create_default_context(cafile=str(nodes.plane.folder / "ca.crt"))
    context.load_cert_chain(
        str(nodes.plane.folder / f"{client_certificate}.crt"), str(nodes.plane.folder / f"{client_certificate}.key")
    )
    url = f"https://127.0.0.1:{nodes.kubelet.agents[node].port}{path}"
    try:
        with urllib.request.urlopen(url, context=context, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def test_the_kubelet_api_answers_the_api_server_only_and_says_what_it_does_not_know(nodes: Nodes) -> None:
    first = robot(nodes, 0)
    node = nodes.robots[first]
    nodes.create("known", "print('hello')", first)
    nodes.phase("known", "Succeeded")
    logs = f"/containerLogs/{nodes.namespace}"
    assert kubelet_get(nodes, node, f"{logs}/known/main", "apiserver-kubelet-client") == (200, "hello\n")
    status, message = kubelet_get(nodes, node, f"{logs}/known/ghost", "apiserver-kubelet-client")
    assert (status, message) == (404, f'container "ghost" not found in pod "{nodes.namespace}/known"\n')
    status, message = kubelet_get(nodes, node, f"{logs}/nobody/main", "apiserver-kubelet-client")
    assert (status, message) == (404, f'pod "{nodes.namespace}/nobody" is not known on node "{node}"\n')
    # The admin's certificate is signed by the same CA, but only the API server reads logs here.
    status, message = kubelet_get(nodes, node, f"{logs}/known/main", "admin")
    assert status == 403
    assert "raas-admin may not read this node's logs" in message
    # Without a client certificate the TLS handshake itself fails.
    bare = ssl.create_default_context(cafile=str(nodes.plane.folder / "ca.crt"))
    url = f"https://127.0.0.1:{nodes.kubelet.agents[node].port}{logs}/known/main"
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(url, context=bare, timeout=30).read()
