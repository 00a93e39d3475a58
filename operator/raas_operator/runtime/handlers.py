"""The kopf operator: gathers each RaasJob's facts, asks the pure reconcilers, carries the actions out.

Run it with ``raas-operator`` (``kopf run`` of this module). Every RaasJob is looked at when it is
created or resumed and then every `OperatorSettings.reconcile_interval_s`; deleting one cancels
it (kopf's finalizer holds the object until its pods are gone). A Queued job asks the scheduler
for the whole queue and, when it is assigned a robot, books the robot (guarded by the Robot's
resourceVersion, so two operators never book one robot twice) before it moves to Starting.
kopf keeps its own bookkeeping in annotations, so ``status`` is exactly the job model's.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import kopf
import kubernetes

from raas_operator.jobs.model import FailureClass, JobSpec, JobStatus, Phase, transition
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
)
from raas_operator.reconcile.schedule import QueuedJob, effective_phase, plan
from raas_operator.runtime.cluster import GROUP, VERSION, Cluster, ConflictError
from raas_operator.runtime.settings import OperatorSettings
from raas_operator.scheduling.core import Quotas

log = logging.getLogger(__name__)

ACTIVE = (Phase.STARTING, Phase.RUNNING, Phase.UPLOADING)
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


@kopf.on.create(GROUP, VERSION, "raasjobs")
@kopf.on.resume(GROUP, VERSION, "raasjobs")
def on_job_seen(body: kopf.Body, **_: Any) -> None:
    reconcile(dict(body))


@kopf.timer(GROUP, VERSION, "raasjobs", interval=1.0, sharp=False)
def on_tick(body: kopf.Body, **_: Any) -> None:
    reconcile(dict(body))


@kopf.on.delete(GROUP, VERSION, "raasjobs")
def on_job_deleted(body: kopf.Body, **_: Any) -> None:
    actions = reconcile(dict(body), deleting=True)
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
    if not deleting and status.phase is Phase.QUEUED:
        _schedule(job, status, now)
        return []
    if not deleting and expired(status, now, timedelta(seconds=handle.settings.finished_ttl_s)):
        handle.delete_job(name)
        return []
    facts = JobFacts(
        name=name,
        spec=spec,
        status=status,
        pods=handle.pods_of(name),
        robot=_robot_facts(status.robot, now) if status.phase in ACTIVE else None,
        deleting=deleting or bool(metadata.get("deletionTimestamp")),
        results_collected=status.phase is Phase.UPLOADING and handle.results_collected(name, status.attempts),
        created_at=_created_at(metadata, now),
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
    for entry, _ in handle.robots():
        if entry.robot.name == robot:
            timeout = timedelta(seconds=handle.settings.heartbeat_timeout_s)
            return RobotFacts(
                entry.robot.name, effective_phase(entry.robot, now, timeout), entry.robot.status.current_job
            )
    return None


def _free_robot(job: str) -> None:
    handle = cluster()
    for entry, _ in handle.robots():
        if entry.booked_job == job:
            handle.book(entry.robot.name, None)


def _schedule(job: dict[str, Any], status: JobStatus, now: datetime) -> None:
    """Run the scheduler over the whole queue; act only on this job's part of the decision."""
    handle = cluster()
    name = job["metadata"]["name"]
    queued, running = [], Counter[str]()
    for other in handle.jobs():
        other_status = JobStatus.model_validate(other.get("status") or {})
        other_spec = JobSpec.model_validate(other["spec"])
        if other_status.phase is Phase.QUEUED:
            queued.append(
                QueuedJob(other["metadata"]["name"], other_spec, other_status, _created_at(other["metadata"], now))
            )
        elif other_status.phase in ACTIVE:
            running[other_spec.owner] += 1
    robots = handle.robots()
    settings = handle.settings
    quotas = Quotas(settings.max_running_per_owner, settings.max_queued_per_owner)
    decision = plan(
        queued, [entry for entry, _ in robots], running, quotas, now, timedelta(seconds=settings.heartbeat_timeout_s)
    )
    version = job["metadata"]["resourceVersion"]
    rejection = next((rejection for rejection in decision.rejections if rejection.job_id == name), None)
    if rejection is not None:
        failed = transition(
            status, Phase.FAILED, reason=rejection.reason, message=rejection.message,
            failure_class=FailureClass.USER_ERROR,
        )  # fmt: skip
        _patch_quietly(name, failed, version)
        handle.event(job, rejection.reason, rejection.message, warning=True)
        return
    assignment = next((assignment for assignment in decision.assignments if assignment.job_id == name), None)
    if assignment is None:
        entry = next((entry for entry in decision.queue if entry.job_id == name), None)
        if entry is not None and entry.position != status.queue_position:
            start = entry.estimated_start_s
            estimate = None if start is None else datetime.fromtimestamp(start, timezone.utc)
            _patch_quietly(
                name, status.model_copy(update={"queue_position": entry.position, "estimated_start": estimate}), version
            )
        return
    robot_version = next(version for entry, version in robots if entry.robot.name == assignment.robot)
    try:
        handle.book(assignment.robot, name, robot_version)
    except ConflictError:
        return  # someone booked it first: the next look sees that
    starting = transition(
        status, Phase.STARTING, reason="Scheduled", message=f"on {assignment.robot}", robot=assignment.robot,
        attempts=status.attempts + 1, queue_position=None, estimated_start=None,
    )  # fmt: skip
    if not _patch_quietly(name, starting, version):
        handle.book(assignment.robot, None)
        return
    handle.event(job, "Scheduled", f"on robot {assignment.robot}")


def _patch_quietly(name: str, status: JobStatus, version: str) -> bool:
    try:
        cluster().patch_status(name, status, version)
    except ConflictError:
        return False
    return True


def _created_at(metadata: dict[str, Any], default: datetime) -> datetime:
    created = metadata.get("creationTimestamp")
    return datetime.fromisoformat(str(created).replace("Z", "+00:00")) if created else default
