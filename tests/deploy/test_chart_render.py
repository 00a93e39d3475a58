"""The Helm chart renders, lints clean and makes only valid Kubernetes 1.33 objects, for every way a lab installs it.

Rendered with the real Helm v4 engine (helm-python-sdk) for: the defaults, virtual robots, an
external S3 with an existing Secret, a cluster with the Prometheus Operator (its API version
advertised), and everything optional switched on. Built-in kinds are checked with
kubernetes-validate --strict, RaasJob/Robot/KopfPeering objects with their CRDs' schemas
(chart_rendering.validation_error). No cluster is involved: ``lookup`` returns nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from deploy.chart_rendering import (
    CHART,
    FIXED_SECRETS,
    LAB_REGISTRY,
    MANIFESTS,
    PROMETHEUS_OPERATOR,
    by_kind,
    chart_copy,
    crds,
    one,
    render,
    render_objects,
    validation_error,
)

EXTERNAL_S3 = {
    "minio": {
        "enabled": False,
        "external": {
            "endpoint": "s3.lab.example:443",
            "existingSecret": "lab-s3",
            "egressCIDRs": ["192.0.2.10/32"],
        },
    }
}
EVERYTHING = {
    "secrets": {"create": False, "name": "lab-raas"},
    "images": {"pullSecrets": ["lab-registry"], "tag": "1.2.3"},
    "api": {"ingress": {"enabled": True, "className": "traefik", "tlsSecretName": "raas-tls"}},
    "agent": {"priorityClassName": "system-node-critical"},
    "namespaces": {"labels": {"lab": "north"}},
    "monitoring": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
}
SCENARIOS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "defaults": ({}, ()),
    "virtual-robots": ({"agent": {"virtualRobots": {"enabled": True}}}, ()),
    "external-s3": (EXTERNAL_S3, ()),
    "prometheus-operator": ({}, PROMETHEUS_OPERATOR),
    "everything": (EVERYTHING, PROMETHEUS_OPERATOR),
}


@pytest.fixture(scope="module")
def chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chart_copy(tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="module")
def custom() -> dict[tuple[str, str], dict[str, Any]]:
    return crds()


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_rendered_object_is_valid(
    chart_dir: Path, custom: dict[tuple[str, str], dict[str, Any]], scenario: str
) -> None:
    values, api_versions = SCENARIOS[scenario]
    objects = render_objects(chart_dir, values, api_versions=api_versions)
    assert len(objects) > 30
    problems = {
        f"{item['kind']}/{item['metadata']['name']}": validation_error(item, custom)
        for item in objects
        if validation_error(item, custom) is not None
    }
    assert problems == {}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_is_clean(chart_dir: Path, scenario: str) -> None:
    values, _ = SCENARIOS[scenario]
    report = helm_python.lint(chart_dir, values, strict=True, kube_version="v1.33.0", namespace="raas-system")
    assert report["errors"] == []
    assert report["messages"] == []


def test_the_validation_catches_a_bad_object(custom: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The checks above can fail: unknown fields, custom resources off their schema, mistyped apiVersions."""
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replica": 1}}
    assert validation_error(deployment, custom) is not None
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "p"}, "spec": {"x": 1}}
    assert validation_error(peering, custom) is not None
    typo = {"apiVersion": "app/v1", "kind": "Deployment", "metadata": {"name": "x"}}
    assert validation_error(typo, custom) == "no schema for app/v1 Deployment in Kubernetes 1.33.0"


def test_the_chart_crds_are_the_generated_ones_and_kopfs_peering() -> None:
    """crds/ links to manifests/crds (one source of truth) and Helm loads the linked files' content."""
    with helm_python.Chart.load(CHART) as chart:
        loaded = {Path(entry["name"]).name: entry["data"] for entry in chart.crds}
    generated = {path.name: path.read_text(encoding="utf-8") for path in (MANIFESTS / "crds").glob("*.yaml")}
    assert generated, "manifests/crds is empty"
    assert {name: loaded.get(name) for name in generated} == generated
    assert set(loaded) - set(generated) == {"kopfpeerings.kopf.dev.yaml"}
    for name in generated:
        link = CHART / "crds" / name
        assert link.is_symlink(), f"{link} must link to manifests/crds, not be a copy"
        assert link.resolve() == (MANIFESTS / "crds" / name).resolve()
    peering = yaml.safe_load(loaded["kopfpeerings.kopf.dev.yaml"])
    assert (peering["spec"]["group"], peering["spec"]["scope"], peering["spec"]["names"]["kind"]) == (
        "kopf.dev",
        "Namespaced",
        "KopfPeering",
    )
    assert [version["name"] for version in peering["spec"]["versions"]] == ["v1"]


