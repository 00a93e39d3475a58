"""Every manifest under ``manifests/``, and every object the pod builders make, is a valid Kubernetes 1.33 object.

Checked offline with ``kubernetes-validate --strict`` (the API's own OpenAPI schemas; strict
refuses unknown fields). It has no schema for custom resources and passes them with a warning:
RaasJob and Robot objects are validated against their CRDs in ``test_crds.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from raas_operator.jobs.model import JobSpec
from raas_operator.pods import PodSettings, fetch_pod, job_pod, session_secret

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed (pip install -r requirements-dev.txt)"
)

KUBERNETES_VERSION = "1.33.0"
ROOT = Path(__file__).resolve().parents[2]
MANIFEST_FILES = sorted((ROOT / "manifests").rglob("*.yaml"))
CUSTOM_KINDS = {("raas.dev/v1alpha1", "RaasJob"), ("raas.dev/v1alpha1", "Robot")}
NOT_BUILT_IN = {("kustomize.config.k8s.io/v1beta1", "Kustomization"), ("kopf.dev/v1", "KopfPeering")}
"""Kinds kubernetes-validate has no schema for: the kustomization itself, and kopf's peering object
(checked against its CRD in tests/deploy/test_kustomize.py)."""


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document]


def validation_error(document: dict[str, Any]) -> str | None:
    """The first line of kubernetes-validate's complaint, None when the object is valid."""
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return str(error).splitlines()[0]
    return None


def test_there_are_manifests_to_check() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in MANIFEST_FILES}
    assert {"manifests/crds/raasjobs.raas.dev.yaml", "manifests/crds/robots.raas.dev.yaml"} <= names


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_manifest_document_is_a_valid_kubernetes_object(path: Path) -> None:
    for document in documents(path):
        if (document.get("apiVersion"), document.get("kind")) in CUSTOM_KINDS | NOT_BUILT_IN:
            continue  # no built-in schema: custom resources are checked against their CRD (test_crds.py)
        assert validation_error(document) is None, f"{path.name}: {document.get('kind')}"


def test_the_documented_command_passes_on_all_manifests() -> None:
    command = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubernetes-validate"
    )
    if command is None:
        pytest.skip("the kubernetes-validate command is not on PATH")
    result = subprocess.run(
        [command, "--strict", "-k", KUBERNETES_VERSION, *map(str, MANIFEST_FILES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_manifest_with_an_unknown_field_is_caught() -> None:
    document = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [], "x": 1}}
    assert validation_error(document) is not None


SETTINGS = PodSettings(image="registry.lab/raas-runtime:1.0", priority_class_name="raas-jobs")
SPEC = JobSpec.model_validate({"owner": "ada", "source": {"kind": "git", "url": "https://git.example/a/c.git"}})
UID = "6f1c9a52-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    "built",
    [
        job_pod(
            job_name="swingup",
            namespace="lab",
            job_uid=UID,
            spec=SPEC,
            robot="pendulum-1",
            commit="c" * 40,
            code_url="http://minio:9000/b/code.tar.gz?sig=1",
            settings=SETTINGS,
        ),
        fetch_pod(job_name="swingup", namespace="lab", job_uid=UID, command=["python", "-m", "x"], settings=SETTINGS),
        session_secret("swingup", "lab", UID, "token-value"),
    ],
    ids=["job-pod", "fetch-pod", "session-secret"],
)
def test_the_builders_make_valid_kubernetes_objects(built: dict[str, Any]) -> None:
    assert validation_error(built) is None
