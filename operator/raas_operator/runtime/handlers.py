"""The kopf operator: gathers each RaasJob's facts, asks the pure reconcilers, carries the actions out.

Run it with ``raas-operator`` (``kopf run`` of this module). Every RaasJob is looked at when it is
created or resumed and then every `OperatorSettings.reconcile_interval_s`; deleting one cancels
it (kopf's finalizer holds the object until its pods are gone).
Scheduling is one loop for the whole queue (`runtime.scheduler`), not a job's business.
kopf keeps its own bookkeeping in annotations, so ``status`` is exactly the job model's.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import kopf
import kubernetes

from raas_operator.jobs.model import ON_ROBOT_PHASES, JobSpec, JobStatus, Phase
from raas_operator.reconcile.jobs import (
    Action,
    CollectResults,
    CreateFetchPod,
    CreateRunPod,
    DeletePod,
    JobFacts,
    RecordEvent,
    ReleaseFinalizer,
    RobotFacts,
    UpdateStatus,
    expired,
    reconcile_job,
    session_facts,
)
from raas_operator.reconcile.schedule import effective_phase
from raas_operator.runtime.cluster import GROUP, VERSION, Cluster, ConflictError
from raas_operator.runtime.scheduler import SchedulerLoop, created_at
from raas_operator.runtime.settings import OperatorSettings

log = logging.getLogger(__name__)

_state: dict[str, Any] = {}


def cluster() -> Cluster:
    """The operator's cluster handle, made at startup."""
    made: Cluster = _state["cluster"]
    return made


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Read the settings; keep kopf's progress out of the status; make the cluster handle."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="raas.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="raas.dev")
    settings.posting.enabled = False  # our own Events, with our reasons
    try:  # in a pod: its service account; elsewhere: the kubeconfig
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    _state["cluster"] = Cluster(OperatorSettings())  # type: ignore[call-arg]  # from the environment
    _state["scheduler"] = SchedulerLoop(_state["cluster"]).start()


@kopf.on.cleanup()
def stop_scheduler(**_: Any) -> None:
    scheduler = _state.pop("scheduler", None)
    if scheduler is not None:
        scheduler.stop()


@kopf.on.create(GROUP, VERSION, "raasjobs")
@kopf.on.resume(GROUP, VERSION, "raasjobs")
def on_job_seen(body: kopf.Body, **_: Any) -> None:
    job = cluster().job(body["metadata"]["name"])
    if job is not None:
        reconcile(job)


@kopf.timer(GROUP, VERSION, "raasjobs", interval=1.0, sharp=False)
def on_tick(body: kopf.Body, **_: Any) -> None:
    # Read afresh: kopf's body can predate kopf's own annotation writes, and a status patch from a
    # stale resourceVersion would conflict at every tick.
    job = cluster().job(body["metadata"]["name"])
    if job is not None:
        reconcile(job)


@kopf.on.delete(GROUP, VERSION, "raasjobs")
def on_job_deleted(body: kopf.Body, **_: Any) -> None:
    actions = reconcile(cluster().job(body["metadata"]["name"]) or dict(body), deleting=True)
    if not any(isinstance(action, ReleaseFinalizer) for action in actions):
        raise kopf.TemporaryError("waiting for the job's pods to go", delay=1)


def reconcile(job: dict[str, Any], *, deleting: bool = False) -> list[Action]:
    """One look at one job: facts → decisions → actions."""
    handle = cluster()
    metadata = job["metadata"]
    name = metadata["name"]
    spec = JobSpec.model_validate(job["spec"])
    status = JobStatus.model_validate(job.get("status") or {})
    now = datetime.now(timezone.utc)
    if not deleting and expired(status, now, timedelta(seconds=handle.settings.finished_ttl_s)):
        handle.delete_job(name)
        return []
    record = handle.agent_session(name) if status.phase is Phase.UPLOADING else None
    summary, robot_fault = session_facts(record)
    collected = status.phase is Phase.UPLOADING and handle.results_collected(name, status.attempts)
    if collected and record is None:  # the agent uploads its record a heartbeat after the session
        waited = now - status.history[-1].at if status.history else timedelta(0)
        collected = waited.total_seconds() >= handle.settings.session_upload_wait_s
    facts = JobFacts(
        name=name,
        spec=spec,
        status=status,
        pods=handle.pods_of(name),
        robot=_robot_facts(status.robot, now) if status.phase in ON_ROBOT_PHASES else None,
        deleting=deleting or bool(metadata.get("deletionTimestamp")),
        results_collected=collected,
        created_at=created_at(metadata, now),
        summary=summary,
        robot_fault=robot_fault,
    )
    actions = reconcile_job(facts)
    _apply(job, actions)
    return actions


def _apply(job: dict[str, Any], actions: list[Action]) -> None:
    handle = cluster()
    name = job["metadata"]["name"]
    for action in actions:
        if isinstance(action, CreateFetchPod):
            handle.create_fetch_pod(job)
        elif isinstance(action, CreateRunPod):
            handle.create_run_pod(job, action.robot, action.attempt)
        elif isinstance(action, DeletePod):
            handle.delete_pod(action.pod)
        elif isinstance(action, CollectResults):
            handle.collect_results(job, action.pod)
        elif isinstance(action, UpdateStatus):
            try:
                job = {**job, **handle.patch_status(name, action.status, job["metadata"]["resourceVersion"])}
            except ConflictError:
                return  # changed meanwhile: the next look decides again
            if action.status.phase.is_terminal or action.status.phase is Phase.QUEUED:
                _free_robot(name)
        elif isinstance(action, RecordEvent):
            handle.event(job, action.reason, action.message, warning=action.warning)


def _robot_facts(robot: str | None, now: datetime) -> RobotFacts | None:
    handle = cluster()
    entry = handle.robot(robot) if robot else None
    if entry is None:
        return None
    timeout = timedelta(seconds=handle.settings.heartbeat_timeout_s)
    return RobotFacts(entry.robot.name, effective_phase(entry.robot, now, timeout), entry.robot.status.current_job)


def _free_robot(job: str) -> None:
    handle = cluster()
    for entry, _ in handle.robots():
        if entry.booked_job == job:
            handle.book(entry.robot.name, None)
