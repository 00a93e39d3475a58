"""Pure builders of the pods and Secrets a RaasJob owns (plain dicts, no cluster access)."""

from raas_operator.pods.builder import (
    ContainerResources,
    PodSettings,
    fetch_pod,
    job_pod,
    session_secret,
)

__all__ = ["ContainerResources", "PodSettings", "fetch_pod", "job_pod", "session_secret"]
