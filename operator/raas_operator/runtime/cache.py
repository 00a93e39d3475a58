"""The operator's in-memory view of the cluster, fed by kopf's watch streams (an informer cache).

kopf lists and then watches RaasJobs, the job pods, Robots and the robots' Nodes; its event
handlers put every version they see here. A Robot whose Node is not Ready (its kubelet stopped
reporting: the node lifecycle controller says so) is served to the scheduler as Offline, whatever
its agent last wrote: the robot may still heartbeat, but no pod on that node can be started,
stopped or watched. The cache also remembers since when it has seen each Node in trouble
(`NodeTrouble`), so that a job already running there is failed over only once the trouble has
lasted (the operator's toleration, as a pod's ``tolerationSeconds`` for ``not-ready``): a control
plane that was down a while marks every Node NotReady for the moment after it comes back, before
the kubelets' renewals arrive, and that must not cost a running job its attempt.

Liveness is judged on the operator's own clock: the cache notes when it saw each Robot's
heartbeat stamp change (`ClusterRobot.heard_at`), and a robot is Offline once that is older than
the heartbeat timeout, whatever time its agent wrote: a Raspberry Pi has no real-time clock, and
one minutes off must neither look dead nor stay alive after it died.

The reconcilers and the scheduler read from this view instead of asking the API server, so a look
at a job costs no request and the scheduler's round costs none: the operator's load on the API
server grows with what changes, not with how many jobs wait.

A cached object may be a version behind the API server. Every write the operator derives from it
carries the resourceVersion it was read at, so a stale read ends in a 409 and the newer version,
already on its way through the watch, triggers the next look.

Thread-safe: kopf's event loop writes, the worker and scheduler threads read copies.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from raas_operator.jobs.model import JobSpec, JobStatus
from raas_operator.pods.builder import JOB_LABEL
from raas_operator.reconcile.pods import PodView
from raas_operator.reconcile.schedule import ClusterRobot
from raas_operator.robots.model import RobotPhase

log = logging.getLogger(__name__)


NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
"""The taints the node lifecycle controller puts on a Node that stopped being Ready."""


def node_problem(body: dict[str, Any]) -> str | None:
    """Why a Node (the API's JSON) cannot run a robot's pods, or None when it is Ready."""
    name = body["metadata"]["name"]
    ready = next((c for c in (body.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") != "True":
        detail = ready.get("message") or ready.get("reason") or f"Ready is {ready.get('status')}"
        return f"its node {name} is NotReady ({detail})"
    taints = {taint.get("key") for taint in (body.get("spec") or {}).get("taints") or []}
    tainted = [key for key in NOT_READY_TAINTS if key in taints]
    if tainted:
        return f"its node {name} is tainted {tainted[0]}"
    return None


@dataclass(frozen=True)
class NodeTrouble:
    """Why a robot's Node cannot run its pods (`node_problem`), and since when the cache has seen
    it in trouble (the operator's own clock: no comparison with the controller manager's)."""

    message: str
    since: datetime


@dataclass(frozen=True)
class CachedRobot:
    """A Robot as the scheduler and the reconcilers need it, with its resourceVersion (for booking)."""

    entry: ClusterRobot
    resource_version: str


def cached_robot(body: dict[str, Any]) -> CachedRobot:
    """A Robot object (the API's JSON) as the operator reads it."""
    return CachedRobot(ClusterRobot.from_object(body), str(body["metadata"]["resourceVersion"]))


def _heard_at(robot: CachedRobot, before: CachedRobot | None) -> datetime | None:
    """When the operator heard `robot`'s last heartbeat, on its own clock (module docstring):
    now when the agent's stamp changed since `before`, else as before. Seen for the first time
    (the operator starting), a stamp in the past is taken as is, one in the future as now: a dead
    robot is not given a fresh timeout, and an agent whose clock is behind is heard at its next
    beat."""
    beat = robot.entry.robot.status.last_heartbeat
    if beat is None:
        return None
    if before is not None and before.entry.robot.status.last_heartbeat == beat:
        return before.entry.heard_at
    now = datetime.now(timezone.utc)
    return min(beat, now) if before is None else now


def _newer_version(new: object, old: object, *, strictly: bool = False) -> bool:
    """Whether resourceVersion `new` is not older than `old` (after it, if `strictly`). They are
    compared as numbers when both are; the API only promises they are opaque, so otherwise the
    newest seen wins (and nothing is strictly after anything)."""
    if isinstance(new, str) and isinstance(old, str) and new.isdigit() and old.isdigit():
        return int(new) > int(old) if strictly else int(new) >= int(old)
    return not strictly


def _newer(candidate: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """Whether object `candidate` is not older than `current` (`_newer_version`)."""
    if current is None:
        return True
    return _newer_version(candidate["metadata"].get("resourceVersion"), current["metadata"].get("resourceVersion"))


class ClusterCache:
    """RaasJobs of the operator's namespace, their pods (by job) and every Robot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._pods: defaultdict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._robots: dict[str, CachedRobot] = {}
        self._parsed: dict[str, tuple[str, JobSpec, JobStatus]] = {}
        self._node_troubles: dict[str, NodeTrouble] = {}

    # -- writes (kopf's event handlers) ----------------------------------------------------------

    def put_job(self, body: dict[str, Any]) -> None:
        with self._lock:
            name = body["metadata"]["name"]
            if _newer(body, self._jobs.get(name)):
                self._jobs[name] = body

    def drop_job(self, name: str) -> None:
        with self._lock:
            self._jobs.pop(name, None)
            self._parsed.pop(name, None)

    def put_pod(self, body: dict[str, Any]) -> str | None:
        """Keep a pod under its job; returns the job's name (None for a pod of no job)."""
        job = (body["metadata"].get("labels") or {}).get(JOB_LABEL)
        if not job:
            return None
        with self._lock:
            pods = self._pods[job]
            name = body["metadata"]["name"]
            if _newer(body, pods.get(name)):
                pods[name] = body
        return str(job)

    def drop_pod(self, body: dict[str, Any]) -> str | None:
        job = (body["metadata"].get("labels") or {}).get(JOB_LABEL)
        if not job:
            return None
        with self._lock:
            pods = self._pods.get(job, {})
            pods.pop(body["metadata"]["name"], None)
            if not pods:
                self._pods.pop(job, None)
        return str(job)

    def put_robot(self, body: dict[str, Any]) -> CachedRobot | None:
        """Keep `body` unless a newer version is cached; returns the version kept. A Robot that
        cannot be read (the CRD's schema forbids that, but an old object may not obey it) counts
        as gone: it is dropped, with a warning, and None returned (no job runs on it)."""
        name, version = body["metadata"]["name"], str(body["metadata"]["resourceVersion"])
        with self._lock:
            current = self._robots.get(name)
        if current is not None and not _newer_version(version, current.resource_version):
            return current
        try:
            robot = cached_robot(body)
        except ValidationError as error:
            log.warning("Robot %s cannot be read, so no job will run on it: %s", name, error)
            self.drop_robot(name)
            return None
        with self._lock:
            current = self._robots.get(name)
            if current is not None and not _newer_version(robot.resource_version, current.resource_version):
                return current
            robot = replace(robot, entry=replace(robot.entry, heard_at=_heard_at(robot, current)))
            self._robots[name] = robot
        return robot

    def replace_robots(self, bodies: list[dict[str, Any]], list_version: str | None) -> None:
        """Make the cached fleet the listed one (`bodies`, listed at `list_version`): robots
        missing from the list are dropped unless cached at a version after the list's."""
        listed = {body["metadata"]["name"] for body in bodies}
        for body in bodies:
            self.put_robot(body)
        with self._lock:
            for name, robot in list(self._robots.items()):
                if name not in listed and not (
                    list_version is not None and _newer_version(robot.resource_version, list_version, strictly=True)
                ):
                    del self._robots[name]

    def drop_robot(self, name: str) -> None:
        with self._lock:
            self._robots.pop(name, None)

    def put_node(self, body: dict[str, Any], *, deleted: bool = False) -> bool:
        """Keep whether a robot Node can run pods (a deleted one can); True when that changed (or
        what is wrong with it did). A trouble that changes its words keeps its start."""
        name = body["metadata"]["name"]
        problem = None if deleted else node_problem(body)
        with self._lock:
            before = self._node_troubles.get(name)
            if problem is None:
                self._node_troubles.pop(name, None)
            else:
                since = before.since if before is not None else datetime.now(timezone.utc)
                self._node_troubles[name] = NodeTrouble(problem, since)
        return (before.message if before is not None else None) != problem

    # -- reads -----------------------------------------------------------------------------------

    def node_trouble(self, robot: CachedRobot) -> NodeTrouble | None:
        """Why `robot`'s Node cannot run its pods and since when, or None."""
        with self._lock:
            return self._node_troubles.get(robot.entry.robot.spec.node_name)

    def robots_on(self, node: str) -> list[str]:
        """The Robots that say they are on Node `node`."""
        with self._lock:
            return [name for name, robot in self._robots.items() if robot.entry.robot.spec.node_name == node]

    def job(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._jobs.get(name)

    def jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._jobs.values())

    def parsed(self, body: dict[str, Any]) -> tuple[JobSpec, JobStatus]:
        """`body`'s spec and status as the job model, parsed once per resourceVersion (a scheduling
        round reads every waiting job: parsing a thousand of them each round would dominate it)."""
        name, version = body["metadata"]["name"], str(body["metadata"].get("resourceVersion"))
        with self._lock:
            known = self._parsed.get(name)
        if known is not None and known[0] == version:
            return known[1], known[2]
        spec = JobSpec.model_validate(body["spec"])
        status = JobStatus.model_validate(body.get("status") or {})
        with self._lock:
            if name in self._jobs:
                self._parsed[name] = (version, spec, status)
        return spec, status

    def pods_of(self, job: str) -> tuple[PodView, ...]:
        with self._lock:
            bodies = list(self._pods.get(job, {}).values())
        return tuple(PodView.from_pod(body) for body in bodies)

    def robot(self, name: str, *, as_reported: bool = False) -> CachedRobot | None:
        """Robot `name`, Offline if its Node is not Ready (module docstring), unless `as_reported`:
        then as its agent last wrote it."""
        with self._lock:
            robot = self._robots.get(name)
            if robot is None or as_reported:
                return robot
            return self._as_served(robot)

    def robots(self) -> list[CachedRobot]:
        """Every Robot, each Offline if its Node is not Ready."""
        with self._lock:
            return [self._as_served(robot) for robot in self._robots.values()]

    def _as_served(self, robot: CachedRobot) -> CachedRobot:
        if robot.entry.robot.spec.node_name not in self._node_troubles:
            return robot
        model = robot.entry.robot
        offline = model.model_copy(update={"status": model.status.model_copy(update={"phase": RobotPhase.OFFLINE})})
        return replace(robot, entry=replace(robot.entry, robot=offline))

    def jobs_on(self, robot: str) -> list[str]:
        """Jobs whose status names `robot`, or booked on it."""
        with self._lock:
            named = [name for name, body in self._jobs.items() if (body.get("status") or {}).get("robot") == robot]
            booked = self._robots.get(robot)
        if booked is not None and booked.entry.booked_job and booked.entry.booked_job not in named:
            named.append(booked.entry.booked_job)
        return named
