"""A lab's `helm uninstall` and reinstall on the real control plane (issue 18, item 8): the users'
data outlives the release.

On a control plane of its own (the session's keeps its chart installed for the other tests): the
chart is installed, a user's API token is made (a Secret in the job namespace, by the API's own
token store) and a RaasJob applied; then `helm uninstall`. The chart's workloads and RBAC go, but
the job and robot namespaces stay (not Terminating), with the RaasJob and the token in them, and so
does the release's credentials Secret; a reinstall of the same release takes them over, reads the
same keys back, and the token still signs its owner in.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml
from controlplane.chart_install import JOBS, RELEASE, ROBOTS, SYSTEM, install_chart
from controlplane.cluster import ControlPlane

from raas_api.auth.kubernetes_tokens import SecretTokenStore

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "raasjob-swingup.yaml"


@pytest.fixture
def own_plane() -> Iterator[ControlPlane]:
    with ControlPlane() as plane:
        install_chart(plane)
        yield plane


def credentials(core: kubernetes.client.CoreV1Api) -> dict[str, str]:
    data: dict[str, str] = core.read_namespaced_secret(RELEASE, SYSTEM).data
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def test_helm_uninstall_keeps_the_users_jobs_tokens_and_keys_and_a_reinstall_takes_them_over(
    own_plane: ControlPlane,
) -> None:
    plane = own_plane
    job = yaml.safe_load(EXAMPLE.read_text())
    job["metadata"].update(name="kept", namespace=JOBS)
    with plane.api_client() as admin:
        core = kubernetes.client.CoreV1Api(admin)
        apps = kubernetes.client.AppsV1Api(admin)
        custom = kubernetes.client.CustomObjectsApi(admin)
        token, _ = SecretTokenStore(JOBS, core, cache_s=0).create("ada")
        custom.create_namespaced_custom_object("raas.dev", "v1alpha1", JOBS, "raasjobs", job)
        keys = credentials(core)
        assert [d.metadata.name for d in apps.list_namespaced_deployment(SYSTEM).items] != []

        uninstalled = plane.helm("uninstall", RELEASE, "--namespace", SYSTEM, "--wait", "--timeout", "60s")

        assert "kept due to the resource policy" in uninstalled.stdout + uninstalled.stderr
        assert apps.list_namespaced_deployment(SYSTEM).items == []  # the release is gone...
        assert apps.list_namespaced_daemon_set(ROBOTS).items == []
        for namespace in (JOBS, ROBOTS):  # ...its namespaces are not
            assert core.read_namespace(namespace).status.phase == "Active"
        assert custom.get_namespaced_custom_object("raas.dev", "v1alpha1", JOBS, "raasjobs", "kept")
        assert SecretTokenStore(JOBS, core, cache_s=0).verify(token) is not None
        assert credentials(core) == keys

        install_chart(plane)

        assert credentials(core) == keys  # read back: MinIO's data and the agents' sessions still match
        verified = SecretTokenStore(JOBS, core, cache_s=0).verify(token)
        assert verified is not None
        assert verified.owner == "ada"
        assert custom.get_namespaced_custom_object("raas.dev", "v1alpha1", JOBS, "raasjobs", "kept")
        labels = core.read_namespace(JOBS).metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "privileged"  # the chart's again
