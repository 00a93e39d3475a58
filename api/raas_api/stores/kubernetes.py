"""`JobStore` on a Kubernetes cluster: every job is a ``RaasJob`` (``raas.dev/v1alpha1``) in one
namespace, through the official ``kubernetes`` client.

* ``spec`` is the `JobSpec` (immutable after creation), ``status`` the `JobStatus`, written
  through the status subresource only.
* The optimistic-concurrency token is the object's ``resourceVersion``: a status update carries
  the version it was computed from, and the API server answers 409 when the object changed since
  (`ConflictError`).
* The submission time is an annotation (microseconds; ``creationTimestamp`` has whole seconds).
* The owner is also a label (``raas.dev/owner``), so an owner's jobs are listed server-side.
  Phases and robots live in the status, which label selectors cannot see: those filters, the
  newest-first order and the cursor pages are applied here, over the namespace's RaasJobs (which
  the operator deletes after their TTL, so the list stays bounded).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from raas_api.stores.base import ConflictError, JobNotFoundError, JobPage, JobRecord
from raas_api.stores.sqlite import new_job_id
from raas_operator.jobs.model import JobSpec, JobStatus, Phase

GROUP = "raas.dev"
VERSION = "v1alpha1"
PLURAL = "raasjobs"
OWNER_LABEL = "raas.dev/owner"
CREATED_ANNOTATION = "raas.dev/created-at"
"""Submission time to the microsecond: ``creationTimestamp`` has whole seconds, too coarse to
keep a burst of submissions in order."""


class StoreUnreachableError(RuntimeError):
    """The Kubernetes API could not be reached or refused the request for a reason of its own."""


class KubernetesJobStore:
    """Jobs as RaasJobs in `namespace` (the API client's configuration decides which cluster)."""

    def __init__(self, namespace: str, api: client.CustomObjectsApi | None = None) -> None:
        self.namespace = namespace
        self.api = api or client.CustomObjectsApi()

    def create(self, spec: JobSpec, status: JobStatus | None = None) -> JobRecord:
        status = status or JobStatus()
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RaasJob",
            "metadata": {
                "name": new_job_id(),
                "namespace": self.namespace,
                "labels": {OWNER_LABEL: spec.owner},
                "annotations": {CREATED_ANNOTATION: datetime.now(timezone.utc).isoformat()},
            },
            "spec": spec.model_dump(mode="json"),
        }
        created = self._call(
            lambda: self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body), None
        )
        name = created["metadata"]["name"]
        if status == JobStatus():
            return job_record(created)  # the operator writes the first status (Submitted, at creation time)
        try:
            return self.update_status(name, status, created["metadata"]["resourceVersion"])
        except ConflictError:
            current = self.get(name)
            if current.status.history:  # the operator (or its finalizer) got there first: its status stands
                return current
            return self.update_status(name, status, current.version)

    def get(self, job_id: str) -> JobRecord:
        return job_record(
            self._call(
                lambda: self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, job_id), job_id
            )
        )

    def update_status(self, job_id: str, status: JobStatus, expected_version: int | str) -> JobRecord:
        patch = {"metadata": {"resourceVersion": str(expected_version)}, "status": status.model_dump(mode="json")}
        updated = self._call(
            lambda: self.api.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, job_id, patch
            ),
            job_id,
            conflict=f"job {job_id} changed since version {expected_version}",
        )
        return job_record(updated)

    def list_jobs(
        self,
        *,
        owner: str | None = None,
        phases: Sequence[Phase] | None = None,
        robot: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        records = self._all(owner)
        if phases is not None:
            wanted = set(phases)
            records = [record for record in records if record.status.phase in wanted]
        if robot is not None:
            records = [record for record in records if record.status.robot == robot]
        records.sort(key=listing_order, reverse=True)
        if cursor is not None:
            after = decode_cursor(cursor)
            records = [record for record in records if listing_order(record) < after]
        page = records[:limit]
        next_cursor = encode_cursor(listing_order(page[-1])) if len(records) > limit else None
        return JobPage(tuple(page), next_cursor)

    def count_by_owner(self, phases: Sequence[Phase]) -> dict[str, int]:
        if not phases:
            return {}
        wanted = set(phases)
        counts: dict[str, int] = {}
        for record in self._all(None):
            if record.status.phase in wanted:
                counts[record.spec.owner] = counts.get(record.spec.owner, 0) + 1
        return counts

    def close(self) -> None:
        """Nothing to release (the API client's pool is shared)."""

    def _all(self, owner: str | None) -> list[JobRecord]:
        selector = f"{OWNER_LABEL}={owner}" if owner is not None else ""
        records: list[JobRecord] = []
        token: str | None = None
        while True:
            arguments: dict[str, Any] = {"label_selector": selector, "limit": 500}
            if token:
                arguments["_continue"] = token
            listing = self._call(
                functools.partial(
                    self.api.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, **arguments
                ),
                None,
            )
            records.extend(job_record(item) for item in listing.get("items", []) if item.get("spec"))
            token = (listing.get("metadata") or {}).get("continue")
            if not token:
                return records

    def _call(self, request: Callable[[], object], job_id: str | None, *, conflict: str = "") -> dict[str, Any]:
        try:
            return cast(dict[str, Any], request())  # the client's custom-object calls return parsed JSON
        except ApiException as error:
            if error.status == 404 and job_id is not None:
                raise JobNotFoundError(job_id) from None
            if error.status == 409:
                raise ConflictError(conflict or f"job {job_id} changed meanwhile") from None
            if error.status in (401, 403):  # a misconfiguration, not an outage: say so
                raise StoreUnreachableError(
                    f"the Kubernetes API refused this request ({error.status} {error.reason}): this component's"
                    " ServiceAccount lacks the permission (only the operator writes job statuses on a cluster)"
                ) from error
            raise StoreUnreachableError(f"Kubernetes API error {error.status}: {error.reason}") from error
        except (OSError, urllib3.exceptions.HTTPError) as error:  # refused, DNS, timeouts, retries exhausted
            raise StoreUnreachableError(f"Kubernetes API unreachable: {error}") from error


def job_record(document: dict[str, Any]) -> JobRecord:
    """A RaasJob (the API's JSON) as the store's `JobRecord`; its creation time is the submission
    annotation's (microseconds) when present, else ``creationTimestamp``."""
    metadata = document["metadata"]
    created = (metadata.get("annotations") or {}).get(CREATED_ANNOTATION) or metadata.get("creationTimestamp")
    created_at = (
        datetime.fromisoformat(created.replace("Z", "+00:00"))
        if isinstance(created, str)
        else datetime.now(timezone.utc)
    )
    status = document.get("status") or {}
    return JobRecord(
        job_id=metadata["name"],
        spec=JobSpec.model_validate(document["spec"]),
        status=JobStatus.model_validate(status) if status else JobStatus(),
        created_at=created_at,
        version=metadata["resourceVersion"],
    )


def listing_order(record: JobRecord) -> tuple[str, str]:
    """The key job listings sort on (newest first when reversed): creation time, then id."""
    return (record.created_at.isoformat(), record.job_id)


def encode_cursor(key: tuple[str, str]) -> str:
    """The opaque page cursor for a `listing_order` key (URL-safe base64 of JSON)."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The `listing_order` key of a page cursor; a ValueError for one this store did not make."""
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as error:
        raise ValueError(f"invalid cursor {cursor!r}") from error
    return (str(created), str(job_id))
