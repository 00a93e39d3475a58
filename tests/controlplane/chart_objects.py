"""RaaS objects written as the chart's components would write them, for tests that drive the
operator's engine directly on the real control plane (no agent, no API server of ours):

- `ready_robot`: a Robot created and made Ready as the robot agent's ServiceAccount does;
- `submit_job`: a RaasJob created as the web API's ServiceAccount does (Pending, no status);
- `queued_job`: such a RaasJob whose code was fetched (Queued), as the operator records it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import kubernetes

from raas_operator.jobs.model import JobStatus, Phase, PhaseChange, transition
from raas_operator.runtime.cluster import GROUP, VERSION, Cluster

SOURCE = {"kind": "git", "url": "https://git.example.org/ada/c.git", "ref": "main"}


def ready_robot(agent: kubernetes.client.CustomObjectsApi, name: str) -> None:
    """Robot `name` on Node ``pi-<name>``, Ready with a heartbeat of now."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Robot",
        "metadata": {"name": name, "labels": {"raas.dev/robot": name}},
        "spec": {"node_name": f"pi-{name}", "robot_type": "pendulum"},
    }
    agent.create_cluster_custom_object(GROUP, VERSION, "robots", body)
    status = {"phase": "Ready", "last_heartbeat": datetime.now(timezone.utc).isoformat(), "jobs_completed": 0}
    agent.patch_cluster_custom_object_status(GROUP, VERSION, "robots", name, {"status": status})


def submit_job(api: kubernetes.client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    """RaasJob `name` of owner ada (a git source), as created."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaasJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"owner": "ada", "source": SOURCE},
    }
    created: dict[str, Any] = api.create_namespaced_custom_object(GROUP, VERSION, namespace, "raasjobs", body)
    return created


def queued_job(cluster: Cluster, api: kubernetes.client.CustomObjectsApi, name: str) -> dict[str, Any]:
    """RaasJob `name` submitted through `api` in the operator's namespace, its code fetched (at
    commit 000…): Queued, the scheduler's to place. Returns the object as written."""
    created = submit_job(api, cluster.settings.namespace, name)
    pending = JobStatus(history=(PhaseChange(phase=Phase.PENDING, at=datetime.now(timezone.utc), reason="Submitted"),))
    fetching = transition(pending, Phase.FETCHING, reason="Fetching")
    queued = transition(fetching, Phase.QUEUED, reason="Fetched", commit="0" * 40)
    return cluster.patch_status(name, queued, created["metadata"]["resourceVersion"])
