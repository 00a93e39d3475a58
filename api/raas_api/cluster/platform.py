"""The web API's platform in a Kubernetes cluster: jobs are RaasJobs, robots are Robot objects.

The API does not run anything itself: the operator (`raas_operator.runtime`) does. This class
turns the API's requests into objects and reads:

* **listings** (and the quota counts) come from a watch-fed cache of the namespace's RaasJobs
  (`raas_api.cluster.job_cache.CachedJobStore`, kept while the platform is started), not from a
  full list per request;
* **submit** creates a RaasJob (`KubernetesJobStore`), within the per-owner queue quota and the
  platform's maximum time limit, as the local platform does;
* **uploads** are unpacked safely and checked (`raas_node.runner.fetch.fetch_local`: the
  entrypoint must be there), packed as a reproducible ``code.tar.gz`` and stored under
  ``uploads/<sha256>.tar.gz``; the job's source is then an archive source that the operator
  adopts without a fetch pod;
* **cancel** annotates the RaasJob ``raas.dev/cancel=true`` (the operator stops its pod, which
  ends the robot session and stops the motor) and waits briefly for Cancelled; unlike deleting
  the RaasJob, the job stays listed until its TTL;
* **logs** come from the job pod while it runs (stdout and stderr interleaved, as Kubernetes keeps
  them) and from the result store once the operator collected them;
* **robots** are the Robot objects; maintenance is their ``spec.maintenance``.

Live readings and step counts come from the robot's agent through its Robot status (at the
heartbeat's pace), since the API cannot reach an agent's socket in a cluster.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from gym_raas.results.layout import ResultFile, result_key, upload_key
from gym_raas.results.store import ResultNotFoundError, ResultStore, StoreUnavailableError
from raas_api.cluster.job_cache import CachedJobStore
from raas_api.local.platform import QuotaExceededError, RobotDetails, SubmissionRefusedError
from raas_api.stores.base import JobRecord
from raas_api.stores.kubernetes import GROUP, PLURAL, VERSION, KubernetesJobStore
from raas_node.agent.agent import LiveReading
from raas_node.runner.fetch import FetchError, fetch_local
from raas_operator.jobs.model import ArchiveSource, JobSpec, Phase
from raas_operator.reconcile.jobs import CANCEL_ANNOTATION
from raas_operator.reconcile.schedule import ClusterRobot, effective_phase
from raas_operator.robots.model import DEFAULT_HEARTBEAT_TIMEOUT, RobotPhase, RobotStatus
from raas_operator.scheduling.core import Quotas, admit

log = logging.getLogger(__name__)


_STATE_OF_PHASE = {
    RobotPhase.READY: "idle",
    RobotPhase.BUSY: "busy",
    RobotPhase.RESETTING: "resetting",
    RobotPhase.UNHEALTHY: "fault",
    RobotPhase.MAINTENANCE: "maintenance",
    RobotPhase.OFFLINE: "offline",
}
"""Robot phases as the states the local platform's agents report (the web page knows these)."""


