"""Rendering the Helm chart offline and validating what comes out, for the deployment tests.

* `render` runs the real Helm v4 template engine (helm-python-sdk, no helm binary, no cluster),
  optionally with the API versions a cluster would advertise (``.Capabilities.APIVersions``:
  e.g. ``monitoring.coreos.com/v1`` when the Prometheus Operator is installed). The SDK's
  public ``Chart.render`` has no parameter for them; its native ``helm_render`` call takes them
  as the ``api_versions`` option, which this module passes.
* `chart_copy` copies the chart (following the CRD symlinks) and, while the monitoring files
  that another part of the project writes (``files/alerts/raas-rules.yaml``,
  ``files/dashboards/*.json``) are missing, puts small placeholders into the copy only.
* `validation_error` checks one object as the API server would: built-in kinds with
  kubernetes-validate's strict OpenAPI schemas for Kubernetes 1.33; RaasJob, Robot and
  KopfPeering objects against their CRDs with jsonschema (kubernetes-validate passes custom
  resources silently); Prometheus Operator kinds, whose CRDs are not in this repository, only
  by their group. Anything else without a schema is an error, so a mistyped apiVersion of a
  built-in kind cannot pass.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]
import yaml
from crd_validation import schema_errors
from helm_python import _native

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "raas"
MANIFESTS = ROOT / "manifests"
KUBERNETES_VERSION = "1.33.0"
RELEASE = "raas"
NAMESPACE = "raas-system"
LAB_REGISTRY = "registry.lab.example/raas"
"""The registry the chart tests render with (the chart requires one: no public registry has the images)."""
PROMETHEUS_OPERATOR = ("monitoring.coreos.com/v1",)
"""The API versions a cluster with the Prometheus Operator's CRDs advertises (what the chart asks)."""

FIXED_SECRETS = {
    "sessionKey": "test-session-key",
    "adminToken": "test-admin-token",
    "s3AccessKey": "test-access",
    "s3SecretKey": "test-secret-key",
}
"""Secret values for renders that must be reproducible (empty ones are random on each render)."""

PLACEHOLDER_RULES = {
    "groups": [
        {
            "name": "raas",
            "rules": [
                {
                    "alert": "RaasRobotDown",
                    "expr": 'up{job="raas-agent"} == 0',
                    "for": "2m",
                    "labels": {"severity": "critical"},
                    "annotations": {"summary": "placeholder rule of the chart tests"},
                }
            ],
        }
    ]
}
PLACEHOLDER_DASHBOARD = {"title": "RaaS placeholder", "uid": "raas-placeholder", "panels": [], "schemaVersion": 39}
MONITORING_GROUP = "monitoring.coreos.com"


def chart_copy(destination: Path) -> Path:
    """A copy of the chart under `destination`, with placeholder monitoring files where they are missing."""
    target = destination / "raas"
    shutil.copytree(CHART, target, symlinks=False)
    rules = target / "files" / "alerts" / "raas-rules.yaml"
    if not rules.is_file():
        rules.parent.mkdir(parents=True, exist_ok=True)
        rules.write_text(yaml.safe_dump(PLACEHOLDER_RULES, sort_keys=False), encoding="utf-8")
    dashboards = target / "files" / "dashboards"
    if not list(dashboards.glob("*.json")):
        dashboards.mkdir(parents=True, exist_ok=True)
        (dashboards / "placeholder.json").write_text(json.dumps(PLACEHOLDER_DASHBOARD), encoding="utf-8")
    return target


def render(
    chart_dir: Path,
    values: Mapping[str, Any] | None = None,
    *,
    api_versions: Iterable[str] = (),
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> dict[str, str]:
    """The chart's templates rendered as `helm template` would: template path → manifest text."""
    options: dict[str, Any] = {"name": name, "namespace": namespace, "kube_version": f"v{KUBERNETES_VERSION}"}
    versions = list(api_versions)
    if versions:
        options["api_versions"] = versions
    values = with_registry(values or {})
    with helm_python.Chart.load(chart_dir) as chart:
        rendered = _native.call_string("helm_render", chart._raw(), json.dumps(dict(values)), json.dumps(options))
    manifests: dict[str, str] = json.loads(rendered)
    return manifests


def with_registry(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with ``images.registry`` set to `LAB_REGISTRY` unless they set it (even to "")."""
    images = dict(values.get("images") or {})
    images.setdefault("registry", LAB_REGISTRY)
    return {**values, "images": images}


def documents(manifests: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every object in rendered manifests (NOTES.txt and empty documents left out)."""
    found: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        found.extend(document for document in yaml.safe_load_all(text) if document)
    return found


def render_objects(
    chart_dir: Path, values: Mapping[str, Any] | None = None, *, api_versions: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """`render` then `documents`."""
    return documents(render(chart_dir, values, api_versions=api_versions))


def crds(chart_dir: Path = CHART) -> dict[tuple[str, str], dict[str, Any]]:
    """The chart's CRDs (from ``crds/``, as Helm loads them) by (apiVersion, kind) of their objects."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    with helm_python.Chart.load(chart_dir) as chart:
        for entry in chart.crds:
            crd = yaml.safe_load(entry["data"])
            for version in crd["spec"]["versions"]:
                found[f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"]] = crd
    return found


def validation_error(document: dict[str, Any], custom: Mapping[tuple[str, str], dict[str, Any]]) -> str | None:
    """What is wrong with `document` (first line), or None; `custom` are the CRDs by (apiVersion, kind)."""
    key = (str(document.get("apiVersion")), str(document.get("kind")))
    if key in custom:
        errors = schema_errors(custom[key], document)
        return "; ".join(errors) if errors else None
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return str(error).splitlines()[0]
    except kubernetes_validate.SchemaNotFoundError:
        if key[0].split("/")[0] == MONITORING_GROUP:
            return None  # the Prometheus Operator's CRDs are not in this repository
        return f"no schema for {key[0]} {key[1]} in Kubernetes {KUBERNETES_VERSION}"
    return None


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind."""
    return [item for item in objects if item.get("kind") == kind]


def one(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The object of that kind and name (fails the test when there is not exactly one)."""
    matches = [item for item in objects if item.get("kind") == kind and item["metadata"]["name"] == name]
    assert len(matches) == 1, f"{len(matches)} {kind} named {name}"
    return matches[0]


def pod_templates(objects: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod template of the workloads, by ``Kind/name``."""
    return {
        f"{item['kind']}/{item['metadata']['name']}": item["spec"]["template"]
        for item in objects
        if item.get("kind") in {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
    }
