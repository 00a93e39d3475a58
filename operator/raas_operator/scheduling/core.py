"""Deciding which queued job runs on which robot: pure functions, no I/O, no clocks.

Rules, in order:

1. A job only goes to a robot that is Ready (healthy, idle, not in maintenance), that matches
   its request, that runs at the job's control rate (``control_hz``), and that it is not
   excluded from (the robot where a retried job faulted, unless no other robot could ever serve
   it). A robot gets at most one job per decision, and a busy robot none.
2. Higher ``priority`` first.
3. Between owners of equal priority, fair share: the owner with the fewest running jobs goes
   next (ties: whose waiting job is oldest). One owner's 100 jobs cannot starve another's one.
4. Within an owner, first come, first served.
5. Quotas: an owner never has more than ``max_running_per_owner`` jobs running;
   `admit` refuses a submission beyond ``max_queued_per_owner``.
6. A job whose request no robot in the fleet could ever satisfy (including one asking for a
   control rate no matching robot runs at) is rejected with a reason.

`schedule` also predicts, for every job left waiting, its position in the queue and its
estimated start by replaying the same rules over the robots' expected free times.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from raas_operator.jobs.model import DEFAULT_CONTROL_HZ, JobSpec, JobStatus, RobotRequest


def rate_key(control_hz: float) -> float:
    """A control rate as compared between jobs and robots (rounded to a micro-hertz, so 50 and
    50.0000000001 are one rate)."""
    return round(float(control_hz), 6)


@dataclass(frozen=True)
class WaitingJob:
    """A queued job as the scheduler sees it."""

    job_id: str
    owner: str
    submitted_at_s: float
    request: RobotRequest = field(default_factory=RobotRequest)
    priority: int = 0
    expected_duration_s: float = 120.0
    excluded_robots: frozenset[str] = frozenset()
    control_hz: float = DEFAULT_CONTROL_HZ
    """The control rate the job runs at (a robot must support it)."""

    @classmethod
    def of(cls, job_id: str, spec: JobSpec, status: JobStatus, submitted_at_s: float) -> WaitingJob:
        """A queued job as the scheduler sees it (expected to run for its whole time limit)."""
        return cls(
            job_id=job_id,
            owner=spec.owner,
            submitted_at_s=submitted_at_s,
            request=spec.robot,
            priority=spec.priority,
            expected_duration_s=float(spec.time_limit_s),
            excluded_robots=frozenset(status.excluded_robots),
            control_hz=spec.control_hz,
        )


@dataclass(frozen=True)
class RobotView:
    """A robot as the scheduler sees it."""

    name: str
    type: str = "pendulum"
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: bool = True
    """Idle, healthy and not in maintenance."""
    schedulable: bool = True
    """False for robots that will not take jobs soon (maintenance, offline, unhealthy)."""
    free_at_s: float = 0.0
    """When a busy robot is expected to be free (used for start-time estimates)."""
    control_hz: tuple[float, ...] = (DEFAULT_CONTROL_HZ,)
    """Control rates the robot runs jobs at (what its agent advertises)."""

    def runs_at(self, control_hz: float) -> bool:
        """Whether the robot runs jobs at `control_hz`."""
        wanted = rate_key(control_hz)
        return any(rate_key(hz) == wanted for hz in self.control_hz)

    def serves(self, job: WaitingJob) -> bool:
        """Whether this robot could run `job`: not excluded, matching its request and its rate."""
        return (
            self.name not in job.excluded_robots
            and job.request.matches(self.name, self.type, dict(self.labels))
            and self.runs_at(job.control_hz)
        )


@dataclass(frozen=True)
class Quotas:
    """Per-owner limits."""

    max_running_per_owner: int = 2
    max_queued_per_owner: int = 100


@dataclass(frozen=True)
class Assignment:
    job_id: str
    robot: str


@dataclass(frozen=True)
class Rejection:
    job_id: str
    reason: str
    message: str


@dataclass(frozen=True)
class QueueEstimate:
    job_id: str
    position: int
    """1 = next to start."""
    estimated_start_s: float | None
    """None when no robot that could run it is expected to be free."""


@dataclass(frozen=True)
class Decision:
    """What to do now, and what the queue looks like afterwards."""

    assignments: tuple[Assignment, ...]
    rejections: tuple[Rejection, ...]
    queue: tuple[QueueEstimate, ...]


@dataclass(frozen=True)
class Admission:
    admitted: bool
    reason: str = ""
    message: str = ""


def admit(owner: str, queued_by_owner: Mapping[str, int], quotas: Quotas) -> Admission:
    """Whether a new job of `owner` may join the queue under the queued-jobs quota."""
    queued = queued_by_owner.get(owner, 0)
    if queued >= quotas.max_queued_per_owner:
        return Admission(
            False,
            "QuotaExceeded",
            f"{owner} already has {queued} queued jobs (limit {quotas.max_queued_per_owner}); "
            "wait for some to finish or cancel them",
        )
    return Admission(True)


def unsatisfiable_reason(job: WaitingJob, fleet: Sequence[RobotView]) -> str | None:
    """Why no robot of the fleet could ever run `job`, or None if one could."""
    matching = [
        robot
        for robot in fleet
        if robot.name not in job.excluded_robots and job.request.matches(robot.name, robot.type, dict(robot.labels))
    ]
    if any(robot.serves(job) for robot in matching):
        return None
    request = job.request
    if matching:
        offered = sorted({rate_key(hz) for robot in matching for hz in robot.control_hz})
        return (
            f"no robot matching the request runs at {job.control_hz:g} Hz; "
            f"ask for one of {', '.join(f'{hz:g}' for hz in offered)} Hz"
        )
    if request.name is not None:
        return f"there is no robot named {request.name!r} of type {request.type!r} matching the request"
    if request.selector:
        return f"no {request.type} robot carries the labels {dict(request.selector)}"
    return f"there is no robot of type {request.type!r}"


def schedule(
    waiting: Sequence[WaitingJob],
    robots: Sequence[RobotView],
    running_by_owner: Mapping[str, int],
    quotas: Quotas,
    now_s: float,
) -> Decision:
    """Assign waiting jobs to Ready robots by the module's rules, and estimate the rest."""
    rejections: list[Rejection] = []
    candidates: list[WaitingJob] = []
    fleet_index = _FleetIndex(robots)
    for submitted in sorted(waiting, key=lambda job: (job.submitted_at_s, job.job_id)):
        job = submitted
        reason = fleet_index.unsatisfiable_reason(job)
        if reason is not None and job.excluded_robots:
            # A retry that only the faulty robot could serve goes back to it rather than fail.
            unrestricted = replace(job, excluded_robots=frozenset())
            if fleet_index.unsatisfiable_reason(unrestricted) is None:
                job, reason = unrestricted, None
        if reason is None:
            candidates.append(job)
        else:
            rejections.append(Rejection(job.job_id, "NoMatchingRobot", reason))

    running = defaultdict(int, running_by_owner)
    free_now = {robot.name: robot for robot in robots if robot.ready and robot.schedulable}
    assignments = _assign(candidates, free_now, running, quotas)
    assigned = {assignment.job_id for assignment in assignments}
    left = [job for job in candidates if job.job_id not in assigned]
    queue = _estimate_queue(left, robots, assignments, candidates, running, now_s)
    return Decision(tuple(assignments), tuple(rejections), queue)


