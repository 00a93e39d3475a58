"""The RBAC audit of the cluster tests (tests/rbac_audit.py) reads the chart's grants correctly."""

from __future__ import annotations

from rbac_audit import Access, refused


def access(component: str, verb: str, group: str, resource: str, namespace: str | None) -> Access:
    return Access(f"{component}-token", verb, group, resource, namespace, "/path")


def test_what_the_chart_grants_passes_and_anything_else_is_named() -> None:
    granted = [
        access("operator", "create", "", "pods", "raas"),  # the job namespace, as tests name it
        access("operator", "update", "", "secrets", "raas"),
        access("operator", "delete", "raas.dev", "raasjobs", "raas"),
        access("operator", "patch", "raas.dev", "robots", None),  # cluster-wide
        access("agent", "patch", "raas.dev", "robots/status", None),
        access("api", "get", "", "pods/log", "raas"),
        access("api", "create", "", "secrets", "raas"),
        access("test", "deletecollection", "", "pods", "raas"),  # the tests' own requests are not judged
    ]
    assert refused(granted, "raas") == []
    denied = [
        access("api", "create", "", "pods", "raas"),  # the API never makes pods
        access("agent", "get", "", "secrets", "raas"),  # nor may the agent read session tokens
        access("operator", "create", "", "pods", "kube-system"),  # only in the job namespace
    ]
    assert refused(denied, "raas") == [
        "agent: get core/secrets in raas (/path)",
        "api: create core/pods in raas (/path)",
        "operator: create core/pods in kube-system (/path)",
    ]
