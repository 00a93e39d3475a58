"""The operator's engine at start-up, against the Kubernetes emulator over real HTTP.

kopf lists RaasJobs, pods and Robots on separate watch streams, so a starting (or restarted, or
newly active) operator can learn of waiting jobs before it has heard of any robot, or of a
running job before its pod. These tests feed the engine exactly that order of events and check
it neither rejects the queue for want of robots nor calls a running job's pod lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from cluster_world import NAMESPACE, operator_environment, use_kubeconfig, wait_for
from k8s_fixtures import running_emulator
from s3_server import running_s3_server

from raas_operator.jobs.model import JobStatus, Phase, PhaseChange, transition
from raas_operator.pods.builder import job_pod_name
from raas_operator.runtime.cache import ClusterCache
from raas_operator.runtime.cluster import GROUP, VERSION, Cluster
from raas_operator.runtime.controller import JobController
from raas_operator.runtime.settings import OperatorSettings

ROBOT = "pendulum-1"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    with running_emulator(NAMESPACE) as emulator, running_s3_server() as s3:
        use_kubeconfig(monkeypatch, tmp_path, emulator)
        operator_environment(monkeypatch, s3)
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
        yield Cluster(OperatorSettings())  # type: ignore[call-arg]


def ready_robot(cluster: Cluster, name: str = ROBOT) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Robot",
        "metadata": {"name": name, "labels": {"raas.dev/robot": name}},
        "spec": {"node_name": f"pi-{name}", "robot_type": "pendulum"},
    }
    cluster.custom.create_cluster_custom_object(GROUP, VERSION, "robots", body)
    status = {"phase": "Ready", "last_heartbeat": datetime.now(timezone.utc).isoformat(), "jobs_completed": 0}
    cluster.custom.patch_cluster_custom_object_status(GROUP, VERSION, "robots", name, {"status": status})


def queued_job(cluster: Cluster, name: str) -> dict[str, Any]:
    """A RaasJob whose code was fetched: Queued, the scheduler's to place."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaasJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"owner": "ada", "source": {"kind": "git", "url": "https://git.example.org/ada/c.git", "ref": "main"}},
    }
    created = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "raasjobs", body)
    submitted = JobStatus(
        history=(PhaseChange(phase=Phase.PENDING, at=datetime.now(timezone.utc), reason="Submitted"),)
    )
    fetching = transition(submitted, Phase.FETCHING, reason="Fetching")
    queued = transition(fetching, Phase.QUEUED, reason="Fetched", commit="0" * 40)
    return cluster.patch_status(name, queued, created["metadata"]["resourceVersion"])


def test_jobs_seen_before_any_robot_wait_for_the_fleet_instead_of_being_rejected(cluster: Cluster) -> None:
    ready_robot(cluster)
    job = queued_job(cluster, "early-bird")
    controller = JobController(cluster, ClusterCache(), workers=1)
    controller.job_changed(job)  # the job stream delivered first; the Robot stream has said nothing yet
    controller.start()
    try:
        status = wait_for(
            lambda: (
                (cluster.job("early-bird") or {}).get("status", {}).get("phase") in ("Starting", "Failed")
                and cluster.job("early-bird")
            ),
            20,
            "the job to be scheduled",
        )["status"]
        assert status["phase"] == "Starting", status
        assert status["robot"] == ROBOT
        assert controller.synced.is_set()
        annotations = cluster.custom.get_cluster_custom_object(GROUP, VERSION, "robots", ROBOT)["metadata"][
            "annotations"
        ]
        assert annotations["raas.dev/booked-job"] == "early-bird"
        assert annotations["raas.dev/booked-attempt"] == "1"  # the agent expects each attempt afresh
    finally:
        controller.stop()


def test_a_running_job_seen_before_its_pod_is_not_called_lost(cluster: Cluster) -> None:
    ready_robot(cluster)
    job = queued_job(cluster, "runner")
    status = JobStatus.model_validate(job["status"])
    starting = transition(status, Phase.STARTING, reason="Scheduled", robot=ROBOT, attempts=1)
    job = cluster.patch_status("runner", starting, job["metadata"]["resourceVersion"])
    cluster.book(ROBOT, "runner")
    cluster.create_run_pod(job, ROBOT, 1)
    pod = job_pod_name("runner", 1)
    cluster.core.patch_namespaced_pod_status(pod, NAMESPACE, {"status": {"phase": "Running"}})
    running = transition(starting, Phase.RUNNING, reason="Running", robot=ROBOT)
    job = cluster.patch_status("runner", running, job["metadata"]["resourceVersion"])
    busy = {"phase": "Busy", "last_heartbeat": datetime.now(timezone.utc).isoformat(), "current_job": "raas/runner"}
    cluster.custom.patch_cluster_custom_object_status(GROUP, VERSION, "robots", ROBOT, {"status": busy})

    controller = JobController(cluster, ClusterCache(), workers=1)
    controller.job_changed(job)  # the job stream delivered first; the pod stream has said nothing yet
    controller.start()
    try:
        wait_for(controller.synced.is_set, 10, "the cache to sync")
        time.sleep(2)  # several looks, by event and by clock
        after = cluster.job("runner")
        assert after is not None
        assert after["status"]["phase"] == "Running", after["status"]
        assert after["status"]["attempts"] == 1
        assert [view.name for view in cluster.pods_of("runner")] == [pod]
    finally:
        controller.stop()


def test_a_robot_whose_object_cannot_be_read_counts_as_gone_and_its_job_is_retried(cluster: Cluster) -> None:
    ready_robot(cluster)
    controller = JobController(cluster, ClusterCache(), workers=1)
    controller.job_changed(queued_job(cluster, "stranded"))
    controller.start()
    try:
        wait_for(lambda: (cluster.job("stranded") or {})["status"].get("phase") == "Starting", 20, "the job to start")
        # (the emulator, unlike an API server, does not hold the object to the CRD's schema)
        broken = {"phase": "Dancing", "last_heartbeat": datetime.now(timezone.utc).isoformat()}
        cluster.custom.patch_cluster_custom_object_status(GROUP, VERSION, "robots", ROBOT, {"status": broken})
        controller.robot_changed(cluster.custom.get_cluster_custom_object(GROUP, VERSION, "robots", ROBOT))
        status = wait_for(
            lambda: (job := cluster.job("stranded")) and job["status"]["phase"] == "Queued" and job["status"],
            20,
            "the job to go back to the queue",
        )
        assert status["reason"] == "RobotFault", status
        assert f"robot {ROBOT} is gone" in status["message"]
        assert controller.cache.robot(ROBOT) is None
    finally:
        controller.stop()
