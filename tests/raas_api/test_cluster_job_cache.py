"""The cluster platform's job listings from its watch-fed cache (`CachedJobStore`), on the real
control plane, as the web API's ServiceAccount in the chart's job namespace.

What a user of the API would notice: the cached listing is the listing the API server gives (same
filters, order and cursor pages, the quota counts), it follows writes made by others (the operator's
statuses, a deletion) through the watch, one's own submission is listed at once, and listing no
longer reads every RaasJob from the API server per request (`ClusterPlatform` before the cache
did: ``test_a_started_platform_lists_without_listing_the_api_server`` fails on it). Status writes
go through the operator's ServiceAccount (the API's may not write statuses; see
test_kubernetes_store.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controlplane.chart_install import API, JOBS, OPERATOR, ServiceAccountClient
from controlplane.cluster import ControlPlane
from kubernetes import client
from polling import wait_for

from gym_raas.results.store import FilesystemResultStore
from raas_api.cluster.job_cache import CachedJobStore
from raas_api.cluster.platform import ClusterPlatform
from raas_api.stores.base import JobPage
from raas_api.stores.kubernetes import GROUP, PLURAL, VERSION, KubernetesJobStore
from raas_operator.jobs.model import JobSpec, Phase, transition

pytestmark = pytest.mark.slow


def spec(owner: str) -> JobSpec:
    return JobSpec.model_validate(
        {"owner": owner, "source": {"kind": "git", "url": "https://github.com/a/ctl.git", "ref": "main"}}
    )


def delete_jobs(plane: ControlPlane) -> None:
    with plane.api_client() as admin:
        client.CustomObjectsApi(admin).delete_collection_namespaced_custom_object(GROUP, VERSION, JOBS, PLURAL)


def ids(page: JobPage) -> list[str]:
    return [record.job_id for record in page.jobs]


@pytest.fixture
def direct(raas_chart: ControlPlane, service_account_client: ServiceAccountClient) -> Iterator[KubernetesJobStore]:
    """The uncached store as the API's ServiceAccount, on a job namespace without RaasJobs."""
    delete_jobs(raas_chart)
    yield KubernetesJobStore(JOBS, client.CustomObjectsApi(service_account_client(API)))
    delete_jobs(raas_chart)


@pytest.fixture
def operator_store(direct: KubernetesJobStore, service_account_client: ServiceAccountClient) -> KubernetesJobStore:
    return KubernetesJobStore(JOBS, client.CustomObjectsApi(service_account_client(OPERATOR)))


@pytest.fixture
def cached(direct: KubernetesJobStore, service_account_client: ServiceAccountClient) -> Iterator[CachedJobStore]:
    """A started cache with its own API client (as the API's ServiceAccount)."""
    store = CachedJobStore(KubernetesJobStore(JOBS, client.CustomObjectsApi(service_account_client(API))))
    assert store.start(wait_s=30)
    yield store
    store.stop()


def same_listings(cached: CachedJobStore, direct: KubernetesJobStore, **filters: Any) -> bool:
    return cached.list_jobs(**filters) == direct.list_jobs(**filters)


