"""The operator's engine at start-up, on the real control plane with the chart installed: the
engine speaks as the chart's operator ServiceAccount in its job namespace; Robots are written as
the agent's ServiceAccount, and the pod status a kubelet would write as the admin.

kopf lists RaasJobs, pods and Robots on separate watch streams, so a starting (or restarted, or
newly active) operator can learn of waiting jobs before it has heard of any robot, or of a
running job before its pod. These tests feed the engine exactly that order of events and check
it neither rejects the queue for want of robots nor calls a running job's pod lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone

import kubernetes
import pytest
from controlplane.chart_install import (
    JOBS,
    robot_status_unchecked,
    write_robot_status,
)
from controlplane.chart_objects import queued_job, ready_robot
from controlplane.cluster import ControlPlane
from kubernetes.client.exceptions import ApiException
from polling import wait_for

from raas_operator.jobs.model import JobStatus, Phase, transition
from raas_operator.pods.builder import job_pod_name
from raas_operator.runtime.cache import ClusterCache
from raas_operator.runtime.cluster import GROUP, VERSION, Cluster
from raas_operator.runtime.controller import JobController

ROBOT = "pendulum-1"
NAMESPACE = JOBS


@pytest.fixture
def kubelet(raas_chart: ControlPlane) -> Iterator[kubernetes.client.CoreV1Api]:
    """Pod statuses' writer in these tests (no node runs the pods): the admin."""
    with raas_chart.api_client() as admin:
        yield kubernetes.client.CoreV1Api(admin)


def test_jobs_seen_before_any_robot_wait_for_the_fleet_instead_of_being_rejected(
    cluster: Cluster, api: kubernetes.client.CustomObjectsApi, agent: kubernetes.client.CustomObjectsApi
) -> None:
    ready_robot(agent, ROBOT)
    job = queued_job(cluster, api, "early-bird")
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
        assert annotations["raas.dev/booked-control-hz"] == "20"  # ...at the job's rate (the default)
    finally:
        controller.stop()


def test_a_running_job_seen_before_its_pod_is_not_called_lost(
    cluster: Cluster,
    api: kubernetes.client.CustomObjectsApi,
    agent: kubernetes.client.CustomObjectsApi,
    kubelet: kubernetes.client.CoreV1Api,
) -> None:
    ready_robot(agent, ROBOT)
    job = queued_job(cluster, api, "runner")
    status = JobStatus.model_validate(job["status"])
    starting = transition(status, Phase.STARTING, reason="Scheduled", robot=ROBOT, attempts=1)
    job = cluster.patch_status("runner", starting, job["metadata"]["resourceVersion"])
    cluster.book(ROBOT, "runner")
    cluster.create_run_pod(job, ROBOT, 1)
    pod = job_pod_name("runner", 1)
    kubelet.patch_namespaced_pod_status(pod, NAMESPACE, {"status": {"phase": "Running"}})
    running = transition(starting, Phase.RUNNING, reason="Running", robot=ROBOT)
    job = cluster.patch_status("runner", running, job["metadata"]["resourceVersion"])
    busy = {"phase": "Busy", "last_heartbeat": datetime.now(timezone.utc).isoformat(), "current_job": "raas/runner"}
    agent.patch_cluster_custom_object_status(GROUP, VERSION, "robots", ROBOT, {"status": busy})

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


def test_a_robot_whose_object_cannot_be_read_counts_as_gone_and_its_job_is_retried(
    cluster: Cluster,
    api: kubernetes.client.CustomObjectsApi,
    agent: kubernetes.client.CustomObjectsApi,
    raas_chart: ControlPlane,
) -> None:
    ready_robot(agent, ROBOT)
    controller = JobController(cluster, ClusterCache(), workers=1)
    controller.job_changed(queued_job(cluster, api, "stranded"))
    controller.start()
    try:
        wait_for(lambda: (cluster.job("stranded") or {})["status"].get("phase") == "Starting", 20, "the job to start")
        broken = {"phase": "Dancing", "last_heartbeat": datetime.now(timezone.utc).isoformat()}
        # The API server holds new writes to the CRD's schema...
        with pytest.raises(ApiException) as refused:
            agent.patch_cluster_custom_object_status(GROUP, VERSION, "robots", ROBOT, {"status": broken})
        assert refused.value.status == 422
        assert "Dancing" in str(refused.value.body)
        # ...but serves what it stored under an older schema as it was stored (a CRD is not
        # re-applied to stored objects): an agent newer than the operator's CRD wrote this one.
        with robot_status_unchecked(raas_chart):
            wait_for(lambda: write_robot_status(agent, ROBOT, broken), 20, "the relaxed schema to take effect")
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
