"""Prometheus metrics of the API: requests by route and status, latency, jobs by phase.

With the local platform behind the app, ``/metrics`` also serves the platform's fleet metrics
(`raas_operator.metrics`) and every robot agent's metrics (`raas_api.local.fleet.AgentsCollector`):
one scrape target for the whole local platform.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from raas_api.local.fleet import AgentsCollector
from raas_api.local.platform import LocalPlatform
from raas_api.platform import Platform
from raas_operator.jobs.model import Phase


class _JobsByPhase(Collector):
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("raas_jobs", "Jobs in each phase", labels=["phase"])
        for phase in Phase:
            count = sum(self.platform.store.count_by_owner([phase]).values())
            family.add_metric([phase.value], count)
        yield family


class ApiMetrics:
    """One registry per app (so that several apps in one process do not collide)."""

    def __init__(self, platform: Platform) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "raas_api_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "raas_api_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.registry.register(_JobsByPhase(platform))
        if isinstance(platform, LocalPlatform):  # in a cluster, the operator and the agents export these
            local = platform
            self.registry.register(local.fleet.registry)
            self.registry.register(AgentsCollector(lambda: [agent.metrics.registry for agent in local.agents.values()]))

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        self.latency.labels(name).observe(time.perf_counter() - start)
        self.requests.labels(request.method, name, str(response.status_code)).inc()
        return response
