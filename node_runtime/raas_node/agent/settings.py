"""What a robot agent in a cluster is told by its environment (``RAAS_AGENT_*``, set by the Helm chart).

Plain environment parsing rather than a settings library: the agent runs on a Raspberry Pi, and
these few values do not justify another dependency in its image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gym_raas.results.store import ResultStore

ROBOT_LABEL = "raas.dev/robot"
"""The node label that names the robot a node drives (and that job pods select)."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(environment: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environment.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class ClusterSettings:
    """The agent's cluster settings; every field is optional (an agent outside a cluster needs none)."""

    robot: str | None = None
    """``RAAS_AGENT_ROBOT``: the robot's name (default: the node's `ROBOT_LABEL`)."""
    session_key: bytes | None = None
    """``RAAS_AGENT_SESSION_KEY``: shared with the operator; None: take no jobs from the cluster."""
    job_namespace: str = "raas"
    """``RAAS_AGENT_JOB_NAMESPACE``."""
    s3_endpoint: str | None = None
    """``RAAS_AGENT_S3_ENDPOINT`` (host:port); None: upload nothing (the operator then fails jobs
    that wait for their session record only after its wait)."""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "raas-results"
    s3_secure: bool = True

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> ClusterSettings:
        """Read ``RAAS_AGENT_*``; a malformed value raises ValueError naming the variable."""
        env = os.environ if environment is None else environment
        key = env.get("RAAS_AGENT_SESSION_KEY") or None
        return cls(
            robot=env.get("RAAS_AGENT_ROBOT") or None,
            session_key=key.encode() if key else None,
            job_namespace=env.get("RAAS_AGENT_JOB_NAMESPACE") or "raas",
            s3_endpoint=env.get("RAAS_AGENT_S3_ENDPOINT") or None,
            s3_access_key=env.get("RAAS_AGENT_S3_ACCESS_KEY", ""),
            s3_secret_key=env.get("RAAS_AGENT_S3_SECRET_KEY", ""),
            s3_bucket=env.get("RAAS_AGENT_S3_BUCKET") or "raas-results",
            s3_secure=_flag(env, "RAAS_AGENT_S3_SECURE", True),
        )

    def result_store(self) -> ResultStore | None:
        """Where the agent uploads a job's recording (None without an endpoint)."""
        if self.s3_endpoint is None:
            return None
        from gym_raas.results.store import S3ResultStore

        return S3ResultStore(
            self.s3_endpoint, self.s3_access_key, self.s3_secret_key, self.s3_bucket, secure=self.s3_secure
        )
