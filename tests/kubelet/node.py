"""A node the stand-in kubelet plays (`Node`) and the network its pods get (`Egress`).

The Node object in the API is built from it (`kubelet.registration`): its labels (plus
``kubernetes.io/hostname``), its taints, its InternalIP 127.0.0.1 and the port of its kubelet API.
The real scheduler decides which pods it gets; the kubelet runs them with `runtime`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubelet.runtime import Runtime


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
