"""The scheduler core: properties over random queues and fleets (hypothesis), and examples."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from raas_operator.jobs.model import RobotRequest
from raas_operator.scheduling.core import (
    Quotas,
    RobotView,
    WaitingJob,
    admit,
    schedule,
)

OWNERS = ["ada", "bob", "cy", "dee"]
ROBOT_NAMES = [f"pendulum-{index}" for index in range(6)]


@st.composite
def robots(draw: st.DrawFn) -> list[RobotView]:
    names = draw(st.lists(st.sampled_from(ROBOT_NAMES), min_size=1, max_size=6, unique=True))
    return [
        RobotView(
            name=name,
            type=draw(st.sampled_from(["pendulum", "pendulum", "cartpole"])),
            labels={"lab": draw(st.sampled_from(["north", "south"]))},
            ready=draw(st.booleans()),
            schedulable=draw(st.booleans()) or True,
            free_at_s=draw(st.floats(0, 500)),
        )
        for name in names
    ]


@st.composite
def jobs(draw: st.DrawFn) -> list[WaitingJob]:
    count = draw(st.integers(0, 40))
    result = []
    for index in range(count):
        shape = draw(st.sampled_from(["any", "any", "named", "selector", "type"]))
        request = RobotRequest()
        if shape == "named":
            request = RobotRequest(name=draw(st.sampled_from([*ROBOT_NAMES, "ghost"])))
        elif shape == "selector":
            request = RobotRequest(selector={"lab": draw(st.sampled_from(["north", "south", "east"]))})
        elif shape == "type":
            request = RobotRequest(type=draw(st.sampled_from(["pendulum", "cartpole", "arm"])))
        result.append(
            WaitingJob(
                job_id=f"job-{index}",
                owner=draw(st.sampled_from(OWNERS)),
                submitted_at_s=float(index),
                request=request,
                priority=draw(st.sampled_from([0, 0, 0, 5])),
                expected_duration_s=draw(st.floats(1, 200)),
            )
        )
    return result


running_counts = st.dictionaries(st.sampled_from(OWNERS), st.integers(0, 3))
quotas = st.builds(Quotas, max_running_per_owner=st.integers(1, 3), max_queued_per_owner=st.integers(1, 50))


@settings(max_examples=300, deadline=None)
@given(jobs(), robots(), running_counts, quotas)
def test_no_robot_ever_gets_two_jobs_and_only_ready_matching_robots_get_any(
    waiting: list[WaitingJob], fleet: list[RobotView], running: dict[str, int], limits: Quotas
) -> None:
    decision = schedule(waiting, fleet, running, limits, now_s=0.0)
    robots_used = [assignment.robot for assignment in decision.assignments]
    assert len(robots_used) == len(set(robots_used))
    by_name = {robot.name: robot for robot in fleet}
    by_id = {job.job_id: job for job in waiting}
    for assignment in decision.assignments:
        robot, job = by_name[assignment.robot], by_id[assignment.job_id]
        assert robot.ready
        assert robot.schedulable
        assert job.request.matches(robot.name, robot.type, dict(robot.labels))


@settings(max_examples=300, deadline=None)
@given(jobs(), robots(), running_counts, quotas)
def test_running_quota_is_never_exceeded(
    waiting: list[WaitingJob], fleet: list[RobotView], running: dict[str, int], limits: Quotas
) -> None:
    decision = schedule(waiting, fleet, running, limits, now_s=0.0)
    owner_of = {job.job_id: job.owner for job in waiting}
    started = Counter(owner_of[assignment.job_id] for assignment in decision.assignments)
    for owner, count in started.items():
        assert count == 0 or running.get(owner, 0) + count <= limits.max_running_per_owner


@settings(max_examples=300, deadline=None)
@given(jobs(), robots(), running_counts, quotas)
def test_every_job_is_assigned_rejected_or_queued_exactly_once_and_deterministically(
    waiting: list[WaitingJob], fleet: list[RobotView], running: dict[str, int], limits: Quotas
) -> None:
    decision = schedule(waiting, fleet, running, limits, now_s=0.0)
    seen = (
        [assignment.job_id for assignment in decision.assignments]
        + [rejection.job_id for rejection in decision.rejections]
        + [entry.job_id for entry in decision.queue]
    )
    assert sorted(seen) == sorted(job.job_id for job in waiting)
    assert [entry.position for entry in decision.queue] == list(range(1, len(decision.queue) + 1))
    assert schedule(list(reversed(waiting)), fleet, running, limits, now_s=0.0) == decision


@settings(max_examples=300, deadline=None)
@given(jobs(), robots())
def test_a_job_is_rejected_exactly_when_no_robot_could_ever_run_it(
    waiting: list[WaitingJob], fleet: list[RobotView]
) -> None:
    decision = schedule(waiting, fleet, {}, Quotas(), now_s=0.0)
    rejected = {rejection.job_id for rejection in decision.rejections}
    for job in waiting:
        possible = any(job.request.matches(robot.name, robot.type, dict(robot.labels)) for robot in fleet)
        assert (job.job_id in rejected) == (not possible)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 120), st.integers(1, 4))
def test_fair_share_a_single_job_is_not_starved_by_another_owners_hundred(flood: int, robot_count: int) -> None:
    fleet = [RobotView(name=f"pendulum-{index}") for index in range(robot_count)]
    waiting = [WaitingJob(f"flood-{index}", "ada", float(index)) for index in range(flood)]
    waiting.append(WaitingJob("lonely", "bob", float(flood)))
    decision = schedule(waiting, fleet, {}, Quotas(max_running_per_owner=10), now_s=0.0)
    start_order = [assignment.job_id for assignment in decision.assignments]
    start_order += [entry.job_id for entry in decision.queue]
    # Ada's flood came first, but Bob's one job starts as soon as Ada holds one robot more than
    # Bob: within the first robot_count + 1 starts, whatever the size of the flood.
    assert start_order.index("lonely") <= robot_count


def test_fifo_within_an_owner_and_priority_first() -> None:
    fleet = [RobotView(name="pendulum-0")]
    waiting = [
        WaitingJob("first", "ada", 1.0),
        WaitingJob("second", "ada", 2.0),
        WaitingJob("urgent", "ada", 3.0, priority=10),
    ]
    decision = schedule(waiting, fleet, {}, Quotas(), now_s=0.0)
    assert [assignment.job_id for assignment in decision.assignments] == ["urgent"]
    assert [entry.job_id for entry in decision.queue] == ["first", "second"]


def test_queue_positions_and_start_estimates_follow_expected_durations() -> None:
    fleet = [RobotView(name="pendulum-0", ready=False, free_at_s=130.0)]
    waiting = [
        WaitingJob(f"job-{index}", owner, float(index), expected_duration_s=60.0)
        for index, owner in enumerate(["ada", "ada", "bob"])
    ]
    decision = schedule(waiting, fleet, {}, Quotas(), now_s=100.0)
    assert decision.assignments == ()
    assert [(entry.job_id, entry.position, entry.estimated_start_s) for entry in decision.queue] == [
        ("job-0", 1, 130.0),
        ("job-2", 2, 190.0),  # fair share: bob's first job before ada's second
        ("job-1", 3, 250.0),
    ]


def test_retry_avoids_the_robot_where_the_fault_happened() -> None:
    fleet = [RobotView(name="pendulum-0"), RobotView(name="pendulum-1")]
    job = WaitingJob("retry", "ada", 0.0, excluded_robots=frozenset({"pendulum-0"}))
    decision = schedule([job], fleet, {}, Quotas(), now_s=0.0)
    assert [assignment.robot for assignment in decision.assignments] == ["pendulum-1"]


def test_a_retry_only_the_faulty_robot_can_serve_goes_back_to_it_rather_than_fail() -> None:
    job = WaitingJob("retry", "ada", 0.0, excluded_robots=frozenset({"pendulum-0"}))
    decision = schedule([job], [RobotView(name="pendulum-0")], {}, Quotas(), now_s=0.0)
    assert decision.rejections == ()
    assert [assignment.robot for assignment in decision.assignments] == ["pendulum-0"]


def test_admission_refuses_beyond_the_queued_quota_with_a_clear_message() -> None:
    refused = admit("ada", {"ada": 3}, Quotas(max_queued_per_owner=3))
    assert not refused.admitted
    assert refused.reason == "QuotaExceeded"
    assert "3 queued jobs" in refused.message
    assert admit("bob", {"ada": 3}, Quotas(max_queued_per_owner=3)).admitted
