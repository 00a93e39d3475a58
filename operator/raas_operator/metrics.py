"""Fleet metrics: the queue, finished jobs, robots and spooled results, for Prometheus.

The local platform (``raas serve``) and the Kubernetes operator export these under the same
names, so the Grafana dashboards and the alerts in ``charts/raas/files`` work with either. Each
engine owns one `FleetMetrics` and feeds it through two hooks:

* `FleetMetrics.observe_transition(before, after)` after every job status it wrote (the event
  metrics: queue waits, finished jobs, retries). Only status changes that added phase-history
  entries count, so an update of the queue position is not a second start.
* the fleet's current state (`FleetState`): either a callable given as ``state=`` that is read
  at each scrape (the local platform reads its store and agents), or `observe_state` pushed by
  a loop that looks at the whole fleet anyway (the operator's scheduling round). Ages are
  computed at scrape time. Until a state is known the state metrics are absent, not zero (a
  standby operator exports none, so ``max()`` over replicas takes the active one's).

Metrics (no per-job or per-user labels):

``raas_queue_length`` (gauge)
    Jobs in phase Queued: fetched and waiting for a robot.
``raas_queue_oldest_wait_seconds`` (gauge)
    How long the longest-waiting Queued job has waited since it (last) entered Queued; 0 when
    the queue is empty.
``raas_queue_wait_seconds`` (histogram)
    Time from entering Queued to being scheduled (Starting), observed at scheduling.
``raas_jobs_finished_total{phase, failure_class}`` (counter)
    Jobs that reached a terminal phase (Succeeded, Failed, Cancelled, TimedOut), with the
    failure class (UserError, TimeLimit, ResourceLimit, RobotFault, PlatformFault; ``none`` for
    Succeeded and Cancelled). Every valid pair starts at zero.
``raas_job_retries_total{failure_class}`` (counter)
    Robot or platform faults that sent a job back to Queued for its one retry (the class is
    RobotFault when the robot was excluded from the retry, PlatformFault otherwise).
``raas_robots{phase}`` (gauge)
    Robots in each Robot phase (Ready, Busy, Resetting, Unhealthy, Maintenance, Offline).
``raas_robot_heartbeat_age_seconds{robot}`` (gauge)
    Seconds since the robot's agent last reported (its heartbeat in the cluster, its control
    loop's last boundary on the local platform); absent for a robot never heard from.
``raas_results_pending_files`` (gauge)
    Result files waiting in a spool because the result store was unreachable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from raas_operator.jobs.model import ON_ROBOT_PHASES, FailureClass, JobStatus, Phase
from raas_operator.robots.model import RobotPhase

log = logging.getLogger(__name__)

NO_FAILURE = "none"
"""The ``failure_class`` label of a job that did not fail."""
FINISHED_LABELS: tuple[tuple[str, str], ...] = (
    (Phase.SUCCEEDED.value, NO_FAILURE),
    (Phase.CANCELLED.value, NO_FAILURE),
    (Phase.TIMED_OUT.value, FailureClass.TIME_LIMIT.value),
    *((Phase.FAILED.value, failure.value) for failure in FailureClass if failure is not FailureClass.TIME_LIMIT),
)
"""Every (phase, failure_class) a finished job can have (`jobs.model.fail` sends TimeLimit to TimedOut)."""
RETRIED_CLASSES = tuple(failure.value for failure in FailureClass if failure.retry_allowed)
QUEUE_WAIT_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


@dataclass(frozen=True)
class RobotSample:
    """One robot as the fleet sees it."""

    name: str
    phase: RobotPhase
    last_heartbeat_s: float | None
    """Unix time of its agent's last report; None if never heard from."""


@dataclass(frozen=True)
class FleetState:
    """What the fleet looks like now."""

    queued_since_s: Sequence[float] = ()
    """Unix time at which each Queued job (last) entered Queued (see `queued_since`)."""
    robots: Sequence[RobotSample] = ()
    results_pending_files: int = 0


