"""The stand-in kubelet: plays a set of nodes against a real API server (`StandInKubelet`), one
`NodeAgent` per node, each speaking only with its node's own client certificate
(`controlplane.cluster.ControlPlane.node_credentials`: ``system:node:<name>``), so the Node
authorizer and NodeRestriction hold it to what a kubelet may do.

A node agent:

1. serves its kubelet API (`kubelet.log_server`: container logs, for ``kubectl logs``) and
   registers its Node with that port, then keeps it Ready (`kubelet.registration.NodeHeartbeat`:
   Lease renewals, status patches) until `NodeAgent.go_not_ready` or `stop`;
2. follows the pods the real kube-scheduler bound to it (`kubelet.pod_watch`: list and watch with
   ``spec.nodeName=<node>``) and runs each new one in a thread of its own
   (`kubelet.pod_runner`), writing its status through ``pods/status`` (a merge patch carrying the
   pod's uid, so a new pod of the same name is never written by mistake);
3. reads the Secrets and ConfigMaps its pods reference as the node: the Node authorizer lets it
   read those only, and only once it has seen the pod bound here (until then a 403, which the
   container waits out as ``CreateContainerConfigError``);
4. honours graceful deletion: a pod with a ``deletionTimestamp`` has its containers stopped within
   ``deletionGracePeriodSeconds``, then the node deletes it for good (``gracePeriodSeconds=0``
   with a uid precondition); its logs are dropped when the pod is gone.

Pods of namespaces other than `StandInKubelet.namespaces` (when given) are bound but never run:
they stay Pending (the chart's own Deployments and DaemonSet, whose images no node has here),
and are confirmed deleted at once when deleted.
Failures of the stand-in itself go to `StandInKubelet.errors` (tests assert there are none).
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import kubernetes
from kubernetes import client

from kubelet.environment import ContainerConfigError, Lookup
from kubelet.log_server import KubeletServer
from kubelet.node import Node
from kubelet.outage import until_served
from kubelet.pod_runner import PodRunner, PodWork
from kubelet.pod_watch import PodWatch
from kubelet.registration import LEASE_NAMESPACE, MERGE_PATCH, NodeHeartbeat
from kubelet.status import PodStatus
from raas_operator.runtime.outage import is_api_outage

if TYPE_CHECKING:
    from controlplane.cluster import ControlPlane

TERMINAL = ("Succeeded", "Failed")


class NodeAgent:
    """One node of the stand-in kubelet (see the module docstring)."""

    def __init__(self, kubelet: StandInKubelet, node: Node) -> None:
        from controlplane.cluster import KUBELET_CLIENT

        self.kubelet, self.node = kubelet, node
        plane = kubelet.plane
        self.api = plane.node_client(node.name)
        self.watch_api = plane.node_client(node.name)
        self.core = client.CoreV1Api(self.api)
        credentials = plane.node_credentials(node.name)
        self.server = KubeletServer(
            node.name, self.find, credentials.serving_certificate, credentials.serving_key,
            credentials.certificate_authority, KUBELET_CLIENT,
        )  # fmt: skip
        self.heartbeat = NodeHeartbeat(self.api, node, self.server.port, kubelet.report)
        self.runner = PodRunner(self._write_status, self._lookup)
        self.watch = PodWatch(self.watch_api, node.name, self._sync, self._event, kubelet.report)
        self.works: dict[str, PodWork] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        """Port of its kubelet API on 127.0.0.1 (the Node's ``daemonEndpoints.kubeletEndpoint.Port``)."""
        return self.server.port

    def start(self) -> None:
        self.server.start()
        self.heartbeat.register()
        self.watch.start()

    def go_not_ready(self) -> None:
        """Stop renewing the Lease and posting status (the node drops off; its pods keep running)."""
        self.heartbeat.stop()

    def go_ready(self) -> None:
        """Renew the Lease and post status again (`NodeHeartbeat.resume`)."""
        self.heartbeat.resume()

    def stop(self) -> None:
        """Stop following pods, stop every container (no grace), then the heartbeats and the API."""
        self._stopping.set()
        self.watch.stop()
        with self._lock:
            works = list(self.works.values())
        for work in works:
            work.terminate(0)
        for work in works:
            if work.thread is not None:
                work.thread.join(timeout=60)
        self.heartbeat.stop()
        self.server.close()
        self.api.close()  # type: ignore[no-untyped-call]
        self.watch_api.close()  # type: ignore[no-untyped-call]

    # -- pods ------------------------------------------------------------------------------------

    def find(self, namespace: str, name: str) -> PodWork | None:
        with self._lock:
            found = [work for work in self.works.values() if (work.namespace, work.name) == (namespace, name)]
        return found[-1] if found else None

    def _sync(self, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            self._event("MODIFIED", pod)
        present = {pod["metadata"]["uid"] for pod in pods}
        with self._lock:
            missing = [uid for uid in self.works if uid not in present]
        for uid in missing:
            self._gone(uid)

    def _event(self, kind: str, pod: dict[str, Any]) -> None:
        if self._stopping.is_set():
            return
        uid = pod["metadata"]["uid"]
        if kind == "DELETED":
            return self._gone(uid)
        with self._lock:
            work = self.works.get(uid)
        metadata = pod["metadata"]
        if self.kubelet.namespaces is not None and metadata["namespace"] not in self.kubelet.namespaces:
            if metadata.get("deletionTimestamp"):
                self._confirm_deletion(pod)  # nothing of it runs here
            return None  # not this test's pod (e.g. the chart's own Deployments): left Pending
        if metadata.get("deletionTimestamp"):
            if work is None:
                self._confirm_deletion(pod)
            else:
                work.terminate(float(metadata.get("deletionGracePeriodSeconds") or 0))
                if work.thread is not None and not work.thread.is_alive():
                    self._confirm_deletion(pod)
        elif work is None and (pod.get("status") or {}).get("phase") not in TERMINAL:
            self._begin(pod)
        return None

    def _begin(self, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        folder = self.kubelet.folder / "logs" / metadata["namespace"] / metadata["name"] / metadata["uid"]
        grace = pod["spec"].get("terminationGracePeriodSeconds")
        work = PodWork(pod, self.node, folder, grace_s=float(30 if grace is None else grace))
        work.thread = threading.Thread(target=self._run, args=(work,), name=f"pod-{work.name}", daemon=True)
        with self._lock:
            self.works[work.uid] = work
        self.kubelet.started[work.name] = self.node.name
        work.thread.start()

    def _run(self, work: PodWork) -> None:
        try:
            self.runner.run(work)
        except Exception as error:
            if not self._stopping.is_set():
                self.kubelet.report(f"{work.namespace}/{work.name}", error)
        finally:
            self.kubelet.finished.append(work.name)
            if work.stop.is_set() and not self._stopping.is_set():
                self._confirm_deletion(work.pod)

    def _gone(self, uid: str) -> None:
        """The pod was deleted for good: stop what still runs, forget it and drop its logs."""
        with self._lock:
            work = self.works.pop(uid, None)
        if work is None:
            return
        work.terminate(0)

        def clean() -> None:
            if work.thread is not None:
                work.thread.join()
            shutil.rmtree(work.logs, ignore_errors=True)

        threading.Thread(target=clean, name=f"forget-{work.name}", daemon=True).start()

    def _confirm_deletion(self, pod: dict[str, Any]) -> None:
        """The final delete of a pod whose containers stopped: no grace, this very pod only."""
        metadata = pod["metadata"]
        options = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=metadata["uid"])
        )
        try:
            until_served(
                lambda: self.core.delete_namespaced_pod(
                    metadata["name"], metadata["namespace"], body=options, _preload_content=False
                ),
                self._stopping,
            )
        except client.exceptions.ApiException as error:
            if error.status not in (404, 409) and not self._stopping.is_set():  # gone, or another pod by now
                self.kubelet.report(f"deleting {metadata['namespace']}/{metadata['name']}", error)
        except Exception as error:
            if not self._stopping.is_set():
                self.kubelet.report(f"deleting {metadata['namespace']}/{metadata['name']}", error)

    # -- the API, as the node --------------------------------------------------------------------

    def _write_status(self, pod: dict[str, Any], status: PodStatus) -> None:
        metadata = pod["metadata"]
        patch = {"metadata": {"uid": metadata["uid"]}, "status": status.render()}
        try:  # (an API server outage is waited out: the latest status is what gets written)
            until_served(
                lambda: self.core.patch_namespaced_pod_status(
                    metadata["name"], metadata["namespace"], patch, _content_type=MERGE_PATCH, _preload_content=False
                ),
                self._stopping,
            )
        except client.exceptions.ApiException as error:
            if error.status not in (404, 409):  # deleted meanwhile (409: a new pod of that name)
                raise

    def _lookup(self, namespace: str) -> Lookup:
        def read(kind: str, name: str) -> Mapping[str, str] | None:
            reader = self.core.read_namespaced_secret if kind == "Secret" else self.core.read_namespaced_config_map
            try:
                document = cast(Any, reader(name, namespace))
            except client.exceptions.ApiException as error:
                if error.status == 404:
                    return None
                if error.status == 403:  # the Node authorizer has not seen the pod bound here yet
                    raise ContainerConfigError(
                        f"{kind.lower()} {namespace}/{name}: node may not read it (yet)"
                    ) from None
                raise
            if kind == "Secret":
                return {key: _decode(value) for key, value in (document.data or {}).items()}
            return dict(document.data or {})

        return read


def _decode(value: str) -> str:
    return base64.b64decode(value).decode()


class StandInKubelet:
    """Plays `nodes` on the control plane `plane` (see the module docstring). Use `start` and
    `stop` (or a ``with`` block)."""

    def __init__(
        self,
        plane: ControlPlane,
        nodes: Sequence[Node],
        folder: Path | None = None,
        namespaces: Sequence[str] | None = None,
    ) -> None:
        self.plane = plane
        self.namespaces = None if namespaces is None else set(namespaces)
        """The namespaces whose pods it runs (None: all); others bound to its nodes stay Pending."""
        self.folder = folder or Path(tempfile.mkdtemp(prefix="kubelet-"))
        self._own_folder = folder is None
        self.started: dict[str, str] = {}
        """Pod name → the node it was bound to and run on, in the order pods were started."""
        self.finished: list[str] = []
        self.errors: list[str] = []
        """Failures of the stand-in itself (a test should assert there are none)."""
        self.outages: list[str] = []
        """Calls that met the API server unreachable or unable to serve (`kubelet.outage`): ridden
        out, as a kubelet does, not failures."""
        self.agents = {node.name: NodeAgent(self, node) for node in nodes}

    def report(self, what: str, error: BaseException) -> None:
        """Record `error` of `what`: an outage of the API server, or a failure of the stand-in."""
        message = f"{what}: {type(error).__name__}: {error}"
        (self.outages if is_api_outage(error) else self.errors).append(message)

    def __enter__(self) -> StandInKubelet:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> StandInKubelet:
        """Register every node (each Ready when this returns) and start following their pods."""
        try:
            for agent in self.agents.values():
                agent.start()
        except BaseException:
            self.stop()
            raise
        return self

    def go_not_ready(self, node: str) -> None:
        """Node `node` stops its heartbeats: the node lifecycle controller marks it NotReady."""
        self.agents[node].go_not_ready()

    def go_ready(self, node: str) -> None:
        """Node `node` beats again: it is Ready at once (its status says so)."""
        self.agents[node].go_ready()

    def stop(self) -> None:
        """Stop every node (their containers first), then delete their Node objects and Leases (as
        the admin)."""
        for agent in self.agents.values():
            agent.stop()
        with contextlib.suppress(Exception), self.plane.api_client() as admin:  # the plane may be gone
            core, leases = client.CoreV1Api(admin), client.CoordinationV1Api(admin)
            for name in self.agents:
                with contextlib.suppress(kubernetes.client.ApiException):
                    core.delete_node(name)
                with contextlib.suppress(kubernetes.client.ApiException):
                    leases.delete_namespaced_lease(name, LEASE_NAMESPACE)
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
