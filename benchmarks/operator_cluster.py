"""The two worlds the operator benchmark runs in: the Kubernetes emulator and a real control plane.

Both give the operator process a kubeconfig, and the benchmark admin clients and the process ids
whose memory is "the API server's". What differs is what plays the cluster:

* **emulator** (`emulator_world`): ``tests/k8s_fixtures.py``'s emulator in a process of its own
  (``python -m benchmarks.operator_cluster emulator NAMESPACE``, so its memory is its own); no
  scheduler and no Nodes: pods are finished unbound.
* **real control plane** (`control_plane_world`): ``tests/controlplane``'s etcd, kube-apiserver,
  controller manager and scheduler from the pinned upstream binaries, ``charts/raas`` installed
  with helm; the operator logs in with a token of the chart's operator ServiceAccount in the
  chart's job namespace, as a lab runs it. Each virtual robot has a real Node labelled and
  tainted ``raas.dev/robot=<robot>`` (as the operator's pods expect), plus one untainted worker
  Node for fetch pods; the benchmark keeps them Ready by renewing their Leases as the admin, so
  the real scheduler binds every pod. Robot objects are written with the chart's agent
  ServiceAccount token.

`InstantKubelet` finishes every pod as soon as it may (bound, where there is a scheduler) and
`VirtualRobots` keeps Robots Ready; both follow the API server by watches and stamp each event with
the time it arrived, which the dispatch figures are made of.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubernetes import client, watch

ROBOT_LABEL = "raas.dev/robot"
WORKER_NODE = "bench-worker"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_RENEW_S = 2.0
TOKEN_LIFETIME_S = 4 * 3600
NODE_CAPACITY = {"cpu": "16", "memory": "64Gi", "ephemeral-storage": "200Gi", "pods": "250"}


def tests_on_path() -> None:
    tests = Path(__file__).resolve().parents[1] / "tests"
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))


def robot_names(count: int) -> list[str]:
    return [f"virtual-{index:02d}" for index in range(count)]


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` in MiB (NaN when it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class World:
    """What a benchmark needs of a cluster."""

    name: str
    namespace: str
    admin: client.ApiClient
    robots_client: client.ApiClient
    """Writes the Robot objects (the agent's ServiceAccount on the real control plane)."""
    operator_kubeconfig: Path
    server_pids: dict[str, int]
    """Processes that are the API server and its storage, by name."""
    binds_pods: bool
    """Whether a scheduler binds pods to Nodes (then the kubelet finishes bound pods only)."""
    node_of: Callable[[str], str]
    """The Node name a robot's Robot object names."""
    kubeconfig: Path
    """The admin's kubeconfig (for a process that speaks as the admin)."""
    extras: dict[str, Any] = field(default_factory=dict)

    def server_rss_mib(self) -> dict[str, float]:
        return {name: rss_mib(pid) for name, pid in self.server_pids.items()}


# --- a resumable watch ----------------------------------------------------------------------------------


class Follower:
    """Calls `handle(event_type, object, arrival_time)` for every event of a list call's watch, in a
    thread, resuming after the server ends a watch (listing again when its version is too old)."""

    def __init__(self, list_call: Callable[..., Any], handle: Callable[[str, dict[str, Any], float], None]) -> None:
        self.list_call = list_call
        self.handle = handle
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Follower:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout=15)

    def _loop(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listing = json.loads(self.list_call(_preload_content=False).data)
                    for item in listing.get("items", []):
                        self.handle("ADDED", item, time.monotonic())
                    version = listing["metadata"]["resourceVersion"]
                self._watch = watch.Watch()
                for event in self._watch.stream(self.list_call, resource_version=version, timeout_seconds=30):
                    item = event["raw_object"]
                    version = item["metadata"]["resourceVersion"]
                    self.handle(event["type"], item, time.monotonic())
                    if self._stop.is_set():
                        return
            except client.exceptions.ApiException as error:
                if error.status == 410:
                    version = ""
                elif not self._stop.is_set():
                    time.sleep(0.2)
            except Exception:
                if not self._stop.is_set():
                    time.sleep(0.2)


# --- the fleet ---------------------------------------------------------------------------------------


class InstantKubelet:
    """Finishes every pod at once (fetch pods report a commit, run pods exit 0); records when each
    run pod was first seen, per robot. With `binds` it waits for the scheduler's binding."""

    def __init__(self, core: client.CoreV1Api, namespace: str, *, binds: bool) -> None:
        self.core = core
        self.namespace = namespace
        self.binds = binds
        self.seen: dict[str, tuple[str, float]] = {}
        self.finished: set[str] = set()
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resync = threading.Thread(target=self._resync_loop, daemon=True)
        self._follower = Follower(self._list, self._handle)

    def _list(self, **arguments: Any) -> Any:
        return self.core.list_namespaced_pod(self.namespace, **arguments)

    def __enter__(self) -> InstantKubelet:
        self._follower.__enter__()
        self._resync.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._follower.__exit__()
        self._resync.join(timeout=15)

    def _resync_loop(self) -> None:
        """Every few seconds, every pod again (as a kubelet resyncs): an event a dropped watch lost
        cannot leave a pod unfinished."""
        while not self._stop.wait(5.0):
            with contextlib.suppress(Exception):
                for pod in json.loads(self._list(_preload_content=False).data).get("items", []):
                    self._handle("MODIFIED", pod, time.monotonic())

    def unfinished(self) -> list[str]:
        """Pods not finished, with where they are and why (for a report on an unfinished run)."""
        found = []
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            if pod.status.phase not in ("Succeeded", "Failed"):
                conditions = [
                    f"{c.type}={c.status} {c.reason or ''} {c.message or ''}" for c in pod.status.conditions or []
                ]
                found.append(f"pod {pod.metadata.name} on {pod.spec.node_name}: {pod.status.phase} {conditions}")
        return found

    def _handle(self, kind: str, pod: dict[str, Any], arrived: float) -> None:
        with self._lock:
            self._finish(kind, pod, arrived)

    def _finish(self, kind: str, pod: dict[str, Any], arrived: float) -> None:
        name = pod["metadata"]["name"]
        robot = (pod["spec"].get("nodeSelector") or {}).get(ROBOT_LABEL)
        if robot and name not in self.seen:
            self.seen[name] = (robot, arrived)
        if kind == "DELETED" or name in self.finished or pod["metadata"].get("deletionTimestamp"):
            return
        if self.binds and not pod["spec"].get("nodeName"):
            return
        message = "0" * 40 if not robot else ""
        terminated = {
            "exitCode": 0,
            "reason": "Completed",
            "message": message,
            "startedAt": utc_now()[:19] + "Z",
            "finishedAt": utc_now()[:19] + "Z",
        }
        status = {
            "phase": "Succeeded",
            "containerStatuses": [
                {"name": container["name"], "image": container["image"], "imageID": "", "ready": False,
                 "restartCount": 0, "state": {"terminated": terminated}}
                for container in pod["spec"]["containers"]
            ],
        }  # fmt: skip
        try:
            self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status}, _preload_content=False)
            self.finished.add(name)
        except client.exceptions.ApiException as error:
            if len(self.failures) < 5:
                self.failures.append(f"pod {name}: {error.status} {error.body}")