def _assign(
    jobs: Sequence[WaitingJob], free_now: dict[str, RobotView], running: dict[str, int], quotas: Quotas
) -> list[Assignment]:
    """Greedy fair-share assignment: the owner first in line places its first placeable job."""
    by_owner = _queues_by_owner(jobs)
    heap = [_owner_key(owner, queue, running) for owner, queue in by_owner.items()]
    heapq.heapify(heap)
    assignments: list[Assignment] = []
    while heap and free_now:
        *_, owner = heapq.heappop(heap)
        if running[owner] >= quotas.max_running_per_owner:
            continue
        queue = by_owner[owner]
        for index, job in enumerate(queue):
            robot = _first_match(job, free_now.values())
            if robot is not None:
                del queue[index]
                del free_now[robot.name]
                running[owner] += 1
                assignments.append(Assignment(job.job_id, robot.name))
                if queue:
                    heapq.heappush(heap, _owner_key(owner, queue, running))
                break
    return assignments


def _queues_by_owner(jobs: Iterable[WaitingJob]) -> dict[str, deque[WaitingJob]]:
    by_owner: dict[str, deque[WaitingJob]] = defaultdict(deque)
    for job in sorted(jobs, key=lambda job: (-job.priority, job.submitted_at_s, job.job_id)):
        by_owner[job.owner].append(job)
    return by_owner


def _fair_share_order(jobs: Iterable[WaitingJob], running: Mapping[str, int]) -> list[WaitingJob]:
    """Jobs in the order the rules would start them, one robot at a time (quotas ignored)."""
    by_owner = _queues_by_owner(jobs)
    started = defaultdict(int, running)
    heap = [_owner_key(owner, queue, started) for owner, queue in by_owner.items()]
    heapq.heapify(heap)
    order: list[WaitingJob] = []
    while heap:
        *_, owner = heapq.heappop(heap)
        queue = by_owner[owner]
        order.append(queue.popleft())
        started[owner] += 1
        if queue:
            heapq.heappush(heap, _owner_key(owner, queue, started))
    return order