def test_defaults_install_every_component(chart_dir: Path) -> None:
    objects = render_objects(chart_dir)
    kinds = {(item["kind"], item["metadata"]["name"]) for item in objects}
    assert {
        ("Deployment", "raas-api"),
        ("Service", "raas-api"),
        ("Deployment", "raas-operator"),
        ("PodDisruptionBudget", "raas-operator"),
        ("KopfPeering", "raas-operator"),
        ("DaemonSet", "raas-agent"),
        ("StatefulSet", "raas-minio"),
        ("Service", "raas-minio"),
        ("Namespace", "raas-jobs"),
        ("Namespace", "raas-robots"),
        ("ConfigMap", "raas-prometheus-rules"),
        ("ValidatingAdmissionPolicy", "raas-job-pods"),
    } <= kinds
    assert not by_kind(objects, "Ingress")
    assert one(objects, "Deployment", "raas-operator")["spec"]["replicas"] == 2
    assert one(objects, "KopfPeering", "raas-operator")["metadata"]["namespace"] == "raas-jobs"


def test_without_the_prometheus_operator_there_are_annotations_and_no_monitors(chart_dir: Path) -> None:
    objects = render_objects(chart_dir)
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & {item["kind"] for item in objects}
    for name, kind, port in (("raas-api", "Deployment", "8000"), ("raas-operator", "Deployment", "9106")):
        annotations = one(objects, kind, name)["spec"]["template"]["metadata"]["annotations"]
        assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == ("true", port)
    agent = one(objects, "DaemonSet", "raas-agent")["spec"]["template"]["metadata"]["annotations"]
    assert (agent["prometheus.io/port"], agent["prometheus.io/path"]) == ("9105", "/metrics")


