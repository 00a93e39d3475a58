"""What the operator needs to know of a pod, read from the pod object the API server returns.

`PodView.from_pod` reads a pod (a dict, as the API returns it) into the few facts that decide a
job's fate: which of the job's pods it is (fetch or run, attempt), where it runs, whether it
ended, and why (exit code, ``OOMKilled``, ``DeadlineExceeded``, the termination message).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from raas_operator.pods.builder import ATTEMPT_ANNOTATION, COMPONENT_LABEL


class PodKind(str, enum.Enum):
    FETCH = "fetch"
    RUN = "run"


class PodOutcome(str, enum.Enum):
    """Where a pod is in its life, as far as a job cares."""

    WAITING = "Waiting"
    """Created, not running yet (unscheduled, pulling, init containers)."""
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    GONE = "Gone"
    """Being deleted."""


@dataclass(frozen=True)
class PodView:
    """The facts of one pod of a job."""

    name: str
    kind: PodKind
    attempt: int
    node: str | None
    outcome: PodOutcome
    exit_code: int | None = None
    reason: str = ""
    """``OOMKilled``, ``DeadlineExceeded``, ``Error``, ``Evicted``, ... (container's, else the pod's)."""
    message: str = ""
    """The main container's termination message (a fetch pod writes its commit or its error there)."""

    @property
    def ended(self) -> bool:
        return self.outcome in (PodOutcome.SUCCEEDED, PodOutcome.FAILED)

    @classmethod
    def from_pod(cls, pod: dict[str, Any]) -> PodView:
        metadata = pod.get("metadata") or {}
        status = pod.get("status") or {}
        labels = metadata.get("labels") or {}
        kind = PodKind.FETCH if labels.get(COMPONENT_LABEL) == "fetch" else PodKind.RUN
        annotations = metadata.get("annotations") or {}
        try:
            attempt = int(annotations.get(ATTEMPT_ANNOTATION, "1"))
        except ValueError:
            attempt = 1
        phase = status.get("phase") or "Pending"
        terminated = _main_terminated(status)
        outcome = {
            "Pending": PodOutcome.WAITING,
            "Running": PodOutcome.RUNNING,
            "Succeeded": PodOutcome.SUCCEEDED,
            "Failed": PodOutcome.FAILED,
        }.get(phase, PodOutcome.WAITING)
        if metadata.get("deletionTimestamp") and not terminated:
            outcome = PodOutcome.GONE
        exit_code = terminated.get("exitCode") if terminated else None
        reason = (terminated or {}).get("reason") or status.get("reason") or ""
        if status.get("reason") in ("DeadlineExceeded", "Evicted"):
            reason = status["reason"]
        return cls(
            name=metadata.get("name", ""),
            kind=kind,
            attempt=attempt,
            node=(pod.get("spec") or {}).get("nodeName"),
            outcome=outcome,
            exit_code=exit_code if isinstance(exit_code, int) else None,
            reason=str(reason),
            message=str((terminated or {}).get("message") or status.get("message") or "").strip(),
        )


def _main_terminated(status: dict[str, Any]) -> dict[str, Any] | None:
    for container in status.get("containerStatuses") or []:
        if container.get("name") in ("controller", "fetch", "main"):
            terminated = (container.get("state") or {}).get("terminated")
            if terminated:
                return dict(terminated)
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return None
