"""The operator's settings, from ``RAAS_OPERATOR_*`` environment variables (set by the Helm chart)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

WHEEL_PLATFORMS = ("manylinux_2_36_aarch64", "manylinux_2_36_x86_64")
"""pip platform tags of Raspberry Pi (aarch64) and ordinary (x86_64) nodes running the job image
(Debian bookworm: glibc 2.36; pip implies the older manylinux tags)."""
PIP_SETTINGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_TRUSTED_HOST")
"""pip's variables a fetch pod passes to pip (raas_node.runner.requirements.PIP_SETTINGS)."""


class OperatorSettings(BaseSettings):
    """Everything the operator is told at startup."""

    model_config = SettingsConfigDict(env_prefix="RAAS_OPERATOR_", extra="ignore")

    namespace: str = Field(default="raas", description="Where RaasJobs, their pods and Secrets live.")
    image: str = Field(default="localhost/raas-job:latest", description="The job image user code runs in.")
    python: str = Field(default="/opt/raas/bin/python3", description="The job image's interpreter.")
    session_key: SecretStr = Field(description="HMAC key shared with the robot agents (session tokens).")
    s3_endpoint: str = Field(description="host:port of MinIO/S3 for results and code.")
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_bucket: str = "raas-results"
    s3_secure: bool = True
    reconcile_interval_s: float = Field(
        default=1.0, gt=0, description="How often jobs waiting on the clock (on a robot, uploading) are looked at."
    )
    workers: int = Field(default=4, ge=1, le=64, description="Threads reconciling jobs (each handles one at a time).")
    heartbeat_timeout_s: float = Field(default=30.0, gt=0, description="A robot silent this long is Offline.")
    node_not_ready_toleration_s: float = Field(
        default=40.0,
        ge=0,
        description="How long a job running on a robot whose Node went NotReady (or unreachable) is left to run "
        "before its attempt ends as a robot fault and it is retried elsewhere; new jobs avoid such a robot at once. "
        "A restarted control plane marks Nodes NotReady for a moment before their kubelets' renewals arrive.",
    )
    peering_lifetime_s: int = Field(
        default=60,
        ge=5,
        le=3600,
        description="How long a peer's presence counts after its last renewal (kopf's default): a standby takes "
        "over this long after the active operator died without saying goodbye.",
    )
    finished_ttl_s: float = Field(default=24 * 3600.0, gt=0, description="Finished RaasJobs are deleted after this.")
    session_upload_wait_s: float = Field(
        default=20.0, ge=0, description="How long a finished job waits for its robot agent's session record."
    )
    start_margin_s: int = Field(default=60, ge=0, description="Pod start allowance on top of a job's time limit.")
    wheel_platforms: str = Field(
        default=",".join(WHEEL_PLATFORMS),
        description="pip platform tags of the robot nodes (comma-separated): a requirements.txt is resolved for each.",
    )
    fetch_pip_environment: dict[str, str] = Field(
        default_factory=dict,
        description="pip's index settings for the fetch pods (JSON: PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, "
        "PIP_FIND_LINKS, PIP_NO_INDEX, PIP_TRUSTED_HOST), e.g. a lab's mirror.",
    )

    @field_validator("fetch_pip_environment")
    @classmethod
    def _only_pip_settings(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(PIP_SETTINGS))
        if unknown:
            raise ValueError(f"only {', '.join(PIP_SETTINGS)} may be set, not {', '.join(unknown)}")
        return value

    max_running_per_owner: int = Field(default=2, ge=1)
    max_queued_per_owner: int = Field(default=100, ge=1)