class ClusterPlatform:
    """Jobs and robots of one namespace of a cluster, results in `results` (MinIO/S3)."""

    def __init__(
        self,
        namespace: str,
        results: ResultStore,
        *,
        api_client: client.ApiClient | None = None,
        quotas: Quotas | None = None,
        max_time_limit_s: int = 600,
        heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
        cancel_wait_s: float = 30.0,
    ) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.store = CachedJobStore(KubernetesJobStore(namespace, self.custom))
        self.results = results
        self.quotas = quotas or Quotas(max_running_per_owner=2, max_queued_per_owner=100)
        self.max_time_limit_s = max_time_limit_s
        self.heartbeat_timeout = heartbeat_timeout
        self.cancel_wait_s = cancel_wait_s
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, cache_wait_s: float = 30.0) -> ClusterPlatform:
        """Start the job cache, waiting up to `cache_wait_s` for its first list (listings go to the API
        server until then)."""
        self._started = True
        if not self.store.start(cache_wait_s):
            log.warning("the RaasJob cache of %s is not filled yet: listings read the API server", self.namespace)
        return self

    def stop(self) -> None:
        self._started = False
        self.store.stop()

    @property
    def running(self) -> bool:
        """Started, with the job cache filled (a replica that would list every RaasJob per request is
        not ready)."""
        return self._started and self.store.synced

    # -- jobs ----------------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobRecord:
        if spec.time_limit_s > self.max_time_limit_s:
            raise SubmissionRefusedError(
                f"time_limit_s {spec.time_limit_s} is above this platform's maximum of {self.max_time_limit_s}"
            )
        if spec.source.kind == "archive" and not self.results.exists(upload_key(spec.source.sha256)):
            raise SubmissionRefusedError("no uploaded code has that sha256: upload the archive with /jobs/upload")
        waiting = self.store.count_by_owner([Phase.PENDING, Phase.FETCHING, Phase.QUEUED])
        admission = admit(spec.owner, waiting, self.quotas)
        if not admission.admitted:
            raise QuotaExceededError(admission.message)
        return self.store.create(spec)

    def source_from_upload(self, archive: Path, entrypoint: str) -> dict[str, Any]:
        """Check and normalise the archive, store it under its hash; the archive file is removed."""
        workdir = Path(tempfile.mkdtemp(prefix="raas-upload-"))
        try:
            snapshot = fetch_local(archive, entrypoint, workdir)
            data = snapshot.archive.read_bytes()
        except FetchError as error:
            raise SubmissionRefusedError(str(error)) from None
        finally:
            archive.unlink(missing_ok=True)
            shutil.rmtree(workdir, ignore_errors=True)
        digest = hashlib.sha256(data).hexdigest()
        key = upload_key(digest)
        if not self.results.exists(key):
            self.results.put_bytes(key, data, ResultFile.CODE.content_type)
        return ArchiveSource(sha256=digest).model_dump()

    def get(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def cancel(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record.status.phase.is_terminal:
            return record
        patch = {"metadata": {"annotations": {CANCEL_ANNOTATION: "true"}}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, job_id, patch)
        deadline = time.monotonic() + self.cancel_wait_s
        while not record.status.phase.is_terminal and time.monotonic() < deadline:
            time.sleep(0.2)
            record = self.store.get(job_id)
        return record

    def read_log(self, job_id: str, stream: str) -> bytes:
        if stream not in ("stdout", "stderr"):
            raise ValueError("stream must be stdout or stderr")
        record = self.store.get(job_id)
        status = record.status
        if status.phase.is_terminal or status.phase is Phase.UPLOADING:
            stored = result_key(job_id, ResultFile.STDOUT if stream == "stdout" else ResultFile.STDERR)
            try:
                return self.results.get_bytes(stored)
            except (ResultNotFoundError, StoreUnavailableError):
                if status.phase.is_terminal or stream == "stderr":
                    return b""
        if stream == "stderr" or status.attempts < 1:
            return b""  # a pod's log holds stdout and stderr interleaved: it is served as stdout
        try:
            text = self.core.read_namespaced_pod_log(
                f"{job_id}-{status.attempts}", self.namespace, container="controller"
            )
        except ApiException:
            return b""  # not started yet, or already gone
        return str(text).encode()

    def steps_run(self, record: JobRecord) -> int | None:
        live = self.live_state(record)
        return None if live is None else live.steps

    def live_state(self, record: JobRecord) -> LiveReading | None:
        """The job's session as its robot's agent last reported it (at the heartbeat's pace)."""
        job_id, robot_name = record.job_id, record.status.robot
        if robot_name is None or record.status.phase not in (Phase.STARTING, Phase.RUNNING):
            return None
        try:
            item = cast(dict[str, Any], self.custom.get_cluster_custom_object(GROUP, VERSION, "robots", robot_name))
        except ApiException:
            return None
        try:
            status = RobotStatus.model_validate(item.get("status") or {})
        except ValidationError:
            log.warning("Robot %s has a status this API cannot read", robot_name)
            return None
        if status.live is None or _job_name(status.current_job) != job_id:
            return None
        live = status.live
        return LiveReading(live.steps, live.time_s, live.theta_rad, live.theta_dot_rad_per_s, live.command)

    # -- robots ----------------------------------------------------------------------------------------

    def robot_details(self) -> list[RobotDetails]:
        listing = cast(dict[str, Any], self.custom.list_cluster_custom_object(GROUP, VERSION, "robots"))
        now = datetime.now(timezone.utc)
        details = []
        for item in listing.get("items", []):
            try:
                entry = ClusterRobot.from_object(item)
            except ValidationError as error:
                details.append(_unreadable_robot(item, error))
                continue
            robot, booked = entry.robot, entry.booked_job
            phase = effective_phase(robot, now, self.heartbeat_timeout)
            if robot.spec.maintenance:
                phase = RobotPhase.MAINTENANCE  # the lab's word counts before the agent's next beat
            elif phase is RobotPhase.MAINTENANCE:
                phase = RobotPhase.RESETTING  # leaving maintenance: the agent resets before taking jobs
            health = robot.status.health
            details.append(
                RobotDetails(
                    name=robot.name,
                    type=robot.spec.robot_type,
                    labels=dict(entry.labels),
                    state=_STATE_OF_PHASE[phase],
                    ready=robot.accepts_jobs(now, self.heartbeat_timeout) and booked is None,
                    schedulable=phase not in (RobotPhase.UNHEALTHY, RobotPhase.OFFLINE, RobotPhase.MAINTENANCE),
                    reasons=tuple(health.reasons),
                    current_job=_job_name(robot.status.current_job or booked),
                    temperature_celsius=health.motor_temperature_celsius,
                    last_reset_ok=health.last_reset_ok,
                    last_reset_duration_s=health.last_reset_duration_s,
                    calibration=dict(robot.spec.calibration or {}),
                    supported_control_hz=tuple(robot.status.supported_control_hz),
                )
            )
        return sorted(details, key=lambda robot: robot.name)

    def set_maintenance(self, robot: str, on: bool) -> None:
        try:
            self.custom.patch_cluster_custom_object(GROUP, VERSION, "robots", robot, {"spec": {"maintenance": on}})
        except ApiException as error:
            if error.status == 404:
                raise KeyError(robot) from None
            raise


def _unreadable_robot(item: dict[str, Any], error: ValidationError) -> RobotDetails:
    """A Robot object this API cannot read (the CRD's schema should have refused it): listed as
    a fault, never ready, with what is wrong, rather than failing the whole listing."""
    metadata = item.get("metadata") or {}
    spec = item.get("spec")
    robot_type = spec.get("robot_type") if isinstance(spec, dict) else None
    labels = metadata.get("labels") or {}
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in error.errors()[:3]
    )
    log.warning("Robot %s cannot be read: %s", metadata.get("name"), problems)
    return RobotDetails(
        name=str(metadata.get("name", "")),
        type=robot_type if isinstance(robot_type, str) else "unknown",
        labels={str(key): str(value) for key, value in labels.items()} if isinstance(labels, dict) else {},
        state=_STATE_OF_PHASE[RobotPhase.UNHEALTHY],
        ready=False,
        schedulable=False,
        reasons=(f"its Robot object cannot be read ({problems})",),
        current_job=None,
        temperature_celsius=None,
        last_reset_ok=None,
        last_reset_duration_s=None,
        calibration={},
        supported_control_hz=(),
    )


def _job_name(reference: str | None) -> str | None:
    """A job's name from a Robot's reference to it (``namespace/name``, or a bare booking's name)."""
    return (reference or "").rpartition("/")[2] or None
