"""Prometheus metrics of the API: requests by route and status, latency, jobs by phase.

With the local platform behind the app, ``/metrics`` also serves the platform's fleet metrics
(`raas_operator.metrics`) and every robot agent's metrics (`raas_api.local.fleet.AgentsCollector`):
one scrape target for the whole local platform.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(route).observe(seconds)
        self.requests.labels(method, route, str(status)).inc()


class RequestMetrics:
    """ASGI middleware counting every request in `ApiMetrics` by method, route and status.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``app.middleware("http")``) runs
    each request through a task group and memory streams of its own, which cost more than a
    small route. The latency is until the response starts (a stream's headers), as before.
    """

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            observed = True
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - start)

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not observed:
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if not observed:  # failed before answering: the server error handler answers 500
                observe(500)
