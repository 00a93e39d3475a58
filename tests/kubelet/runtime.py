"""What a container runtime of the stand-in kubelet is given and gives back.

The kubelet (`kubelet.node`) resolves a container's environment and the pod's volumes, then
hands a `ContainerRun` to its node's runtime (`kubelet.podman.PodmanRuntime`: real containers),
whose ``run`` blocks until the container has ended and returns a `ContainerExit`. A runtime
raises `ContainerConfigError` (before anything started) when the container cannot be created as
specified.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class ContainerRun:
    """One container of a pod to run."""

    pod: Mapping[str, Any]
    container: Mapping[str, Any]
    environment: dict[str, str]
    """Resolved by `kubelet.environment.resolve_environment`."""
    volumes: Mapping[str, Path]
    """The pod's volume names → host folders (`kubelet.volumes`)."""
    termination_file: Path
    """Host file behind the container's terminationMessagePath."""
    log_file: Path
    """Where the container's stdout and stderr go, interleaved (as Kubernetes keeps a log)."""
    deadline: float
    """``time.monotonic()`` past which the container is stopped (activeDeadlineSeconds)."""
    stop: threading.Event
    """Set when the pod is being deleted: stop the container (with `grace_s`)."""
    on_start: Callable[[], None]
    """Called once the container's process is about to run."""
    grace_s: float = 30.0
    egress: Sequence[tuple[str, int]] = field(default_factory=tuple)
    """Loopback endpoints of the host the container may reach (`kubelet.egress`)."""


@dataclass(frozen=True)
class ContainerExit:
    """How a container ended."""

    exit_code: int
    oom_killed: bool = False


class Runtime(Protocol):
    def run(self, run: ContainerRun) -> ContainerExit:
        """Run the container to its end (see `ContainerRun`); `ContainerConfigError` if it cannot start."""
        ...
