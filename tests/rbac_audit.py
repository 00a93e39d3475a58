"""The Kubernetes API requests each component made in a test, checked against the RBAC the chart
grants its service account (`manifests/generated/raas.yaml`, the chart rendered with defaults).

The emulator enforces no RBAC (../shared/TESTING.md), so each component talks to it with a bearer
token of its own (`COMPONENT_TOKENS`) and the emulator logs every request (`Access`); a request
the chart's Roles and ClusterRoles would refuse is a bug a real cluster would show only in
production (a retry's Secret update, a TTL deletion, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

GENERATED = Path(__file__).resolve().parents[1] / "manifests" / "generated" / "raas.yaml"
CHART_JOB_NAMESPACE = "raas-jobs"
"""The chart's job namespace; tests map it onto theirs."""

COMPONENT_TOKENS = {"operator": "operator-token", "agent": "agent-token", "api": "api-token"}
"""Bearer token each component uses in tests → the chart's service account it stands for."""
SERVICE_ACCOUNTS = {"operator": "raas-operator", "agent": "raas-agent", "api": "raas-api"}


@dataclass(frozen=True)
class Access:
    """One resource request as RBAC sees it."""

    token: str
    verb: str
    group: str
    resource: str
    """With its subresource, as RBAC names it (``pods/log``)."""
    namespace: str | None
    path: str


def verb_of(action: str, method: str, named: bool) -> str:
    """The RBAC verb of a request (kmock's action and the HTTP method)."""
    if action == "watch":
        return "watch"
    if action == "list":
        return "list"
    if action == "fetch":
        return "get"
    if action == "create":
        return "create"
    if action == "delete":
        return "delete" if named else "deletecollection"
    return "update" if method == "PUT" else "patch"


@functools.cache
def _grants() -> dict[str, list[tuple[str | None, tuple[dict[str, Any], ...]]]]:
    """Service account name → (namespace or None for cluster-wide, rules) it is bound to."""
    objects = [document for document in yaml.safe_load_all(GENERATED.read_text()) if document]
    roles = {
        (item["kind"], item["metadata"].get("namespace"), item["metadata"]["name"]): tuple(item.get("rules") or [])
        for item in objects
        if item["kind"] in ("Role", "ClusterRole")
    }
    grants: dict[str, list[tuple[str | None, tuple[dict[str, Any], ...]]]] = {}
    for binding in (item for item in objects if item["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        namespace = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        reference = binding["roleRef"]
        rules = roles[(reference["kind"], namespace if reference["kind"] == "Role" else None, reference["name"])]
        for subject in binding["subjects"]:
            grants.setdefault(subject["name"], []).append((namespace, rules))
    return grants


def allowed(access: Access, service_account: str, job_namespace: str) -> bool:
    for namespace, rules in _grants().get(service_account, []):
        if namespace is not None:
            where = job_namespace if namespace == CHART_JOB_NAMESPACE else namespace
            if access.namespace != where:
                continue
        for rule in rules:
            if (
                access.group in rule.get("apiGroups", [])
                and access.resource in rule.get("resources", [])
                and access.verb in rule.get("verbs", [])
            ):
                return True
    return False


def refused(accesses: Iterable[Access], job_namespace: str, tokens: Mapping[str, str] = COMPONENT_TOKENS) -> list[str]:
    """Every request of a component the chart's RBAC would refuse, described once."""
    components = {token: component for component, token in tokens.items()}
    problems = []
    for access in set(accesses):
        component = components.get(access.token)
        if component is not None and not allowed(access, SERVICE_ACCOUNTS[component], job_namespace):
            problems.append(f"{component}: {access.verb} {access.group or 'core'}/{access.resource} in "
                            f"{access.namespace or 'the cluster'} ({access.path})")  # fmt: skip
    return sorted(problems)