class VirtualRobots:
    """Robot objects kept Ready with a fresh heartbeat; records when each robot's booking clears."""

    def __init__(self, custom: client.CustomObjectsApi, watcher: client.CustomObjectsApi, names: list[str],
                 node_of: Callable[[str], str]) -> None:  # fmt: skip
        self.custom = custom
        self.watcher = watcher
        self.names = names
        self.freed: list[tuple[str, float]] = []
        self._booked: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._beater = threading.Thread(target=self._beat_loop, daemon=True)
        self._follower = Follower(self._list, self._handle)
        for name in self.names:
            body = {
                "apiVersion": "raas.dev/v1alpha1",
                "kind": "Robot",
                "metadata": {"name": name, "labels": {ROBOT_LABEL: name}},
                "spec": {"node_name": node_of(name)},
            }
            custom.create_cluster_custom_object("raas.dev", "v1alpha1", "robots", body)
        self._beat()

    def _list(self, **arguments: Any) -> Any:
        return self.watcher.list_cluster_custom_object("raas.dev", "v1alpha1", "robots", **arguments)

    def __enter__(self) -> VirtualRobots:
        self._beater.start()
        self._follower.__enter__()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._follower.__exit__()
        self._beater.join(timeout=10)

    def _beat(self) -> None:
        now = utc_now()
        for name in self.names:
            status = {"status": {"phase": "Ready", "last_heartbeat": now}}
            with contextlib.suppress(client.exceptions.ApiException):
                self.custom.patch_cluster_custom_object_status("raas.dev", "v1alpha1", "robots", name, status)

    def _beat_loop(self) -> None:
        while not self._stop.wait(2.0):
            self._beat()

    def _handle(self, kind: str, item: dict[str, Any], arrived: float) -> None:
        name = item["metadata"]["name"]
        booked = (item["metadata"].get("annotations") or {}).get("raas.dev/booked-job") or None
        if self._booked.get(name) and not booked:
            self.freed.append((name, arrived))
        self._booked[name] = booked


