"""The operator's engine parts on their own: the work queue, the informer cache, the scheduler's
position-writing rule and the priority of replicas (the whole engine runs end to end in
test_operator_end_to_end.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pydantic import ValidationError

from raas_operator.runtime.cache import ClusterCache
from raas_operator.runtime.main import AUTO_PRIORITY_RANGE, auto_priority, build_parser
from raas_operator.runtime.scheduler import EXACT_POSITIONS, POSITION_REFRESH_S, position_worth_writing
from raas_operator.runtime.settings import OperatorSettings
from raas_operator.runtime.workqueue import WorkQueue


def wait_until(condition: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


class Recorder:
    """A handler that records calls, can block on a name and can fail a number of times."""

    def __init__(self, block: str | None = None, failures: int = 0) -> None:
        self.calls: list[str] = []
        self.active: set[str] = set()
        self.overlaps = 0
        self.release = threading.Event()
        self.block = block
        self.failures = failures
        self._lock = threading.Lock()

    def __call__(self, name: str) -> None:
        with self._lock:
            if name in self.active:
                self.overlaps += 1
            self.active.add(name)
            self.calls.append(name)
        try:
            if name == self.block:
                self.release.wait(5)
            if self.failures > 0:
                self.failures -= 1
                raise RuntimeError("the API server said no")
        finally:
            with self._lock:
                self.active.discard(name)


def test_a_name_added_while_it_waits_is_handled_once() -> None:
    handler = Recorder(block="first")
    queue = WorkQueue(handler, workers=1).start()
    try:
        queue.add("first")
        assert wait_until(lambda: handler.calls == ["first"])
        for _ in range(5):
            queue.add("job-a")
        handler.release.set()
        assert wait_until(lambda: queue.handled == 2)
        time.sleep(0.05)
        assert handler.calls == ["first", "job-a"]
    finally:
        queue.stop()


def test_a_name_added_while_it_is_handled_is_handled_again_afterwards_never_at_once() -> None:
    handler = Recorder(block="job-a")
    queue = WorkQueue(handler, workers=3).start()
    try:
        queue.add("job-a")
        assert wait_until(lambda: handler.calls == ["job-a"])
        queue.add("job-a")  # its object changed during the look
        queue.add("job-a")
        time.sleep(0.05)
        assert handler.calls == ["job-a"]  # not by a second worker meanwhile
        handler.release.set()
        assert wait_until(lambda: queue.handled == 2)
        assert handler.calls == ["job-a", "job-a"]
        assert handler.overlaps == 0
    finally:
        queue.stop()


def test_a_failed_look_is_retried_after_a_back_off() -> None:
    handler = Recorder(failures=2)
    queue = WorkQueue(handler, workers=1).start()
    try:
        started = time.monotonic()
        queue.add("job-a")
        assert wait_until(lambda: handler.calls == ["job-a"] * 3, timeout_s=5)
        assert time.monotonic() - started >= 0.5 + 1.0  # 0.5 s, then 1 s
    finally:
        queue.stop()


def test_an_urgent_name_goes_ahead_of_the_waiting_ones() -> None:
    handler = Recorder(block="first")
    queue = WorkQueue(handler, workers=1, urgent_workers=0).start()
    try:
        queue.add("first")
        assert wait_until(lambda: handler.calls == ["first"])
        for name in ("queued-1", "queued-2", "starting"):
            queue.add(name)
        queue.add("starting", urgent=True)  # already waiting: moved ahead
        queue.add("running", urgent=True)
        handler.release.set()
        assert wait_until(lambda: queue.handled == 5)
        assert handler.calls == ["first", "starting", "running", "queued-1", "queued-2"]  # urgent ones in order
    finally:
        queue.stop()


def test_an_urgent_name_is_handled_while_every_ordinary_worker_is_busy() -> None:
    handler = Recorder(block="slow-look")
    queue = WorkQueue(handler, workers=1, urgent_workers=1).start()
    try:
        queue.add("slow-look")  # e.g. reading a finished job's results from a slow store
        assert wait_until(lambda: handler.calls == ["slow-look"])
        queue.add("routine")
        queue.add("next-on-robot", urgent=True)
        assert wait_until(lambda: "next-on-robot" in handler.calls)  # the urgent worker took it
        assert "routine" not in handler.calls  # the urgent worker takes urgent names only
        handler.release.set()
        assert wait_until(lambda: queue.handled == 3)
    finally:
        queue.stop()


def test_a_job_just_given_a_robot_goes_ahead_of_the_urgent_ones() -> None:
    handler = Recorder(block="first")
    queue = WorkQueue(handler, workers=1, urgent_workers=0).start()
    try:
        queue.add("first")
        assert wait_until(lambda: handler.calls == ["first"])
        queue.add("routine")
        queue.add("collecting-1", urgent=True)  # other robots' jobs collecting their results
        queue.add("collecting-2", urgent=True)
        queue.add("started", first=True)  # its pod is what a robot waits for
        queue.add("started", urgent=True)  # (a later, plainer add does not move it back)
        queue.add("collecting-2", first=True)  # already urgent: moved to the head
        handler.release.set()
        assert wait_until(lambda: queue.handled == 5)
        assert handler.calls == ["first", "collecting-2", "started", "collecting-1", "routine"]
    finally:
        queue.stop()


def test_a_name_added_urgently_while_it_is_handled_is_looked_at_again_as_a_routine_look() -> None:
    handler = Recorder(block="on-robot")
    queue = WorkQueue(handler, workers=1, urgent_workers=0).start()
    try:
        queue.add("on-robot", first=True)
        assert wait_until(lambda: handler.calls == ["on-robot"])
        queue.add("routine-1")
        queue.add("on-robot", urgent=True)  # e.g. the look's own status write, back through the watch
        queue.add("routine-2")
        handler.release.set()
        assert wait_until(lambda: queue.handled == 4)
        assert handler.calls == ["on-robot", "routine-1", "routine-2", "on-robot"]
        assert handler.overlaps == 0
    finally:
        queue.stop()


def job(name: str, version: int, phase: str = "Queued", robot: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": str(version)},
        "spec": {"owner": "ada", "source": {"kind": "git", "url": "https://github.com/a/b.git"}},
        "status": {"phase": phase, "robot": robot},
    }


def pod(name: str, job_name: str, version: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(version), "labels": {"raas.dev/job": job_name}}}


def test_the_cache_never_goes_back_to_an_older_version() -> None:
    cache = ClusterCache()
    cache.put_job(job("job-a", 7, "Running"))
    cache.put_job(job("job-a", 5, "Queued"))  # a late watch event of an older version
    assert cache.job("job-a")["status"]["phase"] == "Running"  # type: ignore[index]
    cache.put_job(job("job-a", 9, "Uploading"))
    assert cache.job("job-a")["status"]["phase"] == "Uploading"  # type: ignore[index]
    spec, status = cache.parsed(cache.job("job-a"))  # type: ignore[arg-type]
    assert (spec.owner, status.phase.value) == ("ada", "Uploading")


def test_the_cache_groups_pods_by_their_job_and_finds_a_robots_jobs() -> None:
    cache = ClusterCache()
    assert cache.put_pod(pod("job-a-fetch", "job-a", 3)) == "job-a"
    assert cache.put_pod(pod("job-a-1", "job-a", 4)) == "job-a"
    assert cache.put_pod({"metadata": {"name": "unrelated", "resourceVersion": "1"}}) is None
    assert sorted(view.name for view in cache.pods_of("job-a")) == ["job-a-1", "job-a-fetch"]
    cache.drop_pod(pod("job-a-fetch", "job-a", 5))
    assert [view.name for view in cache.pods_of("job-a")] == ["job-a-1"]
    cache.put_job(job("job-a", 2, "Running", robot="pendulum-1"))
    cache.put_job(job("job-b", 2, "Queued"))
    assert cache.jobs_on("pendulum-1") == ["job-a"]


def robot(name: str, version: int, *, booked: str | None = None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    annotations = {"raas.dev/booked-job": booked} if booked else {}
    return {
        "metadata": {"name": name, "resourceVersion": str(version), "annotations": annotations},
        "spec": spec if spec is not None else {"node_name": f"pi-{name}"},
        "status": {"phase": "Ready"},
    }


def test_the_cache_keeps_a_robots_newest_version() -> None:
    cache = ClusterCache()
    kept = cache.put_robot(robot("pendulum-1", 8, booked="job-a"))  # as the booking patch returned it
    assert cache.put_robot(robot("pendulum-1", 6)) == kept  # a late heartbeat event from before it
    assert cache.robot("pendulum-1").entry.booked_job == "job-a"  # type: ignore[union-attr]


def test_a_robot_list_replaces_the_cached_fleet_but_not_robots_newer_than_the_list() -> None:
    cache = ClusterCache()
    cache.put_robot(robot("gone", 3))  # deleted while no watch was looking
    cache.put_robot(robot("created-after-the-list", 12))
    cache.put_robot(robot("kept", 9, booked="job-a"))
    listed = [robot("kept", 7), robot("new", 5), robot("unreadable", 6, spec={"node_name": 7, "colour": "red"})]
    cache.replace_robots(listed, "10")
    assert sorted(cached.entry.robot.name for cached in cache.robots()) == ["created-after-the-list", "kept", "new"]
    assert cache.robot("kept").entry.booked_job == "job-a"  # type: ignore[union-attr]  # the newer version stays
    cache.replace_robots([], None)  # a list without a version: only what it holds is known to exist
    assert cache.robots() == []


def test_queue_positions_are_written_at_the_head_or_when_they_moved_a_tenth_or_went_stale() -> None:
    assert position_worth_writing(None, 300, 0.0)  # never written
    assert not position_worth_writing(12, 12, 100.0)  # unchanged
    assert position_worth_writing(EXACT_POSITIONS + 1, EXACT_POSITIONS, 0.0)  # near the head: exact
    assert not position_worth_writing(300, 290, 1.0)  # moved by 1/30
    assert position_worth_writing(300, 270, 1.0)  # moved by a tenth
    assert position_worth_writing(300, 299, POSITION_REFRESH_S)  # stale


def test_replicas_get_distinct_stable_priorities() -> None:
    first, second = auto_priority("raas-operator-5d9c-abcde"), auto_priority("raas-operator-5d9c-fghij")
    assert first != second
    assert first == auto_priority("raas-operator-5d9c-abcde")
    assert 1 <= first <= AUTO_PRIORITY_RANGE
    assert build_parser().parse_args(["--priority", "7"]).priority == 7


def test_priority_auto_reads_the_pod_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "raas-operator-1")
    assert build_parser().parse_args(["--priority", "auto"]).priority == auto_priority("raas-operator-1")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--priority", "high"])


def test_the_fetch_pods_pip_settings_come_as_json_and_only_pips_index_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAAS_OPERATOR_SESSION_KEY", "k")
    monkeypatch.setenv("RAAS_OPERATOR_S3_ENDPOINT", "minio:9000")
    monkeypatch.setenv("RAAS_OPERATOR_FETCH_PIP_ENVIRONMENT", "{}")  # as the chart renders the default
    assert OperatorSettings().fetch_pip_environment == {}  # type: ignore[call-arg]
    mirror = '{"PIP_INDEX_URL": "https://mirror.lab/simple", "PIP_TRUSTED_HOST": "mirror.lab"}'
    monkeypatch.setenv("RAAS_OPERATOR_FETCH_PIP_ENVIRONMENT", mirror)
    settings = OperatorSettings()  # type: ignore[call-arg]
    assert settings.fetch_pip_environment["PIP_INDEX_URL"] == "https://mirror.lab/simple"
    assert settings.wheel_platforms.split(",") == ["manylinux_2_36_aarch64", "manylinux_2_36_x86_64"]
    monkeypatch.setenv("RAAS_OPERATOR_FETCH_PIP_ENVIRONMENT", '{"LD_PRELOAD": "/tmp/evil.so"}')
    with pytest.raises(ValidationError, match="LD_PRELOAD"):
        OperatorSettings()  # type: ignore[call-arg]
