"""The operator's reads and writes of the cluster and the result store (the I/O the pure
reconcilers leave out), through the official ``kubernetes`` client.

Every write is idempotent or guarded: pods and Secrets have deterministic names (a create that
finds one already there is fine), deletes ignore 404, status and booking patches carry the
resourceVersion they were computed from (a 409 means someone else acted first: look again).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import tarfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from gym_raas.protocol.tokens import session_token
from gym_raas.results.layout import ResultFile, result_key, session_key, upload_key, wheels_key
from gym_raas.results.store import ResultNotFoundError, S3ResultStore
from raas_operator.jobs.model import ArchiveSource, JobSpec, JobStatus
from raas_operator.pods.builder import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SESSION_TOKEN_KEY,
    PodSettings,
    fetch_pod,
    job_pod,
    session_secret,
)
from raas_operator.reconcile.pods import PodView
from raas_operator.reconcile.schedule import (
    BOOKING_ANNOTATION,
    BOOKING_ATTEMPT_ANNOTATION,
    BOOKING_RATE_ANNOTATION,
    ClusterRobot,
)
from raas_operator.runtime.settings import OperatorSettings

log = logging.getLogger(__name__)

GROUP, VERSION = "raas.dev", "v1alpha1"


def _release(response: Any) -> None:
    """Read a raw response (``_preload_content=False``) to its end and give its connection back to
    the client's pool: left unread, the connection stays taken, and the next request opens (and
    TLS-handshakes) a new one."""
    response.read()
    response.release_conn()


class EventRecorder:
    """Posts `Cluster.event`s from a thread of its own, in the order given: Events are best
    effort, and neither a robot's next job nor a job's next step should wait for one."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raas-events")

    def record(self, job: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self._thread.submit(self._post, job, reason, message, warning)

    def _post(self, job: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        try:
            self.cluster.event(job, reason, message, warning=warning)
        except Exception:  # the API server is down: the Event is lost, nothing else
            log.warning("could not record event %s on %s", reason, job["metadata"]["name"], exc_info=True)

    def stop(self) -> None:
        """Post the Events still waiting, then end the thread."""
        self._thread.shutdown(wait=True)


class ConflictError(Exception):
    """The object changed since it was read."""


class Cluster:
    """RaasJobs, Robots, pods, Secrets and Events of one namespace, and the result store."""

    def __init__(self, settings: OperatorSettings, api_client: client.ApiClient | None = None) -> None:
        self.settings = settings
        self.namespace = settings.namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.store = S3ResultStore(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key.get_secret_value(),
            settings.s3_bucket,
            secure=settings.s3_secure,
        )
        self.pod_settings = PodSettings(
            image=settings.image, python=settings.python, start_margin_s=settings.start_margin_s
        )
        self.key = settings.session_key.get_secret_value().encode()

    # -- jobs ------------------------------------------------------------------------------------

    def job(self, name: str) -> dict[str, Any] | None:
        """The RaasJob as the API server has it now (None once it is gone)."""
        try:
            return cast(
                dict[str, Any],
                self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "raasjobs", name),
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch_status(self, name: str, status: JobStatus, resource_version: str) -> dict[str, Any]:
        body = {"metadata": {"resourceVersion": resource_version}, "status": status.model_dump(mode="json")}
        try:
            return cast(
                dict[str, Any],
                self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, self.namespace, "raasjobs", name, body
                ),
            )
        except ApiException as error:
            if error.status == 409:
                raise ConflictError(name) from None
            raise

    def delete_job(self, name: str) -> None:
        self._ignore_missing(
            lambda: self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "raasjobs", name)
        )

    # -- pods ------------------------------------------------------------------------------------

    def managed_pods(self) -> list[dict[str, Any]]:
        """Every pod of the namespace this operator manages (the API's JSON)."""
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}", _preload_content=False
        )
        return list(json.loads(cast(Any, response).data).get("items", []))

    def pods_of(self, job: str) -> tuple[PodView, ...]:
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"raas.dev/job={job}", _preload_content=False
        )  # the API's own JSON (camelCase), as PodView reads it
        return tuple(PodView.from_pod(pod) for pod in json.loads(cast(Any, response).data).get("items", []))

    def create_fetch_pod(self, job: dict[str, Any]) -> None:
        """The job's fetch pod: it fetches a git source and stores ``code.tar.gz`` (uploaded code
        is stored already: it only reads it), and resolves the wheels of a requirements.txt."""
        name, uid = job["metadata"]["name"], job["metadata"]["uid"]
        spec = JobSpec.model_validate(job["spec"])
        source = spec.source
        code = result_key(name, ResultFile.CODE)
        environment = {
            "RAAS_ENTRYPOINT": spec.entrypoint,
            "RAAS_WHEELS_UPLOAD_URL": self.store.upload_url(wheels_key(name), timedelta(hours=1)),
            "RAAS_WHEEL_PLATFORMS": self.settings.wheel_platforms,
            **self.settings.fetch_pip_environment,
        }
        if isinstance(source, ArchiveSource):
            environment["RAAS_CODE_DOWNLOAD_URL"] = self.store.download_url(code, timedelta(hours=1))
        else:
            environment["RAAS_SOURCE_URL"] = getattr(source, "url", "")
            environment["RAAS_SOURCE_REF"] = getattr(source, "ref", "HEAD")
            environment["RAAS_CODE_UPLOAD_URL"] = self.store.upload_url(code, timedelta(hours=1))
        command = [self.settings.python, "-m", "raas_node.runner.fetch_pod"]
        pod = fetch_pod(
            job_name=name, namespace=self.namespace, job_uid=uid, command=command, settings=self.pod_settings,
            environment=environment,
        )  # fmt: skip
        self._create_pod(pod)

    def create_run_pod(self, job: dict[str, Any], robot: str, attempt: int) -> None:
        name, uid = job["metadata"]["name"], job["metadata"]["uid"]
        status = JobStatus.model_validate(job.get("status") or {})
        token = session_token(self.key, robot, name)
        secret = session_secret(name, self.namespace, uid, token)
        try:
            _release(self.core.create_namespaced_secret(self.namespace, cast(Any, secret), _preload_content=False))
        except ApiException as error:
            if error.status != 409:
                raise
            # A second look before the pod showed finds this attempt's Secret: it is kept. A retry
            # runs on another robot: its token differs from the first attempt's. The Secret is
            # immutable (the API server refuses to replace its data), so it is made anew.
            if self._secret_token(secret["metadata"]["name"]) != token:
                self._ignore_missing(
                    lambda: _release(
                        self.core.delete_namespaced_secret(
                            secret["metadata"]["name"], self.namespace, _preload_content=False
                        )
                    )
                )
                _release(self.core.create_namespaced_secret(self.namespace, cast(Any, secret), _preload_content=False))
        pod = job_pod(
            job_name=name,
            namespace=self.namespace,
            job_uid=uid,
            spec=JobSpec.model_validate(job["spec"]),
            robot=robot,
            commit=status.commit or "",
            code_url=self.store.download_url(result_key(name, ResultFile.CODE), timedelta(hours=2)),
            settings=self.pod_settings,
            attempt=attempt,
            wheels_url=self.store.download_url(wheels_key(name), timedelta(hours=2)) if status.requirements else None,
        )
        self._create_pod(pod)

    def _secret_token(self, name: str) -> str | None:
        """The session token Secret `name` holds (None if it holds none, or is gone)."""
        try:
            response = self.core.read_namespaced_secret(name, self.namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        encoded = (json.loads(cast(Any, response).data).get("data") or {}).get(SESSION_TOKEN_KEY)
        return base64.b64decode(encoded).decode() if encoded else None

    def delete_pod(self, pod: str) -> None:
        self._ignore_missing(
            lambda: _release(
                self.core.delete_namespaced_pod(pod, self.namespace, grace_period_seconds=5, _preload_content=False)
            )
        )

    def _create_pod(self, pod: dict[str, Any]) -> None:
        self._ignore_existing(
            lambda: _release(self.core.create_namespaced_pod(self.namespace, cast(Any, pod), _preload_content=False))
        )

    # -- results ---------------------------------------------------------------------------------

    def collect_results(self, job: dict[str, Any], pod: str) -> None:
        """The pod's log (stdout and stderr interleaved, as Kubernetes keeps them) and metadata.json."""
        name = job["metadata"]["name"]
        status = JobStatus.model_validate(job.get("status") or {})
        try:
            logs = self.core.read_namespaced_pod_log(pod, self.namespace, container="controller")
        except ApiException as error:
            logs = f"(no log: {error.reason})\n"
        self.store.put_bytes(result_key(name, ResultFile.STDOUT), str(logs).encode(), ResultFile.STDOUT.content_type)
        metadata = {
            "job": name,
            "owner": job["spec"]["owner"],
            "source": job["spec"]["source"],
            "commit": status.commit,
            "robot": status.robot,
            "attempt": status.attempts,
            "pod": pod,
            "collected": datetime.now(timezone.utc).isoformat(),
            "layout": "results/v1",
        }
        document = json.dumps(metadata, indent=2, sort_keys=True).encode()
        self.store.put_bytes(result_key(name, ResultFile.METADATA), document, ResultFile.METADATA.content_type)

    def complete_metadata(self, job: str, record: dict[str, Any], status: JobStatus) -> None:
        """Add what the robot's agent recorded of the session (its calibration, for the sim-to-real
        replay; its outcome and figures) and the final summary to the job's ``metadata.json``."""
        key = result_key(job, ResultFile.METADATA)
        try:
            metadata = json.loads(self.store.get_bytes(key))
        except ResultNotFoundError:
            metadata = {"job": job, "layout": "results/v1"}
        metadata["calibration"] = record.get("calibration") or {}
        metadata["session"] = {name: value for name, value in record.items() if name != "calibration"}
        if status.summary is not None:
            metadata["summary"] = status.summary.model_dump(mode="json")
        document = json.dumps(metadata, indent=2, sort_keys=True).encode()
        self.store.put_bytes(key, document, ResultFile.METADATA.content_type)

    def upload_present(self, sha256: str) -> bool:
        return self.store.exists(upload_key(sha256))

    def upload_has_requirements(self, sha256: str) -> bool:
        """Whether the uploaded code (a normalised ``code.tar.gz``) has a requirements.txt at its top."""
        try:
            with tarfile.open(fileobj=io.BytesIO(self.store.get_bytes(upload_key(sha256))), mode="r:gz") as bundle:
                return any(
                    member.isfile() and member.name.removeprefix("./") == "requirements.txt" for member in bundle
                )
        except (tarfile.TarError, EOFError, ResultNotFoundError):
            return False  # (an unreadable upload fails when the job's pod unpacks it, with a clear message)

    def adopt_upload(self, job: str, sha256: str) -> None:
        """The uploaded code becomes the job's ``code.tar.gz`` (the upload itself stays: the same
        archive may be submitted again)."""
        data = self.store.get_bytes(upload_key(sha256))
        self.store.put_bytes(result_key(job, ResultFile.CODE), data, ResultFile.CODE.content_type)

    def agent_session(self, job: str) -> dict[str, Any] | None:
        """The robot agent's ``session.json`` of the job, once it uploaded it."""
        try:
            return cast(dict[str, Any], json.loads(self.store.get_bytes(session_key(job))))
        except ResultNotFoundError:
            return None

    def discard_session_record(self, job: str) -> None:
        """Forget the agent's session record of the job's last attempt (before its retry)."""
        self.store.delete(session_key(job))

    def results_collected(self, job: str, attempt: int) -> bool:
        try:
            metadata = json.loads(self.store.get_bytes(result_key(job, ResultFile.METADATA)))
        except ResultNotFoundError:
            return False
        return bool(metadata.get("attempt") == attempt)

    # -- robots ----------------------------------------------------------------------------------

    def list_robots(self) -> tuple[list[dict[str, Any]], str | None]:
        """Every Robot object, and the resourceVersion the list was read at."""
        listing = cast(dict[str, Any], self.custom.list_cluster_custom_object(GROUP, VERSION, "robots"))
        return list(listing.get("items") or []), (listing.get("metadata") or {}).get("resourceVersion")

    def _robot_object(self, name: str) -> dict[str, Any] | None:
        """Robot `name` as the API server serves it now (None if there is no such Robot)."""
        try:
            return cast(dict[str, Any], self.custom.get_cluster_custom_object(GROUP, VERSION, "robots", name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def robot(self, name: str) -> ClusterRobot | None:
        """One Robot with its booking (None if there is no such Robot, or it cannot be read)."""
        item = self._robot_object(name)
        if item is None:
            return None
        try:
            return ClusterRobot.from_object(item)
        except ValidationError as error:
            log.warning("Robot %s cannot be read: %s", name, error)
            return None

    def book(
        self,
        robot: str,
        job: str | None,
        resource_version: str | None = None,
        *,
        attempt: int | None = None,
        control_hz: float | None = None,
    ) -> dict[str, Any] | None:
        """Book `attempt` of `job` at `control_hz` on `robot` (None: free it, and forget both);
        with a resourceVersion, only if unchanged since. The agent expects the booked job at that
        rate (a version-1 client cannot ask for one).

        Returns the Robot as patched (None if there is no such Robot)."""
        attempt_value = str(attempt) if job is not None and attempt is not None else None
        rate_value = f"{control_hz:g}" if job is not None and control_hz is not None else None
        metadata: dict[str, Any] = {
            "annotations": {
                BOOKING_ANNOTATION: job,
                BOOKING_ATTEMPT_ANNOTATION: attempt_value,
                BOOKING_RATE_ANNOTATION: rate_value,
            }
        }
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        try:
            return cast(
                dict[str, Any],
                self.custom.patch_cluster_custom_object(GROUP, VERSION, "robots", robot, {"metadata": metadata}),
            )
        except ApiException as error:
            if error.status == 409:
                raise ConflictError(robot) from None
            if error.status != 404:
                raise
            return None

    def unbook(self, robot: str, job: str, attempt: int | None = None, *, tries: int = 5) -> dict[str, Any] | None:
        """Free `robot` if it is still booked for `job` (for its `attempt`, when given and the
        booking names one); returns the Robot as patched, or None when it is not (booked for
        another job or attempt meanwhile, freed already, or gone).

        The booking is read fresh and cleared with that read's resourceVersion, again on a
        conflict: an operator whose cache is a version behind (or a second replica) must never
        clear the booking of the job that came next, whose agent would then not expect it. (The
        agent's heartbeats change the Robot's version every few seconds, so the version the cache
        holds is no guard on its own.)"""
        for _ in range(tries):
            item = self._robot_object(robot)
            if item is None:
                return None
            metadata = item.get("metadata") or {}
            annotations = metadata.get("annotations") or {}
            booked_attempt = annotations.get(BOOKING_ATTEMPT_ANNOTATION)
            if annotations.get(BOOKING_ANNOTATION) != job or (
                attempt is not None and booked_attempt is not None and booked_attempt != str(attempt)
            ):
                return None
            try:
                return self.book(robot, None, str(metadata["resourceVersion"]))
            except ConflictError:
                continue  # (a heartbeat came between the read and the write)
        log.warning("could not free robot %s of job %s: it kept changing; the next look tries again", robot, job)
        return None

    # -- events ----------------------------------------------------------------------------------

    def event(self, job: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        metadata = job["metadata"]
        now = datetime.now(timezone.utc)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{metadata['name']}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RaasJob",
                "name": metadata["name"],
                "namespace": self.namespace,
                "uid": metadata.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
            "source": {"component": "raas-operator"},
        }
        try:
            self.core.create_namespaced_event(self.namespace, cast(Any, body))
        except ApiException as error:  # events are best effort
            log.warning("could not record event %s on %s: %s", reason, metadata["name"], error.reason)

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _ignore_missing(call: Any) -> None:
        try:
            call()
        except ApiException as error:
            if error.status != 404:
                raise

    @staticmethod
    def _ignore_existing(call: Any) -> None:
        try:
            call()
        except ApiException as error:
            if error.status != 409:
                raise