def test_the_cached_listing_is_the_api_servers_listing_with_filters_cursors_and_counts(
    cached: CachedJobStore, direct: KubernetesJobStore, operator_store: KubernetesJobStore
) -> None:
    created = [direct.create(spec(owner)) for owner in ["ada", "bob", "ada", "ada", "bob", "ada"]]
    queued = operator_store.update_status(
        created[2].job_id, transition(created[2].status, Phase.QUEUED), created[2].version
    )
    running = transition(transition(queued.status, Phase.STARTING, robot="sim-1"), Phase.RUNNING)
    last = operator_store.update_status(queued.job_id, running, queued.version)
    # Written by other clients: the cache learns them from its watch.
    wait_for(lambda: cached.get(last.job_id).version == last.version, 10, "the status write")
    wait_for(lambda: same_listings(cached, direct), 10, "the cache to list what the API server lists")

    assert ids(cached.list_jobs()) == [record.job_id for record in reversed(created)]
    for filters in (
        {"owner": "ada"},
        {"owner": "bob", "limit": 1},
        {"phases": [Phase.RUNNING]},
        {"phases": [Phase.PENDING], "owner": "ada"},
        {"robot": "sim-1"},
        {"robot": "sim-2"},
        {"owner": "nobody"},
    ):
        assert same_listings(cached, direct, **filters), filters
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = cached.list_jobs(owner="ada", limit=2, cursor=cursor)
        assert page == direct.list_jobs(owner="ada", limit=2, cursor=cursor)
        pages.append(ids(page))
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [job for page in pages for job in page] == ids(direct.list_jobs(owner="ada"))
    assert len(pages) == 2
    for phases in ([Phase.PENDING], [Phase.RUNNING], [Phase.PENDING, Phase.RUNNING], []):
        assert cached.count_by_owner(phases) == direct.count_by_owner(phases)
    with pytest.raises(ValueError, match="invalid cursor"):
        cached.list_jobs(cursor="not-a-cursor")


def test_a_deleted_raasjob_leaves_the_listing_and_the_counts(
    cached: CachedJobStore, direct: KubernetesJobStore, raas_chart: ControlPlane
) -> None:
    kept, gone = direct.create(spec("ada")), direct.create(spec("ada"))
    wait_for(lambda: len(cached.list_jobs().jobs) == 2, 10, "both jobs in the cache")
    with raas_chart.api_client() as admin:
        client.CustomObjectsApi(admin).delete_namespaced_custom_object(GROUP, VERSION, JOBS, PLURAL, gone.job_id)
    wait_for(lambda: ids(cached.list_jobs()) == [kept.job_id], 10, "the deletion to reach the cache")
    assert cached.count_by_owner([Phase.PENDING]) == {"ada": 1}


def test_ones_own_submission_is_listed_at_once_and_a_stopped_cache_reads_the_api_server(
    cached: CachedJobStore, direct: KubernetesJobStore
) -> None:
    mine = cached.create(spec("ada"))
    assert ids(cached.list_jobs(owner="ada")) == [mine.job_id]  # no wait for the watch event
    cached.stop()
    assert not cached.synced
    other = direct.create(spec("ada"))
    assert ids(cached.list_jobs(owner="ada")) == [other.job_id, mine.job_id]  # read from the API server


class CountingLists:
    """The API client's plain (not watch) RaasJob listings, counted: the requests a listing costs."""

    def __init__(self, objects: client.CustomObjectsApi) -> None:
        self.calls = 0
        original = objects.list_namespaced_custom_object

        def counted(*args: Any, **kwargs: Any) -> Any:
            if not kwargs.get("watch"):
                self.calls += 1
            return original(*args, **kwargs)

        objects.list_namespaced_custom_object = counted  # type: ignore[method-assign]


def test_a_started_platform_lists_without_listing_the_api_server(
    direct: KubernetesJobStore, service_account_client: ServiceAccountClient, tmp_path: Path
) -> None:
    for owner in ["ada", "bob"] * 3:
        direct.create(spec(owner))
    platform = ClusterPlatform(JOBS, FilesystemResultStore(tmp_path), api_client=service_account_client(API))
    lists = CountingLists(platform.custom)
    platform.start()
    try:
        assert platform.running
        after_start = lists.calls
        for _ in range(20):
            assert len(platform.store.list_jobs(owner="ada").jobs) == 3
            assert platform.store.count_by_owner([Phase.PENDING]) == {"ada": 3, "bob": 3}
        submitted = platform.submit(spec("bob"))
        assert platform.store.list_jobs(owner="bob").jobs[0].job_id == submitted.job_id
        assert lists.calls == after_start  # the cache's first list only
    finally:
        platform.stop()
    assert not platform.running