class VirtualNodes:
    """Nodes of the robots (labelled and tainted ``raas.dev/robot=<robot>``) and one untainted
    worker, Ready, their Leases renewed as the admin every `LEASE_RENEW_S` (as kubelets do)."""

    def __init__(self, core: client.CoreV1Api, coordination: client.CoordinationV1Api, robots: list[str]) -> None:
        self.core = core
        self.coordination = coordination
        self.names = [f"node-{robot}" for robot in robots] + [WORKER_NODE]
        self.reposted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True)
        for robot in [*robots, None]:
            self._create(robot)

    def _create(self, robot: str | None) -> None:
        name = f"node-{robot}" if robot else WORKER_NODE
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
        taints = []
        if robot:
            labels[ROBOT_LABEL] = robot
            taints = [{"key": ROBOT_LABEL, "value": robot, "effect": "NoSchedule"}]
        self.core.create_node({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})
        self._post_ready(name)
        lease = {
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": utc_now()},
        }
        self.coordination.create_namespaced_lease(LEASE_NAMESPACE, lease)

    def _post_ready(self, name: str) -> None:
        """The node's status as a kubelet posts it: Ready, with its capacity."""
        now = utc_now()[:19] + "Z"
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "virtual robot node",
                 "lastHeartbeatTime": now, "lastTransitionTime": now}  # fmt: skip
        status = {"conditions": [ready], "capacity": NODE_CAPACITY, "allocatable": NODE_CAPACITY}
        self.core.patch_node_status(name, {"status": status})

    def __enter__(self) -> VirtualNodes:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _renew_loop(self) -> None:
        """Leases renewed every `LEASE_RENEW_S`; a node the node controller marked not Ready posts its
        Ready status again, as a kubelet that sees its status changed does (this machine's wall clock
        can jump under load, which makes every lease look stale at once)."""
        while not self._stop.wait(LEASE_RENEW_S):
            with contextlib.suppress(Exception):
                for name in self.names:
                    self.coordination.patch_namespaced_lease(name, LEASE_NAMESPACE, {"spec": {"renewTime": utc_now()}})
                for node in self.core.list_node().items:
                    if node.metadata.name not in self.names:
                        continue
                    ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
                    if not ready or ready[0].status != "True":
                        self.reposted += 1
                        self._post_ready(node.metadata.name)

    def wait_schedulable(self, timeout_s: float = 60.0) -> None:
        """Until the node controller has lifted the not-ready taints (the scheduler then binds pods)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            nodes = self.core.list_node().items
            tainted = [
                node.metadata.name
                for node in nodes
                if any(taint.key.startswith("node.kubernetes.io/") for taint in node.spec.taints or [])
            ]
            if not tainted and len(nodes) >= len(self.names):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the virtual Nodes kept their not-ready taints for {timeout_s:.0f} s")


# --- the worlds ----------------------------------------------------------------------------------------


def _emulator_kubeconfig(path: Path, url: str, namespace: str) -> Path:
    tests_on_path()
    from benchmarks.k8s_fixtures import write_kubeconfig

    return write_kubeconfig(path, url, token="bench", namespace=namespace)


@contextlib.contextmanager
def emulator_world(scratch: Path, namespace: str) -> Iterator[World]:
    """The Kubernetes emulator in its own process (module docstring)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.operator_cluster", "emulator", namespace],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the emulator process did not start")
        configuration = client.Configuration(host=url)
        configuration.api_key = {"authorization": "Bearer bench"}
        admin = client.ApiClient(configuration)
        kubeconfig = _emulator_kubeconfig(scratch / "emulator.kubeconfig", url, namespace)
        yield World(
            name="emulator", namespace=namespace, admin=admin, robots_client=admin, operator_kubeconfig=kubeconfig,
            server_pids={"emulator": process.pid}, binds_pods=False, node_of=lambda robot: f"node-{robot}",
            kubeconfig=kubeconfig,
        )  # fmt: skip
        admin.close()
    finally:
        if process.stdin is not None:
            process.stdin.close()  # the emulator process ends when its stdin does
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def service_account_token(admin: client.ApiClient, namespace: str, account: str) -> str:
    """A TokenRequest token of ServiceAccount `namespace`/`account`, valid for the whole benchmark."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_LIFETIME_S)
    )
    granted = client.CoreV1Api(admin).create_namespaced_service_account_token(account, namespace, request)
    return str(granted.status.token)


@contextlib.contextmanager
def real_control_plane() -> Iterator[Any]:
    """A started control plane with charts/raas installed (tests/controlplane)."""
    tests_on_path()
    from controlplane.chart_install import install_chart
    from controlplane.cluster import ControlPlane

    with ControlPlane() as plane:
        install_chart(plane)
        yield plane


def plane_pids(plane: Any) -> dict[str, int]:
    """kube-apiserver's and etcd's process ids (children of this process running those binaries)."""
    found: dict[str, int] = {}
    for name in ("kube-apiserver", "etcd"):
        binary = str(plane.binaries / name)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
                if command == binary and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    found[name] = int(entry.name)
    return found


@contextlib.contextmanager
def control_plane_world(scratch: Path, plane: Any, robots: list[str]) -> Iterator[World]:
    """The real control plane with the chart, Nodes for `robots` and the chart's tokens (module docstring)."""
    from controlplane.chart_install import AGENT, JOBS, OPERATOR, token_kubeconfig

    admin = plane.api_client()
    operator_token = service_account_token(admin, *OPERATOR)
    agent = plane.api_client(service_account_token(admin, *AGENT))
    kubeconfig = token_kubeconfig(plane, scratch / "operator.kubeconfig", operator_token, namespace=JOBS)
    with VirtualNodes(client.CoreV1Api(admin), client.CoordinationV1Api(admin), robots) as nodes:
        nodes.wait_schedulable()
        yield World(
            name="control plane", namespace=JOBS, admin=admin, robots_client=agent, operator_kubeconfig=kubeconfig,
            server_pids=plane_pids(plane), binds_pods=True, node_of=lambda robot: f"node-{robot}",
            kubeconfig=plane.kubeconfig, extras={"plane": plane, "nodes": nodes},
        )  # fmt: skip
    agent.close()
    admin.close()


def _serve_emulator(namespace: str) -> None:
    """``python -m benchmarks.operator_cluster emulator NAMESPACE``: print the URL, serve until stdin ends."""
    tests_on_path()
    import logging

    from benchmarks.k8s_fixtures import running_emulator

    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    with running_emulator(namespace) as emulator:
        print(emulator.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    if sys.argv[1:2] == ["emulator"]:
        _serve_emulator(sys.argv[2])
