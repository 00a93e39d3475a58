"""One pod on its node, run as a kubelet runs it (`PodRunner`), in a thread of its own:

1. the pod's volumes are made (`kubelet.volumes`); ``startTime`` is set, phase Pending;
2. init containers run one after the other, each to completion; a failing one fails the pod
   (``restartPolicy: Never``). The node's `Egress` rules are the only network any container gets;
3. the main containers run together; the pod is Running while they do, then Succeeded when all
   exited 0, else Failed;
4. each container's status follows Kubernetes (`kubelet.status`): running, then terminated with
   its exit code, reason ``Completed``/``Error``/``OOMKilled`` and the message from its
   terminationMessagePath file (with ``terminationMessagePolicy: FallbackToLogsOnError``, the
   last 80 lines / 2 KiB of its log when it failed and wrote none); a container that cannot be
   configured (a missing Secret or key, one the Node authorizer does not let the node read yet, an
   unmapped image, a hostPath the node does not offer) waits with ``CreateContainerConfigError``
   (or the runtime's reason) and is retried every second, like a kubelet does;
5. past ``activeDeadlineSeconds`` the running container is stopped and the pod Failed with
   reason ``DeadlineExceeded``;
6. when `PodWork.stop` is set (the pod is being deleted) the containers are stopped within
   `PodWork.grace_s`.

Each container's log goes to ``<logs>/<container>.log`` (`kubelet.logs`), kept after the pod
ended (the kubelet API serves it until the pod is deleted). Every status change is written with
`StatusWriter` (the node's merge patch of ``pods/status``).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubelet.environment import ContainerConfigError, Lookup, resolve_environment
from kubelet.logs import read_text
from kubelet.node import Node
from kubelet.runtime import ContainerExit, ContainerRun
from kubelet.status import DEADLINE_MESSAGE, PodStatus
from kubelet.volumes import PodVolumes, prepare_volumes

_RETRY_S = 1.0
_MESSAGE_MAX = 4096
_FALLBACK_LINES, _FALLBACK_BYTES = 80, 2048

StatusWriter = Callable[[dict[str, Any], PodStatus], None]
"""(pod, status) → the status written to the API server (a gone pod is no error)."""


@dataclass
class PodWork:
    """One pod the kubelet runs: its thread, its stop signal and where its logs are."""

    pod: dict[str, Any]
    node: Node
    logs: Path
    grace_s: float = 30.0
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    started: set[str] = field(default_factory=set)
    """Containers that started (their log exists)."""
    ended: set[str] = field(default_factory=set)
    """Containers that ended (their log is complete)."""
    status: PodStatus | None = None
    runs: list[ContainerRun] = field(default_factory=list)

    def terminate(self, grace_s: float) -> None:
        """Stop the pod's containers, each within `grace_s` (or sooner if told so before)."""
        self.grace_s = min(self.grace_s, grace_s)
        for run in self.runs:
            run.grace_s = self.grace_s
        self.stop.set()

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    def log_file(self, container: str) -> Path:
        return self.logs / f"{container}.log"


