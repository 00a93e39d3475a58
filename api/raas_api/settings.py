"""Every setting of the RaaS API server, in one place (environment variables ``RAAS_*``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from raas_api.local.platform import Isolation
from raas_api.local.robots import RobotKind

SESSION_OWNER = "local"
"""Owner of the admin token that ``raas serve`` issues for its session: the only caller that may
submit folders from the server's disk (``{"source": {"kind": "local", ...}}``)."""

MIB = 1024**2


class Backend(str, Enum):
    """Where jobs run: the local platform in this process, or the cluster's operator."""

    LOCAL = "local"
    KUBERNETES = "kubernetes"


class ApiSettings(BaseSettings):
    """Server settings; each field can be set as ``RAAS_<FIELD>`` (e.g. ``RAAS_DATA_DIR``).

    Lists are JSON in the environment: ``RAAS_ALLOWED_GIT_HOSTS='["github.com"]'``.

    Folder sources (``{"source": {"kind": "local", "path": ...}}``) are served only to the session
    admin token of ``raas serve`` (owner `SESSION_OWNER`), only in local mode, and only below one of
    `local_source_roots` (symlinks resolved; never the data folder, anything inside it or anything
    containing it). The default is no root at all: users submit folders by uploading them (the
    ``raas`` CLI packs a folder and uploads it), which needs no setting.

    ``/metrics`` serves every route's request counts and the fleet's state. Without
    `metrics_token` it needs no token and is meant for the cluster network only (a Prometheus
    scraping the pod, never exposed through an ingress); with it, scrapers send
    ``Authorization: Bearer <metrics_token>``.

    Every request body is capped as soon as its declared or streamed size passes the cap (413):
    `max_upload_bytes` (plus a little multipart framing) for ``/api/v1/jobs/upload``,
    `max_body_bytes` for everything else. Routes under ``/api/v1`` check the bearer token before
    reading any of the body (401).
    """

    model_config = SettingsConfigDict(env_prefix="RAAS_", extra="ignore")

    backend: Backend = Field(
        default=Backend.LOCAL, description="local: run jobs in this process; kubernetes: as RaasJobs in a cluster."
    )
    kubernetes_namespace: str = Field(default="raas", description="The cluster's job namespace (backend kubernetes).")
    token_namespace: str | None = Field(
        default=None, description="Where a cluster keeps API tokens as Secrets (default: kubernetes_namespace)."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="A bootstrap admin bearer token (any string; the cluster's Secret provides it)."
    )
    data_dir: Path = Field(default=Path("raas-data"), description="Jobs database, tokens, results, uploads.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    robots: int = Field(default=3, ge=0, le=64, description="Simulated robots of the local platform.")
    robot_kind: RobotKind = RobotKind.SIM
    isolation: Isolation = Field(
        default=Isolation.PROCESS, description="Users' programs as limited subprocesses, or in podman containers."
    )
    local_mode: bool = Field(default=True, description="Allow jobs from folders on the server's disk.")
    local_source_roots: list[Path] = Field(
        default=[],
        description="Folders below which the session admin may submit folders of the server's disk "
        "(JSON list in RAAS_LOCAL_SOURCE_ROOTS); empty: no folder sources.",
    )
    allowed_git_hosts: list[str] = Field(
        default=["github.com", "gitlab.com", "codeberg.org", "bitbucket.org"],
        description="Hosts git sources may come from; '*' allows any.",
    )
    allowed_git_schemes: list[str] = Field(default=["https"], description="URL schemes git sources may use.")
    default_time_limit_s: int = Field(default=120, ge=1)
    max_time_limit_s: int = Field(default=600, ge=1)
    max_upload_bytes: int = Field(default=20 * MIB, ge=1024)
    max_body_bytes: int = Field(default=1 * MIB, ge=1024, description="Largest request body except uploads.")
    metrics_token: SecretStr | None = Field(
        default=None, description="When set, /metrics requires 'Authorization: Bearer <it>'."
    )
    max_queued_per_owner: int = Field(default=100, ge=1)
    max_running_per_owner: int = Field(default=2, ge=1)
    submissions_per_minute: float = Field(default=60.0, gt=0, description="Per owner; bursts up to a minute's worth.")
    requests_per_second: float = Field(default=50.0, gt=0, description="Per token, all endpoints; bursts of 2 s.")
    s3_endpoint: str | None = Field(
        default=None, description="host:port of S3/MinIO for results; the data dir if unset."
    )
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "raas-results"
    s3_secure: bool = True
    presigned_result_links: bool = Field(
        default=True,
        description="Result download links straight to S3 (presigned URLs); false: through this API, for an S3 "
        "endpoint users cannot reach (a cluster's MinIO).",
    )
