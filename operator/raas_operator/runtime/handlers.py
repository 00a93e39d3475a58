"""The kopf operator's handlers: they feed the engine (`runtime.controller`) what the watches see.

Run it with ``raas-operator`` (``kopf run`` of this module). kopf lists and watches RaasJobs,
the pods the operator manages, Robots and the robots' Nodes (labelled ``raas.dev/robot``); every
version is passed to the `JobController`, which caches it and queues the jobs it concerns.
Deleting an active RaasJob cancels it: kopf's finalizer holds the object until its pods are gone.
Only active jobs carry that finalizer (kopf adds it while `needs_cleanup` holds and removes it once
the job has ended): a finished job is deleted at once, and with the operator uninstalled only the
jobs it left running can hold up a deletion. Each
operator's state lives in its own `kopf.Memo`. kopf keeps its bookkeeping in annotations, so
``status`` is exactly the job model's.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import kubernetes
import prometheus_client

from raas_operator.jobs.model import Phase
from raas_operator.pods.builder import MANAGED_BY, MANAGED_BY_LABEL, ROBOT_LABEL
from raas_operator.reconcile.jobs import ReleaseFinalizer
from raas_operator.runtime.cluster import GROUP, VERSION, Cluster
from raas_operator.runtime.controller import JobController
from raas_operator.runtime.settings import OperatorSettings

TERMINAL_PHASES = frozenset(phase.value for phase in Phase if phase.is_terminal)


def _controller(memo: kopf.Memo) -> JobController:
    controller: JobController = memo["controller"]
    return controller


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Read the settings; keep kopf's progress out of the status; start the engine."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="raas.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="raas.dev")
    settings.posting.enabled = False  # our own Events, with our reasons
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not a line per event handled
    try:  # in a pod: its service account; elsewhere: the kubeconfig
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    operator_settings = OperatorSettings()  # type: ignore[call-arg]  # from the environment
    settings.peering.lifetime = operator_settings.peering_lifetime_s
    controller = JobController(Cluster(operator_settings), workers=operator_settings.workers).start()
    memo["controller"] = controller
    if memo.get("metrics_port") is not None:  # raas-operator --metrics-port
        prometheus_client.start_http_server(memo["metrics_port"], registry=controller.fleet.registry)


@kopf.on.cleanup()
def stop_engine(memo: kopf.Memo, **_: Any) -> None:
    controller = memo.get("controller")
    if controller is not None:
        controller.stop()


@kopf.on.event(GROUP, VERSION, "raasjobs")
async def on_job_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _controller(memo).job_changed(dict(event["object"]), deleted=event["type"] == "DELETED")


@kopf.on.event("", "v1", "pods", labels={MANAGED_BY_LABEL: MANAGED_BY})
async def on_pod_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _controller(memo).pod_changed(dict(event["object"]), deleted=event["type"] == "DELETED")


@kopf.on.event(GROUP, VERSION, "robots")
async def on_robot_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _controller(memo).robot_changed(dict(event["object"]), deleted=event["type"] == "DELETED")


@kopf.on.event("", "v1", "nodes", labels={ROBOT_LABEL: kopf.PRESENT})
async def on_node_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _controller(memo).node_changed(dict(event["object"]), deleted=event["type"] == "DELETED")


def needs_cleanup(body: kopf.Body, **_: Any) -> bool:
    """Whether deleting this RaasJob must wait for the operator: it has not ended (a finished job's
    pods are gone or go with it, through their owner reference), or its deletion is under way (the
    cancel it started holds the job until its pods are gone, though its phase is final by then)."""
    if body.get("metadata", {}).get("deletionTimestamp"):
        return True
    phase = (body.get("status") or {}).get("phase")
    return phase not in TERMINAL_PHASES


@kopf.on.delete(GROUP, VERSION, "raasjobs", when=needs_cleanup)
def on_job_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller = _controller(memo)
    job = controller.cluster.job(body["metadata"]["name"]) or dict(body)
    actions = controller.reconcile(job, deleting=True)
    if not any(isinstance(action, ReleaseFinalizer) for action in actions):
        raise kopf.TemporaryError("waiting for the job's pods to go", delay=1)