def test_with_the_prometheus_operator_there_are_monitors_and_the_rule(chart_dir: Path) -> None:
    objects = render_objects(chart_dir, api_versions=PROMETHEUS_OPERATOR)
    monitor = one(objects, "ServiceMonitor", "raas-api")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    pod_monitors = {item["metadata"]["name"]: item for item in by_kind(objects, "PodMonitor")}
    assert set(pod_monitors) == {"raas-operator", "raas-agent"}
    assert pod_monitors["raas-agent"]["spec"]["namespaceSelector"]["matchNames"] == ["raas-robots"]
    assert pod_monitors["raas-agent"]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "agent"
    rules_text = (chart_dir / "files" / "alerts" / "raas-rules.yaml").read_text(encoding="utf-8")
    rules_file = yaml.safe_load(rules_text)
    assert one(objects, "PrometheusRule", "raas")["spec"]["groups"] == rules_file["groups"]
    # The platform-down alerts select targets by raas_component: every monitor sets it, to a value they use.
    labelled = {}
    for item in [monitor, *pod_monitors.values()]:
        endpoints = item["spec"].get("endpoints") or item["spec"].get("podMetricsEndpoints")
        relabelings = endpoints[0]["relabelings"]
        component = item["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        labelled[component] = next(r["replacement"] for r in relabelings if r.get("targetLabel") == "raas_component")
    assert labelled == {"api": "api", "operator": "operator", "agent": "agent"}
    assert set(re.findall(r'raas_component="(\w+)"', rules_text)) == set(labelled.values())
    agent_relabelings = pod_monitors["raas-agent"]["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"} in agent_relabelings
    plain = one(objects, "ConfigMap", "raas-prometheus-rules")["data"]["raas-rules.yaml"]
    assert yaml.safe_load(plain) == rules_file


def test_monitoring_objects_can_be_forced_off_where_the_operator_exists(chart_dir: Path) -> None:
    values = {"monitoring": {k: {"enabled": False} for k in ("serviceMonitor", "podMonitor", "prometheusRule")}}
    objects = render_objects(chart_dir, values, api_versions=PROMETHEUS_OPERATOR)
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & {item["kind"] for item in objects}


def test_each_dashboard_is_a_configmap_for_the_grafana_sidecar(chart_dir: Path) -> None:
    objects = render_objects(chart_dir)
    files = sorted((chart_dir / "files" / "dashboards").glob("*.json"))
    dashboards = [item for item in by_kind(objects, "ConfigMap") if "grafana_dashboard" in item["metadata"]["labels"]]
    assert len(dashboards) == len(files) > 0
    for item in dashboards:
        assert item["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, text),) = item["data"].items()
        assert text.strip() == (chart_dir / "files" / "dashboards" / name).read_text(encoding="utf-8").strip()


def test_external_s3_uses_the_endpoint_and_the_existing_secret(chart_dir: Path) -> None:
    objects = render_objects(chart_dir, EXTERNAL_S3)
    assert not by_kind(objects, "StatefulSet")
    operator = one(objects, "ConfigMap", "raas-operator")["data"]
    assert (operator["RAAS_OPERATOR_S3_ENDPOINT"], operator["RAAS_OPERATOR_S3_SECURE"]) == (
        "s3.lab.example:443",
        "true",
    )
    container = one(objects, "DaemonSet", "raas-agent")["spec"]["template"]["spec"]["containers"][0]
    refs = {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for env in container["env"]
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert refs["RAAS_AGENT_S3_ACCESS_KEY"] == {"name": "lab-s3", "key": "access-key"}
    assert refs["RAAS_AGENT_S3_SECRET_KEY"] == {"name": "lab-s3", "key": "secret-key"}
    for secret in by_kind(objects, "Secret"):
        assert "s3-access-key" not in secret["data"]


def test_defaults_point_every_component_at_the_built_in_minio(chart_dir: Path) -> None:
    objects = render_objects(chart_dir)
    endpoint = "raas-minio.raas-system.svc.cluster.local:9000"
    assert one(objects, "ConfigMap", "raas-api")["data"]["RAAS_S3_ENDPOINT"] == endpoint
    assert one(objects, "ConfigMap", "raas-operator")["data"]["RAAS_OPERATOR_S3_ENDPOINT"] == endpoint
    assert one(objects, "ConfigMap", "raas-agent")["data"]["RAAS_AGENT_S3_ENDPOINT"] == endpoint
    assert one(objects, "ConfigMap", "raas-agent")["data"]["RAAS_AGENT_S3_SECURE"] == "false"
    claims = one(objects, "StatefulSet", "raas-minio")["spec"]["volumeClaimTemplates"]
    assert claims[0]["spec"]["resources"]["requests"]["storage"] == "10Gi"


def checksums(chart_dir: Path, values: dict[str, Any]) -> dict[str, dict[str, str]]:
    objects = render_objects(chart_dir, values)
    return {
        name: {
            key: value
            for key, value in (template["metadata"].get("annotations") or {}).items()
            if key.startswith("checksum/")
        }
        for name, template in (
            (f"{item['kind']}/{item['metadata']['name']}", item["spec"]["template"])
            for item in objects
            if item["kind"] in {"Deployment", "DaemonSet", "StatefulSet"}
        )
    }


def test_checksum_annotations_follow_the_configuration(chart_dir: Path) -> None:
    base = {"secrets": FIXED_SECRETS}
    before = checksums(chart_dir, base)
    assert checksums(chart_dir, base) == before  # same values, same pods: no needless restarts
    config_changed = checksums(chart_dir, base | {"operator": {"heartbeatTimeoutS": 60}})
    assert (
        config_changed["Deployment/raas-operator"]["checksum/config"]
        != before["Deployment/raas-operator"]["checksum/config"]
    )
    assert config_changed["Deployment/raas-api"] == before["Deployment/raas-api"]
    secret_changed = checksums(chart_dir, {"secrets": FIXED_SECRETS | {"sessionKey": "rotated"}})
    for name in ("Deployment/raas-operator", "DaemonSet/raas-agent", "Deployment/raas-api"):
        assert secret_changed[name]["checksum/secret"] != before[name]["checksum/secret"], name


def test_generated_secrets_are_shared_by_both_namespaces(chart_dir: Path) -> None:
    secrets = {item["metadata"]["namespace"]: item["data"] for item in by_kind(render_objects(chart_dir), "Secret")}
    assert set(secrets) == {"raas-system", "raas-robots"}
    assert secrets["raas-system"]["session-key"] == secrets["raas-robots"]["session-key"]
    assert "admin-token" not in secrets["raas-robots"]
    assert len(set(secrets["raas-system"].values())) == 4  # four different random values


def test_no_secret_is_rendered_when_the_lab_brings_its_own(chart_dir: Path) -> None:
    objects = render_objects(chart_dir, {"secrets": {"create": False, "name": "lab-raas"}})
    assert not by_kind(objects, "Secret")
    container = one(objects, "Deployment", "raas-api")["spec"]["template"]["spec"]["containers"][0]
    refs = [env["valueFrom"]["secretKeyRef"]["name"] for env in container["env"] if "valueFrom" in env]
    assert set(refs) == {"lab-raas"}


def test_names_follow_the_release_and_overrides(chart_dir: Path) -> None:
    manifests = render(chart_dir, name="lab")
    names = {item["metadata"]["name"] for item in yaml_objects(manifests)}
    assert {"lab-raas-api", "lab-raas-operator", "lab-raas-agent"} <= names
    override = render_objects(chart_dir, {"fullnameOverride": "robots"})
    assert one(override, "DaemonSet", "robots-agent")["metadata"]["labels"]["app.kubernetes.io/component"] == "agent"


def yaml_objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    return [
        doc
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def test_images_come_from_the_registry_and_tag(chart_dir: Path) -> None:
    objects = render_objects(chart_dir, {"images": {"registry": "registry.lab:5000/raas", "tag": "9.9"}})
    image = one(objects, "Deployment", "raas-api")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.lab:5000/raas/raas-api:9.9"
    assert (
        one(objects, "ConfigMap", "raas-operator")["data"]["RAAS_OPERATOR_IMAGE"]
        == "registry.lab:5000/raas/raas-job:9.9"
    )
    default = render_objects(chart_dir)
    default_image = one(default, "DaemonSet", "raas-agent")["spec"]["template"]["spec"]["containers"][0]["image"]
    with helm_python.Chart.load(chart_dir) as chart:
        assert default_image == f"{LAB_REGISTRY}/raas-agent:{chart.metadata['appVersion']}"


def test_the_chart_requires_the_labs_registry_and_says_how_to_set_it(chart_dir: Path) -> None:
    # No public registry publishes the images (and the one the chart once named is someone else's).
    with pytest.raises(Exception, match=r"images\.registry is required: the registry your lab pushed"):
        render(chart_dir, {"images": {"registry": ""}})
    imported = render_objects(chart_dir, {"images": {"registry": "localhost"}})
    image = one(imported, "Deployment", "raas-operator")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("localhost/raas-operator:")  # images imported into each node's containerd


def test_the_ingress_serves_the_api(chart_dir: Path) -> None:
    ingress = one(render_objects(chart_dir, EVERYTHING), "Ingress", "raas-api")
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert ingress["spec"]["tls"] == [{"hosts": ["raas.example.org"], "secretName": "raas-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "raas-api", "port": {"name": "http"}}


@pytest.mark.parametrize(
    "values",
    [
        {"operator": {"replicas": 0}},
        {"monitoring": {"podMonitor": {"enabled": "yes"}}},
        {"minio": {"enabled": False}},
        {"agent": {"pigpio": {"port": 70000}}},
        {"networkPolicy": {"fetch": {"exceptCIDRs": ["not-a-cidr"]}}},
        {"api": {"replica": 2}},
        {"namespaces": {"jobs": "Raas_Jobs"}},
    ],
    ids=["no-operator", "tri-state", "external-without-endpoint", "port", "cidr", "unknown-key", "namespace"],
)
def test_the_values_schema_refuses_bad_values(chart_dir: Path, values: dict[str, Any]) -> None:
    with helm_python.Chart.load(chart_dir) as chart, pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(values)
    with pytest.raises(helm_python.HelmError):
        render(chart_dir, values)


def test_the_values_schema_accepts_every_scenario(chart_dir: Path) -> None:
    with helm_python.Chart.load(chart_dir) as chart:
        for values, _ in SCENARIOS.values():
            chart.validate_schema(values)


def undocumented_values(text: str) -> list[str]:
    """Values with no `# --` comment (helm-docs) above them or above a map that holds them."""
    lines = text.splitlines()
    undocumented = []
    open_maps: list[tuple[int, bool]] = []  # (indent, documented) of the maps around the current line
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "- ")):
            continue
        indent = len(line) - len(line.lstrip())
        while open_maps and open_maps[-1][0] >= indent:
            open_maps.pop()
        documented = lines[number - 1].strip().startswith("# --") or any(doc for _, doc in open_maps)
        key, _, rest = stripped.partition(":")
        following = next(
            (item.strip() for item in lines[number + 1 :] if item.strip() and not item.strip().startswith("#")), ""
        )
        if rest.strip() or following.startswith("- "):
            if not documented:
                undocumented.append(f"line {number + 1}: {key}")
        else:
            open_maps.append((indent, documented))
    return undocumented


def test_every_value_is_documented() -> None:
    assert undocumented_values((CHART / "values.yaml").read_text(encoding="utf-8")) == []


def test_the_documentation_check_finds_an_undocumented_value() -> None:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    stripped = text.replace("  # -- Replicas of the API Deployment.\n", "").replace("  # -- Bucket", "  # Bucket")
    assert [entry.split(": ")[1] for entry in undocumented_values(stripped)] == ["bucket", "replicas"]


def test_the_packaged_chart_holds_the_crds_themselves(tmp_path: Path) -> None:
    """`helm package` follows the crds/ links: the archive is self-contained, without the repository."""
    archive = helm_python.package(CHART, destination=tmp_path)
    with helm_python.Chart.load(archive) as chart:
        packaged = {Path(entry["name"]).name: entry["data"] for entry in chart.crds}
        names = {entry["name"] for entry in chart.files}
    assert packaged["raasjobs.raas.dev.yaml"] == (MANIFESTS / "crds" / "raasjobs.raas.dev.yaml").read_text(
        encoding="utf-8"
    )
    assert packaged["robots.raas.dev.yaml"] == (MANIFESTS / "crds" / "robots.raas.dev.yaml").read_text(encoding="utf-8")
    assert not [name for name in names if name.startswith("files/alerts/tests/")]  # .helmignore: rule tests stay out


def test_alerts_link_to_the_labs_runbooks_when_it_says_where_they_are(chart_dir: Path) -> None:
    # The rules file links to docs/runbooks.md in this repository (no public site is ours).
    rules = yaml.safe_load((chart_dir / "files" / "alerts" / "raas-rules.yaml").read_text(encoding="utf-8"))
    urls = [rule["annotations"]["runbook_url"] for rule in rules["groups"][0]["rules"]]
    assert all(url.startswith("docs/runbooks.md#") for url in urls), urls
    lab = "https://git.lab.example/raas/raas/blob/v0.1.0/docs/runbooks.md"
    values = {"monitoring": {"runbookUrl": lab}}
    plain = render_objects(chart_dir, values)
    for objects in (plain, render_objects(chart_dir, values, api_versions=PROMETHEUS_OPERATOR)):
        configmap = yaml.safe_load(one(objects, "ConfigMap", "raas-prometheus-rules")["data"]["raas-rules.yaml"])
        linked = [rule["annotations"]["runbook_url"] for rule in configmap["groups"][0]["rules"]]
        assert linked == [url.replace("docs/runbooks.md", lab) for url in urls]
    rule = one(objects, "PrometheusRule", "raas")["spec"]["groups"][0]["rules"][0]
    assert rule["annotations"]["runbook_url"] == f"{lab}#raasrobotdown"
    with pytest.raises(Exception, match="runbookUrl"):
        render(chart_dir, {"monitoring": {"runbookUrl": "javascript:alert(1)"}})
