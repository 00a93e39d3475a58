"""The local platform's side of the metrics: its fleet state, and its agents' metrics as one target.

`fleet_state` reads what `raas_operator.metrics.FleetMetrics` reports at each scrape from the job
store, the agents and the result store. `AgentsCollector` serves every agent's own registry
through the API's ``/metrics`` (each robot's series carry its ``robot`` label), merging the
families that several agents share: one scrape target for the whole local platform, where the
cluster scrapes each agent on its node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gym_raas.results.layout import RESULTS_ROOT
from gym_raas.results.spool import SpoolingResultStore
from gym_raas.results.store import ResultStore
from raas_api.stores.base import JobStore
from raas_node.agent.agent import AgentState, RobotAgent
from raas_operator.jobs.model import Phase
from raas_operator.metrics import FleetState, RobotSample, queued_since
from raas_operator.robots.model import DEFAULT_HEARTBEAT_TIMEOUT, RobotPhase

_PHASE_OF_STATE = {
    AgentState.BUSY: RobotPhase.BUSY,
    AgentState.RESETTING: RobotPhase.RESETTING,
    AgentState.FAULT: RobotPhase.UNHEALTHY,
    AgentState.MAINTENANCE: RobotPhase.MAINTENANCE,
}


def fleet_state(
    store: JobStore,
    agents: Mapping[str, RobotAgent],
    booked: Iterable[str],
    results: ResultStore,
    now_s: float,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
) -> FleetState:
    """The queue (every Queued job), the robots as the cluster would phase them, spooled result files.

    A robot is Busy from its booking (`booked`) on, Ready when idle and healthy, Unhealthy when
    idle but not healthy or in fault, and Offline when its control loop stopped ticking for
    `heartbeat_timeout` (as the operator marks a robot whose heartbeat is stale).
    """
    queued: list[float] = []
    cursor: str | None = None
    while True:
        page = store.list_jobs(phases=[Phase.QUEUED], limit=500, cursor=cursor)
        queued.extend(queued_since(record.status, record.created_at.timestamp()) for record in page.jobs)
        cursor = page.next_cursor
        if cursor is None:
            break
    booked = set(booked)
    robots = []
    for name, agent in agents.items():
        beat = agent.metrics.last_boundary_s
        if beat is None or now_s - beat > heartbeat_timeout.total_seconds():
            phase = RobotPhase.OFFLINE
        elif agent.state is not AgentState.IDLE:
            phase = _PHASE_OF_STATE[agent.state]
        elif name in booked:
            phase = RobotPhase.BUSY
        else:
            phase = RobotPhase.READY if agent.health().ready else RobotPhase.UNHEALTHY
        robots.append(RobotSample(name, phase, beat))
    pending = len(results.pending_keys(f"{RESULTS_ROOT}/")) if isinstance(results, SpoolingResultStore) else 0
    return FleetState(queued_since_s=queued, robots=robots, results_pending_files=pending)


class AgentsCollector(Collector):
    """Every agent's metrics as one set of families (a family shared by agents is merged)."""

    def __init__(self, registries: Callable[[], Iterable[CollectorRegistry]]) -> None:
        self.registries = registries

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the agents exist only once the platform has started

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for registry in self.registries():
            for family in registry.collect():
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                into.samples.extend(family.samples)
        yield from merged.values()
