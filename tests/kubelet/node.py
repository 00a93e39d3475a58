"""The stand-in kubelet: plays a set of nodes for the Kubernetes emulator, which has neither
scheduler nor kubelet.

Every 0.1 s it lists the namespace's pods. A new pod is bound (``spec.nodeName``) to the first
`Node` that accepts it — its ``nodeSelector`` matches the node's labels and it tolerates the
node's NoSchedule/NoExecute taints; a pod no node accepts stays Pending — and run by that
node's runtime in a thread of its own, as a kubelet would:

1. the pod's volumes are made (`kubelet.volumes`); ``startTime`` is set, phase Pending;
2. init containers run one after the other, each to completion; a failing one fails the pod
   (``restartPolicy: Never``). The node's `Egress` rules are the only network any container gets;
3. the main containers run together; the pod is Running while they do, then Succeeded when all
   exited 0, else Failed;
4. each container's status follows Kubernetes (`kubelet.status`): running, then terminated with
   its exit code, reason ``Completed``/``Error``/``OOMKilled`` and the message from its
   terminationMessagePath file (with ``terminationMessagePolicy: FallbackToLogsOnError``, the
   last 80 lines / 2 KiB of its log when it failed and wrote none); a container that cannot be
   configured (a missing Secret or key, an unmapped image, a hostPath the node does not offer)
   waits with ``CreateContainerConfigError`` (or the runtime's reason) and is retried every
   second, like a kubelet does;
5. past ``activeDeadlineSeconds`` the running container is stopped and the pod Failed with
   reason ``DeadlineExceeded``;
6. a deleted pod's containers are stopped (``terminationGracePeriodSeconds``, then killed). The
   emulator deletes a pod at once (it has no graceful deletion); a pod marked for deletion
   instead is removed by the kubelet once its containers are stopped, as a kubelet confirms it.

Logs: the main container's stdout and stderr (interleaved) are what the emulator serves at
``GET .../pods/NAME/log`` (`RealisticEmulator.pod_logs`, one log per pod: it ignores
``container=``), refreshed while the pod runs; an init container that failed leaves its log
there instead. Failures of the stand-in itself go to `errors` (tests assert there are none).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from kubernetes import client

from kubelet.environment import ContainerConfigError, resolve_environment
from kubelet.runtime import ContainerExit, ContainerRun, Runtime
from kubelet.status import DEADLINE_MESSAGE, PodStatus
from kubelet.volumes import PodVolumes, prepare_volumes

_TICK_S = 0.1
_RETRY_S = 1.0
_MESSAGE_MAX = 4096
_FALLBACK_LINES, _FALLBACK_BYTES = 80, 2048


@dataclass(frozen=True)
class Egress:
    """Loopback endpoints of this host that containers of matching pods may reach (a NetworkPolicy's
    allowed egress, relayed by `kubelet.egress`)."""

    endpoints: Sequence[tuple[str, int]]
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    """The pods it applies to: those carrying all these labels (every pod when empty)."""
    init_containers_only: bool = False
    """Narrower than a cluster (a pod's containers share one network there): main containers get none."""

    def endpoints_for(self, pod: Mapping[str, Any], *, init: bool) -> list[tuple[str, int]]:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if any(labels.get(key) != value for key, value in self.pod_labels.items()):
            return []
        return [] if self.init_containers_only and not init else list(self.endpoints)


@dataclass
class Node:
    """A node the kubelet plays: its labels, taints, runtime and the host folders its hostPaths are."""

    name: str
    runtime: Runtime
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    host_paths: dict[str, Path] = field(default_factory=dict)
    """hostPath path → this host's folder standing for it (an allow-list: nothing else is mounted)."""
    egress: Sequence[Egress] = ()
    """What its pods' containers may reach; nothing else (every container has ``--network none``)."""

    def accepts(self, pod: Mapping[str, Any]) -> bool:
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            return bool(spec["nodeName"] == self.name)
        selector = spec.get("nodeSelector") or {}
        if any(self.labels.get(key) != value for key, value in selector.items()):
            return False
        tolerations = spec.get("tolerations") or []
        return all(
            any(_tolerates(toleration, taint) for toleration in tolerations)
            for taint in self.taints
            if taint.get("effect") in ("NoSchedule", "NoExecute")
        )


def _tolerates(toleration: Mapping[str, str], taint: Mapping[str, str]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint.get("key")
    return toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get("value", "")


@dataclass
class _PodWork:
    name: str
    node: Node
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    grace_s: float = 30.0
    log_file: Path | None = None


class StandInKubelet:
    """Runs the emulator's pods on `nodes` (see the module docstring)."""

    def __init__(self, api_client: client.ApiClient, emulator: Any, namespace: str, nodes: Sequence[Node]) -> None:
        self.core = client.CoreV1Api(api_client)
        self.emulator = emulator
        self.namespace = namespace
        self.nodes = list(nodes)
        self.started: dict[str, str] = {}
        """Pod name → the node it was bound to and run on, in the order pods were started."""
        self.finished: list[str] = []
        self.errors: list[str] = []
        """Failures of the stand-in itself (a test should assert there are none)."""
        self._work: dict[str, _PodWork] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stand-in-kubelet", daemon=True)

    def start(self) -> StandInKubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, stop every pod's containers and wait for them."""
        self._stop.set()
        self._thread.join(timeout=10)
        for work in self._work.values():
            work.grace_s = 0
            work.stop.set()
        for work in self._work.values():
            if work.thread is not None:
                work.thread.join(timeout=60)

    # -- the watch loop ------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(_TICK_S):
            try:
                self._tick()
            except Exception as error:  # the API may be going away at the end of a test
                if not self._stop.is_set():
                    self.errors.append(f"kubelet loop: {type(error).__name__}: {error}")

    def _tick(self) -> None:
        response = cast(Any, self.core.list_namespaced_pod(self.namespace, _preload_content=False))
        pods = json.loads(response.data).get("items", [])
        present = set()
        for pod in pods:
            name = pod["metadata"]["name"]
            uid = pod["metadata"].get("uid") or name  # a pod re-created under its old name is a new pod
            present.add(uid)
            work = self._work.get(uid)
            if pod["metadata"].get("deletionTimestamp"):
                if work is None:
                    self._remove(name)
                else:
                    work.grace_s = float(pod["metadata"].get("deletionGracePeriodSeconds") or work.grace_s)
                    work.stop.set()
            elif work is None:
                node = next((node for node in self.nodes if node.accepts(pod)), None)
                if node is not None:
                    self._begin(pod, node)
        for uid, work in self._work.items():
            if uid not in present:  # deleted outright
                work.stop.set()
            elif work.log_file is not None and work.thread is not None and work.thread.is_alive():
                self._publish_log(work.name, work.log_file)

    def _begin(self, pod: dict[str, Any], node: Node) -> None:
        name = pod["metadata"]["name"]
        if not (pod.get("spec") or {}).get("nodeName"):
            with contextlib.suppress(client.exceptions.ApiException):  # gone meanwhile: the next tick sees it
                self.core.patch_namespaced_pod(name, self.namespace, {"spec": {"nodeName": node.name}})
            pod["spec"]["nodeName"] = node.name
        work = _PodWork(name, node, grace_s=float(pod["spec"].get("terminationGracePeriodSeconds", 30)))
        thread = threading.Thread(target=self._run_pod_safely, args=(pod, work), name=f"pod-{name}", daemon=True)
        work.thread = thread
        self._work[pod["metadata"].get("uid") or name] = work
        self.started[name] = node.name
        thread.start()

    # -- one pod -------------------------------------------------------------------------------

    def _run_pod_safely(self, pod: dict[str, Any], work: _PodWork) -> None:
        name = pod["metadata"]["name"]
        try:
            self._run_pod(pod, work)
        except Exception as error:
            self.errors.append(f"{name}: {type(error).__name__}: {error}")
        finally:
            self.finished.append(name)
            if work.stop.is_set() and not self._stop.is_set():
                with contextlib.suppress(Exception):  # gone already, or the API is going away
                    self._remove(name)

    def _run_pod(self, pod: dict[str, Any], work: _PodWork) -> None:
        name, spec = pod["metadata"]["name"], pod["spec"]
        status = PodStatus.of(spec)
        deadline = time.monotonic() + float(spec.get("activeDeadlineSeconds") or 10**9)
        scratch = Path(tempfile.mkdtemp(prefix=f"kubelet-{name}-"))
        volumes: PodVolumes | None = None
        try:
            self._patch(name, status)
            while volumes is None:
                try:
                    volumes = prepare_volumes(spec, scratch, work.node.host_paths)
                except ContainerConfigError as error:
                    for state in (*status.init, *status.main):
                        state.wait("ContainerCreating", str(error))
                    self._patch(name, status)
                    if not self._pause(work, deadline):
                        return self._deadline_or_gone(name, status, deadline)
            for container in spec.get("initContainers") or []:
                ended = self._run_container(pod, container, status, volumes, scratch, work, deadline, init=True)
                if ended is None or time.monotonic() > deadline:
                    return self._deadline_or_gone(name, status, deadline)
                if ended.exit_code != 0:
                    status.fail()
                    self._patch(name, status)
                    return None
            threads = [
                threading.Thread(
                    target=self._run_main_safely, args=(pod, container, status, volumes, scratch, work, deadline)
                )
                for container in spec["containers"]
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if time.monotonic() > deadline or any(state.terminated is None for state in status.main):
                return self._deadline_or_gone(name, status, deadline)
            status.finish()
            self._patch(name, status)
            return None
        finally:
            if volumes is not None:
                volumes.close()
            shutil.rmtree(scratch, ignore_errors=True)

    def _deadline_or_gone(self, name: str, status: PodStatus, deadline: float) -> None:
        if time.monotonic() > deadline:
            status.fail("DeadlineExceeded", DEADLINE_MESSAGE)
            self._patch(name, status)

    def _pause(self, work: _PodWork, deadline: float) -> bool:
        """Wait before a retry; False when the pod is gone or past its deadline meanwhile."""
        return not work.stop.wait(_RETRY_S) and time.monotonic() < deadline

    def _run_main_safely(self, pod: dict[str, Any], container: dict[str, Any], *context: Any) -> None:
        try:
            self._run_container(pod, container, *context, init=False)
        except Exception as error:
            self.errors.append(f"{pod['metadata']['name']}/{container['name']}: {type(error).__name__}: {error}")

    def _run_container(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        status: PodStatus,
        volumes: PodVolumes,
        scratch: Path,
        work: _PodWork,
        deadline: float,
        *,
        init: bool,
    ) -> ContainerExit | None:
        """Run one container to its end and record it in `status`; None if it never started."""
        name = pod["metadata"]["name"]
        state = status.container(container["name"])
        termination = scratch / "termination" / container["name"]
        termination.parent.mkdir(exist_ok=True)
        termination.touch(mode=0o666)
        termination.chmod(0o666)
        log_file = scratch / "logs" / f"{container['name']}.log"
        log_file.parent.mkdir(exist_ok=True)
        if not init:
            work.log_file = log_file

        def started() -> None:
            state.run()
            if not init:
                status.phase = "Running"
            self._patch(name, status)

        while True:
            if work.stop.is_set() or time.monotonic() > deadline:
                return None
            try:
                run = ContainerRun(
                    pod=pod, container=container, environment=resolve_environment(pod, container, self._lookup),
                    volumes=volumes.folders, termination_file=termination, log_file=log_file, deadline=deadline,
                    stop=work.stop, on_start=started, grace_s=work.grace_s,
                    egress=[end for rule in work.node.egress for end in rule.endpoints_for(pod, init=init)],
                )  # fmt: skip
                ended = work.node.runtime.run(run)
                break
            except ContainerConfigError as error:
                state.wait(error.reason, str(error))
                self._patch(name, status)
                if not self._pause(work, deadline):
                    return None
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        message = termination.read_bytes()[:_MESSAGE_MAX].decode(errors="replace")
        if (
            not message
            and ended.exit_code != 0
            and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            message = "\n".join(log.splitlines()[-_FALLBACK_LINES:])[-_FALLBACK_BYTES:]
        reason = "OOMKilled" if ended.oom_killed else "Completed" if ended.exit_code == 0 else "Error"
        state.end(ended.exit_code, reason, message)
        if not init or ended.exit_code != 0:
            self.emulator.pod_logs[(self.namespace, name)] = log
        if init and time.monotonic() <= deadline:
            self._patch(name, status)
        return ended

    # -- the API -------------------------------------------------------------------------------

    def _lookup(self, kind: str, name: str) -> Mapping[str, str] | None:
        read = self.core.read_namespaced_secret if kind == "Secret" else self.core.read_namespaced_config_map
        try:
            document = json.loads(cast(Any, read(name, self.namespace, _preload_content=False)).data)
        except client.exceptions.ApiException as error:
            if error.status == 404:
                return None
            raise
        data = {key: value for key, value in (document.get("data") or {}).items()}
        if kind == "Secret":
            data = {key: base64.b64decode(value).decode() for key, value in data.items()}
        # The API server turns a Secret's stringData into data; the emulator keeps what it was given.
        data.update(document.get("stringData") or {})
        return data

    def _publish_log(self, name: str, log_file: Path) -> None:
        with contextlib.suppress(OSError):
            self.emulator.pod_logs[(self.namespace, name)] = log_file.read_text(errors="replace")

    def _patch(self, pod: str, status: PodStatus) -> None:
        try:
            self.core.patch_namespaced_pod_status(
                pod, self.namespace, {"status": status.render()}, _preload_content=False
            )
        except client.exceptions.ApiException as error:
            if error.status != 404:  # deleted meanwhile
                raise

    def _remove(self, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0, _preload_content=False)
        except client.exceptions.ApiException as error:
            if error.status != 404:
                raise