def queued_since(status: JobStatus, default_s: float) -> float:
    """Unix time at which a job last entered Queued (`default_s` if its history does not say)."""
    for change in reversed(status.history):
        if change.phase is Phase.QUEUED:
            return change.at.timestamp()
    return default_s


class FleetMetrics:
    """The fleet metrics of one engine, in their own registry (or `registry`)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        state: Callable[[], FleetState] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.queue_wait = Histogram(
            "raas_queue_wait_seconds",
            "Time from entering Queued to being scheduled on a robot.",
            buckets=QUEUE_WAIT_BUCKETS_S,
            registry=self.registry,
        )
        self.finished = Counter(
            "raas_jobs_finished",
            "Jobs that reached a terminal phase, by phase and failure class.",
            ["phase", "failure_class"],
            registry=self.registry,
        )
        self.retries = Counter(
            "raas_job_retries",
            "Robot or platform faults that sent a job back to Queued for a retry.",
            ["failure_class"],
            registry=self.registry,
        )
        for phase, failure in FINISHED_LABELS:
            self.finished.labels(phase, failure)
        for failure in RETRIED_CLASSES:
            self.retries.labels(failure)
        self._source = state
        self._pushed: FleetState | None = None
        self._clock = clock
        self.registry.register(_StateCollector(self))

    def observe_transition(self, before: JobStatus | None, after: JobStatus) -> None:
        """Account the phase changes `after` added to `before`'s history (None: a new job)."""
        previous = list(before.history) if before is not None else []
        added = after.history[len(previous) :]
        for change in added:
            last = previous[-1] if previous else None
            if change.phase is Phase.STARTING and last is not None and last.phase is Phase.QUEUED:
                self.queue_wait.observe(max(0.0, (change.at - last.at).total_seconds()))
            elif change.phase.is_terminal:
                failure = after.failure_class.value if after.failure_class is not None else NO_FAILURE
                self.finished.labels(change.phase.value, failure).inc()
            elif change.phase is Phase.QUEUED and last is not None and last.phase in ON_ROBOT_PHASES:
                excluded_more = before is not None and len(after.excluded_robots) > len(before.excluded_robots)
                failure = FailureClass.ROBOT_FAULT if excluded_more else FailureClass.PLATFORM_FAULT
                self.retries.labels(failure.value).inc()
            previous.append(change)

    def observe_state(self, state: FleetState) -> None:
        """Push the fleet's state (used when no ``state=`` source was given)."""
        self._pushed = state

    def current_state(self) -> FleetState | None:
        """The state the next scrape reports: from the source, else the last pushed one."""
        if self._source is None:
            return self._pushed
        try:
            return self._source()
        except Exception:  # a scrape must not fail because the store is busy or closing
            log.exception("cannot read the fleet's state for metrics")
            return None


class _StateCollector(Collector):
    """The state gauges, computed at each scrape."""

    def __init__(self, metrics: FleetMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # built at scrape time; nothing to check for collisions up front

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.metrics.current_state()
        if state is None:
            return
        now = self.metrics._clock()
        yield GaugeMetricFamily(
            "raas_queue_length", "Jobs in phase Queued (waiting for a robot).", value=len(state.queued_since_s)
        )
        oldest = min(state.queued_since_s, default=now)
        yield GaugeMetricFamily(
            "raas_queue_oldest_wait_seconds",
            "How long the longest-waiting Queued job has waited (0 when the queue is empty).",
            value=max(0.0, now - oldest),
        )
        robots = GaugeMetricFamily("raas_robots", "Robots in each phase.", labels=["phase"])
        for phase in RobotPhase:
            robots.add_metric([phase.value], sum(1 for robot in state.robots if robot.phase is phase))
        yield robots
        ages = GaugeMetricFamily(
            "raas_robot_heartbeat_age_seconds", "Seconds since the robot's agent last reported.", labels=["robot"]
        )
        for robot in state.robots:
            if robot.last_heartbeat_s is not None:
                ages.add_metric([robot.name], max(0.0, now - robot.last_heartbeat_s))
        yield ages
        yield GaugeMetricFamily(
            "raas_results_pending_files",
            "Result files waiting in a spool for the result store to come back.",
            value=state.results_pending_files,
        )
