"""The Kubernetes job store (`KubernetesJobStore`) on the real control plane, through the official
client: the CRD's schema, CEL rules, status subresource and resourceVersion checks are the API
server's own.

The store speaks as the web API's own ServiceAccount (``raas-system/raas-api``, a TokenRequest
token) in the chart's job namespace (``raas-jobs``), so the chart's RBAC is the one in force. That
RBAC lets the API create, read and list RaasJobs but not write their status (``raasjobs/status``
is the operator's alone; the API never writes a status in a cluster: `ClusterPlatform` submits
with ``create(spec)``). The status writes these tests need, and the store's own status semantics
(the version check, concurrent writers), therefore go through the same store class speaking as the
operator's ServiceAccount, the one component that writes statuses in a cluster; that the API's
token is refused is asserted. The RaasJobs a test made are deleted after it as the admin (the
chart's namespaces are shared by the whole session).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from controlplane.chart_install import API, JOBS, OPERATOR, ServiceAccountClient
from controlplane.cluster import ControlPlane
from kubernetes import client

from raas_api.stores.base import ConflictError, JobNotFoundError
from raas_api.stores.kubernetes import GROUP, PLURAL, VERSION, KubernetesJobStore, StoreUnreachableError
from raas_operator.jobs.model import JobSpec, JobStatus, Phase, transition

pytestmark = pytest.mark.slow


def spec(owner: str = "ada") -> JobSpec:
    return JobSpec.model_validate(
        {"owner": owner, "source": {"kind": "git", "url": "https://github.com/a/ctl.git", "ref": "main"}}
    )


def delete_jobs(plane: ControlPlane) -> None:
    """Every RaasJob of the job namespace, deleted as the admin."""
    with plane.api_client() as admin:
        client.CustomObjectsApi(admin).delete_collection_namespaced_custom_object(GROUP, VERSION, JOBS, PLURAL)


@pytest.fixture
def store(raas_chart: ControlPlane, service_account_client: ServiceAccountClient) -> Iterator[KubernetesJobStore]:
    """The API's store, as the API's ServiceAccount, on a job namespace without RaasJobs."""
    delete_jobs(raas_chart)
    yield KubernetesJobStore(JOBS, client.CustomObjectsApi(service_account_client(API)))
    delete_jobs(raas_chart)


@pytest.fixture
def operator_store(store: KubernetesJobStore, service_account_client: ServiceAccountClient) -> KubernetesJobStore:
    """The same namespace as the operator's ServiceAccount: the one that may write statuses."""
    return KubernetesJobStore(JOBS, client.CustomObjectsApi(service_account_client(OPERATOR)))


def test_a_job_is_a_raasjob_with_its_spec_status_and_owner_label(
    store: KubernetesJobStore, operator_store: KubernetesJobStore
) -> None:
    """The emulator-era test also had ``store.create(spec, JobStatus(reason="Submitted"))`` write
    the given status; with the chart's RBAC the API's ServiceAccount cannot write a status, so
    that call is refused (403) and the status is written by the operator's instead."""
    record = store.create(spec())
    document: dict[str, Any] = store.api.get_namespaced_custom_object(GROUP, VERSION, JOBS, PLURAL, record.job_id)  # type: ignore[assignment]
    assert document["kind"] == "RaasJob"
    assert document["metadata"]["labels"] == {"raas.dev/owner": "ada"}
    assert document["spec"]["source"]["url"] == "https://github.com/a/ctl.git"
    assert "status" not in document  # the operator writes the first status (it may be quicker than us)
    assert record.status.phase is Phase.PENDING
    with pytest.raises(StoreUnreachableError, match="403"):
        store.create(spec(), JobStatus(reason="Submitted"))  # the API may not write a status
    written = operator_store.update_status(record.job_id, JobStatus(reason="Submitted"), record.version)
    assert store.get(record.job_id).status.reason == "Submitted"  # a given status is written
    again = store.get(record.job_id)
    assert again.spec == written.spec == record.spec
    assert again.status == written.status
    assert again.version == written.version


def test_a_stale_update_is_refused_and_an_unknown_job_is_not_found(
    store: KubernetesJobStore, operator_store: KubernetesJobStore
) -> None:
    record = store.create(spec())
    with pytest.raises(StoreUnreachableError, match="403"):
        store.update_status(record.job_id, transition(record.status, Phase.FETCHING), record.version)
    fetched = operator_store.update_status(record.job_id, transition(record.status, Phase.FETCHING), record.version)
    assert fetched.version != record.version
    with pytest.raises(ConflictError, match="changed since"):
        operator_store.update_status(record.job_id, transition(record.status, Phase.QUEUED), record.version)
    assert store.get(record.job_id).status.phase is Phase.FETCHING
    with pytest.raises(JobNotFoundError):
        store.get("job-missing")
    with pytest.raises(JobNotFoundError):
        operator_store.update_status("job-missing", record.status, record.version)


def test_concurrent_updates_from_threads_lose_nothing(
    store: KubernetesJobStore, operator_store: KubernetesJobStore
) -> None:
    record = store.create(spec())
    applied: list[int] = []

    def bump(worker: int) -> None:
        for _ in range(10):
            while True:
                current = operator_store.get(record.job_id)
                status = current.status.model_copy(update={"attempts": current.status.attempts + 1})
                try:
                    operator_store.update_status(record.job_id, status, current.version)
                except ConflictError:
                    continue
                applied.append(worker)
                break

    threads = [threading.Thread(target=bump, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get(record.job_id).status.attempts == len(applied) == 40


def test_listing_filters_and_pages_newest_first_with_a_cursor(
    store: KubernetesJobStore, operator_store: KubernetesJobStore
) -> None:
    created = [store.create(spec(owner)) for owner in ["ada", "bob", "ada", "ada", "bob"]]
    queued = operator_store.update_status(
        created[2].job_id, transition(created[2].status, Phase.QUEUED), created[2].version
    )
    running = transition(transition(queued.status, Phase.STARTING, robot="sim-1"), Phase.RUNNING)
    operator_store.update_status(queued.job_id, running, queued.version)

    newest_first = [record.job_id for record in reversed(created)]
    everyone = store.list_jobs(limit=50)
    assert [record.job_id for record in everyone.jobs] == newest_first
    assert everyone.next_cursor is None
    first = store.list_jobs(limit=2)
    second = store.list_jobs(limit=2, cursor=first.next_cursor)
    third = store.list_jobs(limit=2, cursor=second.next_cursor)
    assert [record.job_id for record in first.jobs + second.jobs + third.jobs] == newest_first
    assert third.next_cursor is None
    assert {record.spec.owner for record in store.list_jobs(owner="bob").jobs} == {"bob"}
    assert [record.job_id for record in store.list_jobs(phases=[Phase.RUNNING]).jobs] == [created[2].job_id]
    assert [record.job_id for record in store.list_jobs(robot="sim-1").jobs] == [created[2].job_id]
    assert store.count_by_owner([Phase.PENDING]) == {"ada": 2, "bob": 2}
    with pytest.raises(ValueError, match="cursor"):
        store.list_jobs(cursor="garbage!")


def test_an_unreachable_cluster_is_a_clear_error() -> None:
    configuration = client.Configuration(host="http://127.0.0.1:9")
    configuration.retries = 0
    store = KubernetesJobStore("raas", client.CustomObjectsApi(client.ApiClient(configuration)))
    with pytest.raises(StoreUnreachableError, match="unreachable"):
        store.get("job-any")