class PodRunner:
    """Runs pods on one node (see the module docstring); `lookup` reads Secrets and ConfigMaps of
    a namespace as the node."""

    def __init__(self, write_status: StatusWriter, lookup: Callable[[str], Lookup]) -> None:
        self._write_status = write_status
        self._writing = threading.Lock()
        self.lookup = lookup

    def write_status(self, pod: dict[str, Any], status: PodStatus) -> None:
        """One write at a time, so a pod's containers never overtake each other's news."""
        with self._writing:
            self._write_status(pod, status)

    def run(self, work: PodWork) -> None:
        pod, spec = work.pod, work.pod["spec"]
        status = work.status = PodStatus.of(spec)
        deadline = time.monotonic() + float(spec.get("activeDeadlineSeconds") or 10**9)
        scratch = Path(tempfile.mkdtemp(prefix=f"kubelet-{work.name}-"))
        volumes: PodVolumes | None = None
        try:
            self.write_status(pod, status)
            while volumes is None:
                try:
                    volumes = prepare_volumes(spec, scratch, work.node.host_paths)
                except ContainerConfigError as error:
                    for state in (*status.init, *status.main):
                        state.wait("ContainerCreating", str(error))
                    self.write_status(pod, status)
                    if not _pause(work, deadline):
                        return self._deadline_or_gone(pod, status, deadline)
            for container in spec.get("initContainers") or []:
                ended = self._run_container(work, container, volumes, scratch, deadline, init=True)
                if ended is None or time.monotonic() > deadline:
                    return self._deadline_or_gone(pod, status, deadline)
                if ended.exit_code != 0:
                    status.fail()
                    self.write_status(pod, status)
                    return None
            errors: list[BaseException] = []
            threads = [
                threading.Thread(
                    target=self._run_main,
                    args=(work, container, volumes, scratch, deadline, errors),
                    name=f"container-{work.name}-{container['name']}",
                    daemon=True,
                )
                for container in spec["containers"]
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
            if time.monotonic() > deadline or any(state.terminated is None for state in status.main):
                return self._deadline_or_gone(pod, status, deadline)
            status.finish()
            self.write_status(pod, status)
            return None
        finally:
            if volumes is not None:
                volumes.close()
            shutil.rmtree(scratch, ignore_errors=True)

    def _deadline_or_gone(self, pod: dict[str, Any], status: PodStatus, deadline: float) -> None:
        if time.monotonic() > deadline:
            status.fail("DeadlineExceeded", DEADLINE_MESSAGE)
            self.write_status(pod, status)

    def _run_main(self, *arguments: Any) -> None:
        *context, errors = arguments
        try:
            self._run_container(*context, init=False)
        except BaseException as error:
            errors.append(error)

    def _run_container(
        self,
        work: PodWork,
        container: Mapping[str, Any],
        volumes: PodVolumes,
        scratch: Path,
        deadline: float,
        *,
        init: bool,
    ) -> ContainerExit | None:
        """Run one container to its end and record it in the status; None if it never started."""
        pod, status, name = work.pod, work.status, str(container["name"])
        assert status is not None
        state = status.container(name)
        termination = scratch / "termination" / name
        termination.parent.mkdir(exist_ok=True)
        termination.touch(mode=0o666)
        termination.chmod(0o666)
        log_file = work.log_file(name)
        log_file.parent.mkdir(parents=True, exist_ok=True)

        def started() -> None:
            state.run()
            work.started.add(name)
            if not init:
                status.phase = "Running"
            self.write_status(pod, status)

        while True:
            if work.stop.is_set() or time.monotonic() > deadline:
                return None
            try:
                run = ContainerRun(
                    pod=pod, container=container,
                    environment=resolve_environment(pod, container, self.lookup(work.namespace)),
                    volumes=volumes.folders, termination_file=termination, log_file=log_file, deadline=deadline,
                    stop=work.stop, on_start=started, grace_s=work.grace_s,
                    egress=[end for rule in work.node.egress for end in rule.endpoints_for(pod, init=init)],
                )  # fmt: skip
                work.runs.append(run)
                ended = work.node.runtime.run(run)
                break
            except ContainerConfigError as error:
                state.wait(error.reason, str(error))
                self.write_status(pod, status)
                if not _pause(work, deadline):
                    return None
        work.ended.add(name)
        message = termination.read_bytes()[:_MESSAGE_MAX].decode(errors="replace")
        if (
            not message
            and ended.exit_code != 0
            and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            message = "\n".join(read_text(log_file).splitlines()[-_FALLBACK_LINES:])[-_FALLBACK_BYTES:]
        reason = "OOMKilled" if ended.oom_killed else "Completed" if ended.exit_code == 0 else "Error"
        state.end(ended.exit_code, reason, message)
        if init and time.monotonic() <= deadline:
            self.write_status(pod, status)
        return ended


def _pause(work: PodWork, deadline: float) -> bool:
    """Wait before a retry; False when the pod is being deleted or past its deadline meanwhile."""
    return not work.stop.wait(_RETRY_S) and time.monotonic() < deadline
