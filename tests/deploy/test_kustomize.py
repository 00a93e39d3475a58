"""``kubectl kustomize manifests/`` builds the system the chart describes, and every object is valid.

manifests/generated/ is the chart rendered by scripts/render-manifests; a test fails when it
drifts from the chart. The build runs the real kustomize inside kubectl (installed on the
project's machines at /usr/bin/kubectl; neither helm-python-sdk nor any installed Python library
exposes kustomize). Without kubectl these tests fail with a message, they do not skip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_validation import schema_errors
from deploy.chart_rendering import CHART, MANIFESTS, ROOT, by_kind, crds, one, render_objects, validation_error
from pydantic import ValidationError

from raas_operator.jobs.model import JobSpec
from raas_operator.robots.model import Robot

SCRIPT = ROOT / "scripts" / "render-manifests"


def kubectl() -> str:
    found = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None)
    if found is None:
        pytest.fail("kubectl is not installed: the kustomize build of manifests/ cannot be checked (install kubectl)")
    return found


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module")
def custom() -> dict[tuple[str, str], dict[str, Any]]:
    return crds()


def test_every_built_object_is_valid(
    built: list[dict[str, Any]], custom: dict[tuple[str, str], dict[str, Any]]
) -> None:
    assert len(built) > 30
    problems = {
        f"{item['kind']}/{item['metadata']['name']}": validation_error(item, custom)
        for item in built
        if validation_error(item, custom) is not None
    }
    assert problems == {}


def test_the_build_is_the_chart_with_its_crds_and_namespace(built: list[dict[str, Any]]) -> None:
    def keys(objects: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {(item["kind"], item["metadata"].get("namespace", ""), item["metadata"]["name"]) for item in objects}

    chart = render_objects(CHART, {"secrets": {"create": False}})
    crd_names = {
        ("CustomResourceDefinition", "", name)
        for name in ("raasjobs.raas.dev", "robots.raas.dev", "kopfpeerings.kopf.dev")
    }
    assert keys(built) == keys(chart) | crd_names | {("Namespace", "", "raas-system")}
    assert not by_kind(built, "Secret")


def test_the_system_namespace_enforces_restricted(built: list[dict[str, Any]]) -> None:
    labels = one(built, "Namespace", "raas-system")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    system = [
        item
        for item in built
        if item["metadata"].get("namespace") == "raas-system" and "template" in item.get("spec", {})
    ]
    assert {item["metadata"]["name"] for item in system} == {"raas-api", "raas-operator", "raas-minio"}
    for workload in system:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert not pod.get("hostNetwork")


def test_the_built_objects_say_kustomize_manages_them(built: list[dict[str, Any]]) -> None:
    managers = {item["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") for item in built}
    assert "Helm" not in managers
    assert "kustomize" in managers


def test_the_generated_manifests_match_the_chart() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_drift_check_notices_an_edit(tmp_path: Path) -> None:
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    generated = copy / "generated" / "raas.yaml"
    generated.write_text(generated.read_text(encoding="utf-8").replace("replicas: 2", "replicas: 3"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--directory", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "generated/raas.yaml is out of date" in result.stderr
    rewritten = subprocess.run(
        [sys.executable, str(SCRIPT), "--directory", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rewritten.returncode == 0, rewritten.stderr
    assert generated.read_text(encoding="utf-8") == (MANIFESTS / "generated" / "raas.yaml").read_text(encoding="utf-8")


# --- examples -------------------------------------------------------------------------------------

EXAMPLES = sorted((MANIFESTS / "examples").glob("*.yaml"))


def example(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_examples_are_valid_custom_resources(path: Path, custom: dict[tuple[str, str], dict[str, Any]]) -> None:
    document = example(path)
    crd = custom[document["apiVersion"], document["kind"]]
    assert schema_errors(crd, document) == []
    try:
        if document["kind"] == "RaasJob":
            JobSpec.model_validate(document["spec"])
        else:
            Robot.model_validate({"name": document["metadata"]["name"], "spec": document["spec"]})
    except ValidationError as error:
        pytest.fail(str(error))


def test_examples_cover_every_way_to_ask_for_a_robot() -> None:
    requests = [example(path)["spec"]["robot"] for path in EXAMPLES if example(path)["kind"] == "RaasJob"]
    assert any(set(request) == {"type"} for request in requests), "any robot of a type"
    assert any("name" in request for request in requests), "a named robot"
    assert any(request.get("selector") for request in requests), "a label selector"
    assert any(example(path)["kind"] == "Robot" for path in EXAMPLES)


def test_the_example_controller_exists_where_the_examples_point() -> None:
    for path in EXAMPLES:
        document = example(path)
        if document["kind"] == "RaasJob" and document["spec"]["source"]["url"].endswith("/raas/raas.git"):
            assert (ROOT / document["spec"]["entrypoint"]).is_file(), path.name
