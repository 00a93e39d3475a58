"""A node's Node object and its heartbeats, written as the node itself (its client certificate,
so the Node authorizer and NodeRestriction judge every request).

`node_object` is what the kubelet registers: the node's labels plus ``kubernetes.io/hostname``,
its taints, addresses InternalIP 127.0.0.1 and Hostname, ``daemonEndpoints.kubeletEndpoint.Port``
(where the API server reaches its kubelet API), capacity and allocatable, nodeInfo, and the
conditions Ready=True (MemoryPressure, DiskPressure, PIDPressure False).

`NodeHeartbeat` keeps it Ready as a kubelet does: it renews the node's Lease in
``kube-node-lease`` every `LEASE_RENEW_S` and patches the node's status (its heartbeat times, Ready
again if the controller manager marked it otherwise) every `STATUS_EVERY_S`. Once `stop`ped (the
node drops off), the node lifecycle controller marks it Ready=Unknown after its grace period
(``--node-monitor-grace-period``, `controlplane.cluster.NODE_MONITOR_GRACE_S`).
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from typing import Any

from kubernetes import client

from kubelet.node import Node
from kubelet.outage import Reporter

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_S = 40
LEASE_RENEW_S = 2.0
STATUS_EVERY_S = 5.0
CAPACITY = {"cpu": "8", "memory": "16Gi", "ephemeral-storage": "100Gi", "pods": "110"}
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


def _now(micro: bool = False) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def node_conditions(since: str) -> list[dict[str, str]]:
    """The conditions of a healthy node, heartbeat now, true since `since`."""
    beat = _now()
    pressure = [("MemoryPressure", "KubeletHasSufficientMemory"), ("DiskPressure", "KubeletHasNoDiskPressure")]
    pressure.append(("PIDPressure", "KubeletHasSufficientPID"))
    conditions = [
        {"type": kind, "status": "False", "reason": reason, "message": "the stand-in kubelet's host is fine",
         "lastHeartbeatTime": beat, "lastTransitionTime": since}
        for kind, reason in pressure
    ]  # fmt: skip
    conditions.append(
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
         "lastHeartbeatTime": beat, "lastTransitionTime": since}
    )  # fmt: skip
    return conditions


def node_status(node: Node, port: int, since: str) -> dict[str, Any]:
    return {
        "capacity": dict(CAPACITY),
        "allocatable": dict(CAPACITY),
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "stand-in kubelet",
            "containerRuntimeVersion": "podman://runc", "kubeletVersion": "v1.37.2", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": "amd64",
        },
        "conditions": node_conditions(since),
    }  # fmt: skip


def node_object(node: Node, port: int) -> dict[str, Any]:
    """The Node as its kubelet registers it (see the module docstring)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name, **node.labels}},
        "spec": {"taints": [dict(taint) for taint in node.taints]},
        "status": node_status(node, port, _now()),
    }


class NodeHeartbeat:
    """Lease renewals and status patches of one node, from a daemon thread (module docstring).
    Failures go to `errors` (with the node's name)."""

    def __init__(self, api: client.ApiClient, node: Node, port: int, errors: Reporter) -> None:
        self.core = client.CoreV1Api(api)
        self.leases = client.CoordinationV1Api(api)
        self.node, self.port, self.report = node, port, errors
        self._since = _now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{node.name}", daemon=True)

    def register(self) -> None:
        """Create the Node (or take over the one of that name), then its Lease; start the heartbeats."""
        body = node_object(self.node, self.port)
        try:
            self.core.create_node(body, _preload_content=False)  # type: ignore[arg-type]
        except client.exceptions.ApiException as error:
            if error.status != 409:
                raise
            self.core.patch_node(self.node.name, {"metadata": {"labels": body["metadata"]["labels"]}},
                                 _content_type=MERGE_PATCH, _preload_content=False)  # fmt: skip
            self._post_status()
        self._renew_lease()
        self._thread.start()

    def stop(self) -> None:
        """No more renewals nor status patches (the node seems gone to the control plane)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def resume(self) -> None:
        """After `stop`: post the node's status (Ready again) and renew its Lease at once, then
        keep beating (the node is back, as a kubelet restarted or reconnected)."""
        self.stop()
        self._post_status()
        self._renew_lease()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{self.node.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        last_status = 0.0
        elapsed = 0.0
        while not self._stop.wait(LEASE_RENEW_S):
            elapsed += LEASE_RENEW_S
            try:
                self._renew_lease()
                if elapsed - last_status >= STATUS_EVERY_S:
                    last_status = elapsed
                    self._post_status()
            except Exception as error:  # the API server may be going away at the end of the session
                if not self._stop.is_set():
                    self.report(f"node {self.node.name} heartbeat", error)

    def _post_status(self) -> None:
        status = {"conditions": node_conditions(self._since)}
        self.core.patch_node_status(
            self.node.name, {"status": status}, _content_type=STRATEGIC_PATCH, _preload_content=False
        )

    def _renew_lease(self) -> None:
        name = self.node.name
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_S, "renewTime": _now(micro=True)}
        try:
            self.leases.patch_namespaced_lease(
                name, LEASE_NAMESPACE, {"spec": spec}, _content_type=MERGE_PATCH, _preload_content=False
            )
        except client.exceptions.ApiException as error:
            if error.status != 404:
                raise
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": name, "namespace": LEASE_NAMESPACE}, "spec": spec}  # fmt: skip
            with contextlib.suppress(client.exceptions.ApiException):  # made meanwhile: the next renewal patches it
                self.leases.create_namespaced_lease(LEASE_NAMESPACE, lease, _preload_content=False)  # type: ignore[arg-type]
