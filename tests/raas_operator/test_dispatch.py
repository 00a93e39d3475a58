"""Dispatch on the real control plane with the chart installed: the scheduler's round and the
operator's pod writes, speaking as the chart's operator ServiceAccount in its job namespace.

Several robots freed at once are handed their next jobs in one round (each assignment written at
once, issue 13's dispatch latency): each robot still gets exactly one job and each job exactly
one robot, and every job started gets its ``Scheduled`` Event even though Events are posted off
the dispatch path. The operator's pod and Secret writes give their connections back to the
client's pool (a connection left taken makes the next request open and TLS-handshake another),
and a second look at a starting job keeps the session Secret its first look made.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import kubernetes
import pytest
from controlplane.chart_install import JOBS
from controlplane.chart_objects import queued_job, ready_robot, submit_job
from controlplane.cluster import ControlPlane

from gym_raas.protocol.tokens import session_token
from raas_operator.pods.builder import SESSION_TOKEN_KEY, fetch_pod_name, session_secret_name
from raas_operator.reconcile.schedule import BOOKING_ANNOTATION
from raas_operator.runtime.cache import ClusterCache
from raas_operator.runtime.cluster import GROUP, VERSION, Cluster
from raas_operator.runtime.controller import JobController
from raas_operator.runtime.scheduler import SchedulerLoop

NAMESPACE = JOBS
ROBOTS = [f"pendulum-{index}" for index in range(4)]


@pytest.fixture
def operator_overrides() -> dict[str, str]:
    return {"MAX_RUNNING_PER_OWNER": "10"}  # (one owner's jobs fill every robot)


@pytest.fixture
def admin(raas_chart: ControlPlane) -> Iterator[kubernetes.client.CoreV1Api]:
    """Events' reader (the operator may only create them): the admin."""
    with raas_chart.api_client() as client:
        yield kubernetes.client.CoreV1Api(client)


def test_robots_freed_together_each_get_one_job_in_one_round_and_every_start_is_recorded(
    cluster: Cluster,
    api: kubernetes.client.CustomObjectsApi,
    agent: kubernetes.client.CustomObjectsApi,
    admin: kubernetes.client.CoreV1Api,
) -> None:
    for name in ROBOTS:
        ready_robot(agent, name)
    cache = ClusterCache()
    cache.replace_robots(*cluster.list_robots())
    jobs = [f"job-{index}" for index in range(len(ROBOTS) + 2)]
    for name in jobs:
        cache.put_job(queued_job(cluster, api, name))
    started: list[str] = []
    loop = SchedulerLoop(cluster, cache, on_started=started.append)
    try:
        assert loop.run_once() == len(ROBOTS)
    finally:
        loop.stop()  # the Events still waiting are posted first

    statuses = {name: (cluster.job(name) or {})["status"] for name in jobs}
    running = {name: status["robot"] for name, status in statuses.items() if status["phase"] == "Starting"}
    assert sorted(running) == sorted(started) == jobs[: len(ROBOTS)]  # first come, first served
    assert sorted(running.values()) == ROBOTS  # one job per robot
    assert all(statuses[name]["attempts"] == 1 for name in running)
    for name, status in statuses.items():  # the rest wait, their places written
        if name not in running:
            assert status["phase"] == "Queued"
            assert status["queue_position"] == jobs.index(name) - len(ROBOTS) + 1
    for robot in ROBOTS:
        booked = cluster.custom.get_cluster_custom_object(GROUP, VERSION, "robots", robot)["metadata"]["annotations"]
        assert running[booked[BOOKING_ANNOTATION]] == robot
    events = admin.list_namespaced_event(NAMESPACE).items
    scheduled = sorted(event.involved_object.name for event in events if event.reason == "Scheduled")
    assert scheduled == sorted(running)


def test_a_second_round_starts_nothing_twice(
    cluster: Cluster, api: kubernetes.client.CustomObjectsApi, agent: kubernetes.client.CustomObjectsApi
) -> None:
    for name in ROBOTS[:2]:
        ready_robot(agent, name)
    cache = ClusterCache()
    cache.replace_robots(*cluster.list_robots())
    for index in range(3):
        cache.put_job(queued_job(cluster, api, f"job-{index}"))
    started: list[str] = []
    loop = SchedulerLoop(cluster, cache, on_started=started.append)
    try:
        assert loop.run_once() == 2
        assert loop.run_once() == 0  # the round sees its own writes: both robots are booked
    finally:
        loop.stop()
    assert sorted(started) == ["job-0", "job-1"]
    assert (cluster.job("job-2") or {})["status"]["phase"] == "Queued"


