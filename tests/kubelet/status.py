"""A pod's status as a kubelet reports it: phase, conditions and one status per container.

`PodStatus` starts as the kubelet first sees a bound pod (Pending; init containers and main
containers waiting, ``PodInitializing`` for the main ones) and is moved on by the kubelet as the
containers run; `render` gives the whole ``status`` document (lists are replaced by a merge
patch, so every patch carries all container statuses). Reasons follow Kubernetes: a container
ends ``Completed`` (exit 0), ``Error`` or ``OOMKilled``; a container that cannot be configured
waits with ``CreateContainerConfigError``; a pod past ``activeDeadlineSeconds`` is Failed with
reason ``DeadlineExceeded``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def now() -> str:
    """The current time as Kubernetes writes it (RFC 3339, UTC, seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class ContainerState:
    """One container's state: exactly one of waiting, running or terminated."""

    name: str
    image: str
    image_id: str = ""
    waiting: dict[str, str] | None = field(default_factory=lambda: {"reason": "ContainerCreating"})
    running: dict[str, str] | None = None
    terminated: dict[str, Any] | None = None

    def wait(self, reason: str, message: str = "") -> None:
        self.waiting, self.running, self.terminated = {"reason": reason, "message": message}, None, None

    def run(self) -> None:
        self.waiting, self.running, self.terminated = None, {"startedAt": now()}, None

    def end(self, exit_code: int, reason: str, message: str = "") -> None:
        started = (self.running or {}).get("startedAt", now())
        self.terminated = {
            "exitCode": exit_code, "reason": reason, "message": message, "startedAt": started, "finishedAt": now()
        }  # fmt: skip
        self.waiting = self.running = None

    def render(self, *, ready: bool) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.waiting is not None:
            state["waiting"] = {key: value for key, value in self.waiting.items() if value}
        if self.running is not None:
            state["running"] = self.running
        if self.terminated is not None:
            state["terminated"] = {key: value for key, value in self.terminated.items() if value != ""}
        return {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": ready and self.running is not None,
            "started": self.running is not None,
            "restartCount": 0,
            "state": state,
        }


@dataclass
class PodStatus:
    """The status the kubelet keeps for one pod; `render` is what it patches."""

    init: list[ContainerState]
    main: list[ContainerState]
    phase: str = "Pending"
    reason: str = ""
    message: str = ""
    start_time: str = field(default_factory=now)

    @classmethod
    def of(cls, spec: dict[str, Any]) -> PodStatus:
        init = [ContainerState(c["name"], c.get("image", "")) for c in spec.get("initContainers") or []]
        main = [ContainerState(c["name"], c.get("image", "")) for c in spec.get("containers") or []]
        if init:
            for container in main:
                container.wait("PodInitializing")
        return cls(init, main)

    def container(self, name: str) -> ContainerState:
        return next(state for state in (*self.init, *self.main) if state.name == name)

    def initialized(self) -> bool:
        return all(state.terminated is not None and state.terminated["exitCode"] == 0 for state in self.init)

    def finish(self) -> None:
        """Phase from the main containers once all have terminated: Succeeded when all exited 0."""
        codes = [state.terminated["exitCode"] for state in self.main if state.terminated is not None]
        self.phase = "Succeeded" if codes and all(code == 0 for code in codes) else "Failed"

    def fail(self, reason: str = "", message: str = "") -> None:
        self.phase, self.reason, self.message = "Failed", reason, message

    def render(self) -> dict[str, Any]:
        initialized = self.initialized()
        ready = self.phase == "Running" and all(state.running is not None for state in self.main)
        status: dict[str, Any] = {
            "phase": self.phase,
            "hostIP": "127.0.0.1",
            "startTime": self.start_time,
            "conditions": [
                _condition("PodScheduled", True),
                _condition("Initialized", initialized),
                _condition("ContainersReady", ready),
                _condition("Ready", ready),
            ],
            "containerStatuses": [state.render(ready=ready) for state in self.main],
        }
        if self.init:
            status["initContainerStatuses"] = [state.render(ready=False) for state in self.init]
        if self.reason:
            status["reason"] = self.reason
        if self.message:
            status["message"] = self.message
        return status


def _condition(kind: str, true: bool) -> dict[str, str]:
    return {"type": kind, "status": "True" if true else "False", "lastTransitionTime": now()}
