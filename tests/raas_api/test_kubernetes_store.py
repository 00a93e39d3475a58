"""The Kubernetes job store against the Kubernetes emulator over real HTTP (kmock: no CRD schema
enforcement, no admission; see tests/k8s_fixtures.py), through the official client."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from k8s_fixtures import Emulator, running_emulator
from kubernetes import client

from raas_api.stores.base import ConflictError, JobNotFoundError
from raas_api.stores.kubernetes import KubernetesJobStore, StoreUnreachableError
from raas_operator.jobs.model import JobSpec, JobStatus, Phase, transition


def spec(owner: str = "ada") -> JobSpec:
    return JobSpec.model_validate(
        {"owner": owner, "source": {"kind": "git", "url": "https://github.com/a/ctl.git", "ref": "main"}}
    )


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with running_emulator() as running:
        yield running


@pytest.fixture
def store(emulator: Emulator) -> KubernetesJobStore:
    api = client.CustomObjectsApi(emulator.api_client())
    for item in api.list_namespaced_custom_object("raas.dev", "v1alpha1", "raas", "raasjobs")["items"]:
        api.delete_namespaced_custom_object("raas.dev", "v1alpha1", "raas", "raasjobs", item["metadata"]["name"])
    return KubernetesJobStore("raas", api)


def test_a_job_is_a_raasjob_with_its_spec_status_and_owner_label(store: KubernetesJobStore) -> None:
    record = store.create(spec())
    document = store.api.get_namespaced_custom_object("raas.dev", "v1alpha1", "raas", "raasjobs", record.job_id)
    assert document["kind"] == "RaasJob"
    assert document["metadata"]["labels"] == {"raas.dev/owner": "ada"}
    assert document["spec"]["source"]["url"] == "https://github.com/a/ctl.git"
    assert "status" not in document  # the operator writes the first status (it may be quicker than us)
    assert record.status.phase is Phase.PENDING
    submitted = store.create(spec(), JobStatus(reason="Submitted"))
    assert store.get(submitted.job_id).status.reason == "Submitted"  # a given status is written
    again = store.get(record.job_id)
    assert again.spec == record.spec
    assert again.status == record.status
    assert again.version == record.version


def test_a_stale_update_is_refused_and_an_unknown_job_is_not_found(store: KubernetesJobStore) -> None:
    record = store.create(spec())
    fetched = store.update_status(record.job_id, transition(record.status, Phase.FETCHING), record.version)
    assert fetched.version != record.version
    with pytest.raises(ConflictError, match="changed since"):
        store.update_status(record.job_id, transition(record.status, Phase.QUEUED), record.version)
    assert store.get(record.job_id).status.phase is Phase.FETCHING
    with pytest.raises(JobNotFoundError):
        store.get("job-missing")
    with pytest.raises(JobNotFoundError):
        store.update_status("job-missing", record.status, record.version)


def test_concurrent_updates_from_threads_lose_nothing(store: KubernetesJobStore) -> None:
    record = store.create(spec())
    applied: list[int] = []

    def bump(worker: int) -> None:
        for _ in range(10):
            while True:
                current = store.get(record.job_id)
                status = current.status.model_copy(update={"attempts": current.status.attempts + 1})
                try:
                    store.update_status(record.job_id, status, current.version)
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


def test_listing_filters_and_pages_newest_first_with_a_cursor(store: KubernetesJobStore) -> None:
    created = [store.create(spec(owner)) for owner in ["ada", "bob", "ada", "ada", "bob"]]
    queued = store.update_status(created[2].job_id, transition(created[2].status, Phase.QUEUED), created[2].version)
    running = transition(transition(queued.status, Phase.STARTING, robot="sim-1"), Phase.RUNNING)
    store.update_status(queued.job_id, running, queued.version)

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