def _owner_key(owner: str, queue: deque[WaitingJob], started: Mapping[str, int]) -> tuple[int, int, float, str]:
    head = queue[0]
    return (-head.priority, started[owner], head.submitted_at_s, owner)


def _first_match(job: WaitingJob, robots: Iterable[RobotView]) -> RobotView | None:
    return next((robot for robot in robots if robot.serves(job)), None)


class _FleetIndex:
    """Answers "could any robot ever run this?" quickly for the common request shapes."""

    def __init__(self, robots: Sequence[RobotView]) -> None:
        self.robots = robots
        self.types_and_rates = {(robot.type, rate_key(hz)) for robot in robots for hz in robot.control_hz}
        self.names = {robot.name: robot for robot in robots}

    def unsatisfiable_reason(self, job: WaitingJob) -> str | None:
        request = job.request
        plain = not request.selector and request.name is None and not job.excluded_robots
        if plain and (request.type, rate_key(job.control_hz)) in self.types_and_rates:
            return None
        if request.name is not None and not request.selector and request.name not in job.excluded_robots:
            robot = self.names.get(request.name)
            if robot is not None and robot.serves(job):
                return None
        return unsatisfiable_reason(job, self.robots)


def _estimate_queue(
    left: Sequence[WaitingJob],
    robots: Sequence[RobotView],
    assignments: Sequence[Assignment],
    candidates: Sequence[WaitingJob],
    running: Mapping[str, int],
    now_s: float,
) -> tuple[QueueEstimate, ...]:
    """Replay the rules over expected free times: position and start estimate for each job."""
    durations = {job.job_id: job.expected_duration_s for job in candidates}
    bookings = _RobotBookings([robot for robot in robots if robot.schedulable], now_s)
    for assignment in assignments:
        bookings.book(assignment.robot, now_s + durations[assignment.job_id])
    return tuple(
        QueueEstimate(job.job_id, position, bookings.claim_earliest(job))
        for position, job in enumerate(_fair_share_order(left, running), start=1)
    )


class _RobotBookings:
    """Expected free time of each robot, with the earliest-free robot of a type at hand.

    Heaps per robot type hold (free time, name); an entry is stale once the robot's free time
    changed, and is skipped when met (lazy deletion keeps every booking O(log n)).
    """

    def __init__(self, robots: Sequence[RobotView], now_s: float) -> None:
        self.robots = {robot.name: robot for robot in robots}
        self.free_at = {robot.name: max(robot.free_at_s, now_s) for robot in robots}
        self.heaps: dict[tuple[str, float], list[tuple[float, str]]] = defaultdict(list)
        """Per (robot type, control rate): every robot of that type running at that rate."""
        for name, time in self.free_at.items():
            robot = self.robots[name]
            for hz in {rate_key(hz) for hz in robot.control_hz}:
                self.heaps[(robot.type, hz)].append((time, name))
        for heap in self.heaps.values():
            heapq.heapify(heap)
        self.eligible_cache: dict[tuple[object, ...], tuple[str, ...]] = {}

    def book(self, name: str, free_again_at_s: float) -> None:
        self.free_at[name] = free_again_at_s
        robot = self.robots[name]
        for hz in {rate_key(hz) for hz in robot.control_hz}:
            heapq.heappush(self.heaps[(robot.type, hz)], (free_again_at_s, name))

    def claim_earliest(self, job: WaitingJob) -> float | None:
        """Book the earliest-free robot that can run `job`; returns the booked start time."""
        request = job.request
        if request.name is None and not request.selector and not job.excluded_robots:
            heap = self.heaps.get((request.type, rate_key(job.control_hz)))
            while heap:
                start, name = heapq.heappop(heap)
                if self.free_at[name] == start:
                    self.book(name, start + job.expected_duration_s)
                    return start
            return None
        eligible = self._eligible(job)
        if not eligible:
            return None
        start, name = min((self.free_at[name], name) for name in eligible)
        self.book(name, start + job.expected_duration_s)
        return start

    def _eligible(self, job: WaitingJob) -> tuple[str, ...]:
        request = job.request
        key = (
            request.name,
            request.type,
            tuple(sorted(request.selector.items())),
            job.excluded_robots,
            rate_key(job.control_hz),
        )
        cached = self.eligible_cache.get(key)
        if cached is None:
            candidates = [self.robots[request.name]] if request.name in self.robots else []
            if request.name is None:
                candidates = list(self.robots.values())
            cached = tuple(robot.name for robot in candidates if robot.serves(job))
            self.eligible_cache[key] = cached
        return cached
