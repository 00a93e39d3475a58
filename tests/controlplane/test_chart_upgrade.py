"""A lab's `helm upgrade` with a CRD change, on the real control plane (issue 18, item 7).

Helm installs `crds/` once and never upgrades it, so a new chart's CRDs are applied by hand, as
NOTES.txt, the chart README and the k3s guide say: ``kubectl apply --server-side
--force-conflicts -f charts/raas/crds/``. Shown on a control plane of its own: a CRD Helm created
is taken over by that command with a changed schema (without ``--force-conflicts`` the server
refuses: Helm owns the fields); existing RaasJobs survive and the new field is served; `helm
upgrade` goes through after.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml
from controlplane.chart_install import CHART, JOBS, REGISTRY, RELEASE, SYSTEM, install_chart
from controlplane.cluster import ControlPlane

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "raasjob-swingup.yaml"
CRD_UPGRADE = ("apply", "--server-side", "--force-conflicts")
"""The documented CRD upgrade command (without its ``-f``)."""


@pytest.fixture
def own_plane() -> Iterator[ControlPlane]:
    with ControlPlane() as plane:
        install_chart(plane)
        yield plane


def next_release_crds(folder: Path) -> Path:
    """charts/raas/crds as a next release would change them: the RaasJob gains a printer column
    and an optional spec field."""
    folder.mkdir()
    for path in sorted((CHART / "crds").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        if document["metadata"]["name"] == "raasjobs.raas.dev":
            version = document["spec"]["versions"][0]
            version["additionalPrinterColumns"].append({"name": "Lab", "type": "string", "jsonPath": ".spec.lab"})
            version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["lab"] = {"type": "string"}
        (folder / path.name).write_text(yaml.safe_dump(document))
    return folder


def test_the_documented_crd_upgrade_takes_over_helms_crds_and_helm_upgrade_goes_on(
    own_plane: ControlPlane, tmp_path: Path
) -> None:
    plane = own_plane
    job = yaml.safe_load(EXAMPLE.read_text())
    job["metadata"].update(name="before", namespace=JOBS)
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(job))
    crds = next_release_crds(tmp_path / "crds")

    refused = plane.kubectl("apply", "--server-side", "-f", str(crds), check=False)
    assert refused.returncode != 0
    assert "conflict" in refused.stderr.lower(), refused.stderr

    plane.kubectl(*CRD_UPGRADE, "-f", str(crds))
    plane.kubectl("wait", "--for=condition=Established", "crd/raasjobs.raas.dev", "--timeout=60s")
    job["metadata"]["name"] = "after"
    job["spec"]["lab"] = "north"
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(job))
    with plane.api_client() as admin:
        custom = kubernetes.client.CustomObjectsApi(admin)
        assert custom.get_namespaced_custom_object("raas.dev", "v1alpha1", JOBS, "raasjobs", "before")
        after = custom.get_namespaced_custom_object("raas.dev", "v1alpha1", JOBS, "raasjobs", "after")
    assert after["spec"]["lab"] == "north"  # the new field is kept, not pruned
    table = plane.kubectl("-n", JOBS, "get", "rj", "after").stdout.splitlines()
    assert "LAB" in table[0].split(), table
    assert "north" in table[1].split(), table

    upgraded = plane.helm(
        "upgrade", RELEASE, str(CHART), "--namespace", SYSTEM,
        "--set", f"images.registry={REGISTRY}", "--set", "operator.replicas=1",
    )  # fmt: skip
    assert "has been upgraded" in upgraded.stdout, upgraded.stdout


def test_the_docs_give_the_tested_crd_upgrade_command() -> None:
    root = CHART.parents[1]
    command = "kubectl " + " ".join(CRD_UPGRADE)
    for path in (CHART / "templates" / "NOTES.txt", CHART / "README.md", root / "docs" / "k3s-raspberry-pi.md"):
        text = path.read_text()
        assert command in text, f"{path.relative_to(root)} does not give `{command}`"
        assert not re.search(r"kubectl apply --server-side -f (charts/raas|<chart>)/crds", text), (
            f"{path.relative_to(root)}: old command"
        )