def _connections(cluster: Cluster) -> int:
    pools = cluster.core.api_client.rest_client.pool_manager.pools
    return sum(pools[key].num_connections for key in list(pools.keys()))  # (it cannot be iterated)


def test_pod_writes_give_their_connection_back_to_the_pool(
    cluster: Cluster, api: kubernetes.client.CustomObjectsApi
) -> None:
    jobs = [submit_job(api, NAMESPACE, f"fetcher-{index}") for index in range(4)]
    cluster.core.list_namespaced_pod(NAMESPACE)  # one connection, open and back in the pool
    for job in jobs:
        cluster.create_fetch_pod(job)
    for job in jobs:
        cluster.delete_pod(fetch_pod_name(job["metadata"]["name"]))
    cluster.core.list_namespaced_pod(NAMESPACE)
    assert _connections(cluster) == 1  # every request went over the first connection


def test_a_second_look_keeps_the_attempts_session_secret_and_a_retry_elsewhere_replaces_it(
    cluster: Cluster, api: kubernetes.client.CustomObjectsApi
) -> None:
    job = submit_job(api, NAMESPACE, "looked-twice")
    secret = session_secret_name("looked-twice")
    cluster.create_run_pod(job, ROBOTS[0], 1)
    first = cluster.core.read_namespaced_secret(secret, NAMESPACE)
    cluster.create_run_pod(job, ROBOTS[0], 1)  # a second look before the pod showed in the cache
    again = cluster.core.read_namespaced_secret(secret, NAMESPACE)
    assert again.metadata.uid == first.metadata.uid  # kept, not deleted and made anew
    cluster.create_run_pod(job, ROBOTS[1], 2)  # the retry, on another robot: another token
    retried = cluster.core.read_namespaced_secret(secret, NAMESPACE)
    assert retried.metadata.uid != first.metadata.uid
    assert base64.b64decode(retried.data[SESSION_TOKEN_KEY]).decode() == session_token(
        cluster.key, ROBOTS[1], "looked-twice"
    )


def booking(agent: kubernetes.client.CustomObjectsApi, robot: str) -> str | None:
    annotations = agent.get_cluster_custom_object(GROUP, VERSION, "robots", robot)["metadata"].get("annotations") or {}
    return annotations.get(BOOKING_ANNOTATION)


def test_freeing_a_robot_clears_only_the_booking_of_that_job_and_attempt(
    cluster: Cluster, agent: kubernetes.client.CustomObjectsApi
) -> None:
    # (A CI run failed a job as the user's: an operator freeing a robot after the previous job, from a
    # cache a version behind, cleared the booking of the job that came next, whose agent then never
    # expected it.)
    ready_robot(agent, "pendulum-0")
    cluster.book("pendulum-0", "job-b", attempt=1)
    assert cluster.unbook("pendulum-0", "job-a") is None  # the job before: not its booking any more
    assert booking(agent, "pendulum-0") == "job-b"
    cluster.book("pendulum-0", "job-b", attempt=2)  # job-b's retry, booked on the same robot
    assert cluster.unbook("pendulum-0", "job-b", 1) is None
    assert booking(agent, "pendulum-0") == "job-b"
    freed = cluster.unbook("pendulum-0", "job-b", 2)
    assert freed is not None
    assert booking(agent, "pendulum-0") is None
    assert cluster.unbook("pendulum-0", "job-b", 2) is None  # freed already
    assert cluster.unbook("pendulum-9", "job-b") is None  # no such robot


def test_an_operator_whose_cache_is_behind_does_not_free_the_next_jobs_robot(
    cluster: Cluster, agent: kubernetes.client.CustomObjectsApi
) -> None:
    ready_robot(agent, "pendulum-0")
    cluster.book("pendulum-0", "job-a", attempt=1)
    cache = ClusterCache()
    cache.replace_robots(*cluster.list_robots())  # sees job-a's booking...
    cluster.book("pendulum-0", "job-b", attempt=1)  # ...which the other replica has since handed on
    controller = JobController(cluster, cache, workers=1)
    controller._free_robot("job-a", 1)  # job-a ended: what this operator then does
    assert booking(agent, "pendulum-0") == "job-b"
