"""The RaaS API application: ``create_app(settings)`` serves a platform over HTTP.

Routes: ``/api/v1/jobs…`` and ``/api/v1/robots…`` (bearer tokens), ``/api/v1/whoami``,
``/healthz`` (the process is up), ``/readyz`` (it can serve: store readable, dispatcher running),
``/metrics`` (Prometheus; with ``settings.metrics_token``, only for that bearer token),
``/openapi.json``, and the web page at ``/`` with its files under ``/static``. Every error body is
``{"detail": "<one sentence>"}`` (`errors.ErrorBody`), documented on every route that can send it.
`guard.RequestGuard` checks tokens before bodies are read and caps every body.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from raas_api.auth.tokens import Tokens, TokenStore
from raas_api.http import routes_jobs, routes_robots
from raas_api.http.deps import AppState, Caller
from raas_api.http.errors import AUTHENTICATED, bounded, error_responses
from raas_api.http.guard import RequestGuard
from raas_api.http.metrics import ApiMetrics, RequestMetrics
from raas_api.http.ratelimit import RateLimiter
from raas_api.http.schemas import Identity
from raas_api.local.platform import LocalPlatform, PlatformConfig
from raas_api.local.results import S3Settings
from raas_api.platform import Platform
from raas_api.settings import ApiSettings, Backend
from raas_operator.jobs.model import Phase
from raas_operator.scheduling.core import Quotas

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"


class Readiness(BaseModel):
    """``/readyz``: ready, or what keeps the server from serving."""

    status: str
    problems: list[str]


def platform_config(settings: ApiSettings) -> PlatformConfig:
    """The local platform's configuration from the server's settings."""
    s3 = None
    if settings.s3_endpoint:
        s3 = S3Settings(
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            bucket=settings.s3_bucket,
            secure=settings.s3_secure,
        )
    return PlatformConfig(
        data_dir=settings.data_dir.resolve(),
        robots=settings.robots,
        robot_kind=settings.robot_kind,
        isolation=settings.isolation,
        quotas=Quotas(
            max_running_per_owner=settings.max_running_per_owner, max_queued_per_owner=settings.max_queued_per_owner
        ),
        max_time_limit_s=settings.max_time_limit_s,
        s3=s3,
    )


def make_platform(settings: ApiSettings) -> Platform:
    """The platform `settings` ask for: the local one, or a cluster's (which needs S3 for results)."""
    if settings.backend is Backend.LOCAL:
        return LocalPlatform(platform_config(settings))
    if not settings.s3_endpoint:
        raise ValueError("the kubernetes backend keeps results in S3/MinIO: set RAAS_S3_ENDPOINT")
    from gym_raas.results.store import S3ResultStore
    from raas_api.cluster.client import kubernetes_api_client
    from raas_api.cluster.platform import ClusterPlatform

    results = S3ResultStore(
        settings.s3_endpoint,
        settings.s3_access_key,
        settings.s3_secret_key,
        settings.s3_bucket,
        secure=settings.s3_secure,
    )
    return ClusterPlatform(
        settings.kubernetes_namespace,
        results,
        api_client=kubernetes_api_client(),
        quotas=Quotas(settings.max_running_per_owner, settings.max_queued_per_owner),
        max_time_limit_s=settings.max_time_limit_s,
    )


def token_store(settings: ApiSettings) -> Tokens:
    """The API's tokens, with the bootstrap admin token if one is set: in the data folder, or on a
    cluster as Secrets (`settings.token_namespace`), so that they outlive the API's pods."""
    bootstrap = settings.admin_token.get_secret_value() if settings.admin_token else None
    if settings.backend is Backend.LOCAL:
        return TokenStore(settings.data_dir / "tokens.db", bootstrap_admin_token=bootstrap)
    from kubernetes import client

    from raas_api.auth.kubernetes_tokens import SecretTokenStore
    from raas_api.cluster.client import kubernetes_api_client

    namespace = settings.token_namespace or settings.kubernetes_namespace
    return SecretTokenStore(namespace, client.CoreV1Api(kubernetes_api_client()), bootstrap_admin_token=bootstrap)


def create_app(settings: ApiSettings, platform: Platform | None = None, tokens: Tokens | None = None) -> FastAPI:
    """The app. Without `platform`/`tokens` it makes its own from `settings`, started and stopped
    with the app's lifespan; given ones are left to their owner."""
    owns_platform = platform is None
    platform = platform or make_platform(settings)
    owns_tokens = tokens is None
    tokens = tokens or token_store(settings)
    state = AppState(
        platform=platform,
        tokens=tokens,
        settings=settings,
        request_limiter=RateLimiter(settings.requests_per_second, settings.requests_per_second * 2),
        submission_limiter=RateLimiter(settings.submissions_per_minute / 60, settings.submissions_per_minute),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if owns_platform:
            platform.start()
        try:
            yield
        finally:
            if owns_platform:
                platform.stop()
            if owns_tokens:
                tokens.close()

    app = FastAPI(
        title="RaaS — Reality as a Service",
        version="1",
        description="Run controllers written for the Gymnasium environment RaasPendulum-v0 on real pendulum robots.",
        lifespan=lifespan,
    )
    app.state.raas = state
    metrics = ApiMetrics(platform)
    # Added first, so innermost of the two: the metrics count the guard's refusals too.
    app.add_middleware(RequestGuard, tokens=tokens, settings=settings)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.include_router(routes_jobs.router)
    app.include_router(routes_robots.router)
    _add_error_handlers(app)

    @app.get("/api/v1/whoami", tags=["auth"], summary="Who the token speaks for", responses=AUTHENTICATED)
    def whoami(who: Caller) -> Identity:
        return Identity(owner=who.owner, role=who.role.value)

    @app.get("/healthz", tags=["system"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["system"],
        summary="The server can serve requests",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready: `problems` says why."}},
    )
    def readyz() -> JSONResponse:
        problems = []
        try:
            platform.store.count_by_owner([Phase.QUEUED])
        except Exception as error:  # any failure of the store means not ready
            problems.append(f"job store: {error}")
        if not platform.running:
            problems.append(
                "the platform is not running (locally its dispatcher; on a cluster its job cache, until its first list)"
            )
        code = status.HTTP_503_SERVICE_UNAVAILABLE if problems else status.HTTP_200_OK
        return JSONResponse({"status": "not ready" if problems else "ready", "problems": problems}, code)

    @app.get(
        "/metrics",
        tags=["system"],
        summary="Prometheus metrics (with RAAS_METRICS_TOKEN set, for that bearer token only)",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format.",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            },
            **error_responses(401),
        },
    )
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def web_page() -> Response:
        index = STATIC_DIR / "index.html"
        if not index.exists():
            return JSONResponse({"detail": "the web page is not installed"}, status.HTTP_404_NOT_FOUND)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first: dict[str, Any] = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        detail = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))
        return JSONResponse(
            {
                "detail": bounded(detail),
                "errors": [{"loc": list(p.get("loc", ())), "msg": bounded(str(p.get("msg")))} for p in problems[:20]],
            },
            status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    @app.exception_handler(StarletteHTTPException)
    async def refused(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": bounded(str(error.detail))}, error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(
            {"detail": f"internal error: {type(error).__name__}"}, status.HTTP_500_INTERNAL_SERVER_ERROR
        )
