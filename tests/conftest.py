"""Fixtures every test folder may use: the real Kubernetes control plane, one per pytest session.

- ``control_plane``: etcd, kube-apiserver, controller manager and scheduler on loopback
  (`controlplane.cluster.ControlPlane`), started by the first test that asks for it and stopped at
  the end of the session (and by ``atexit`` and a parent-death signal if the session dies first).
  The binaries come from ``RAAS_CONTROLPLANE_BIN`` (``make test`` sets it), else from
  ``tests/controlplane/build.sh``; when they are missing the fixture fails with what to run, it
  does not skip.
- ``runtime_image``: the job image the stand-in kubelet's nodes run (podman, built once per
  machine), shared by the kubelet's and the operator's cluster tests.
- ``raas_chart`` and ``service_account_client`` (plugin `controlplane.chart_install`): charts/raas
  helm-installed once per session, and API clients holding a TokenRequest token of one of the
  chart's ServiceAccounts, so that each component meets the chart's real RBAC.

Only this file defines them: a second definition (in a folder's conftest or a test module) would
be a second fixture with a cache of its own, hence a second control plane or a second install.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from controlplane.cluster import ControlPlane

pytest_plugins = ["controlplane.chart_install"]


@pytest.fixture(scope="session")
def runtime_image() -> str:
    """The runtime image (built once per machine). Podman is a test dependency installed by
    scripts/install-system-deps (as root): without it these tests fail, they do not skip."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.fail("podman and runc are needed (real containers): run scripts/install-system-deps as root")
    if os.geteuid() != 0:
        pytest.fail("the podman kubelet needs root (rootful podman, mounts, setns)")
    from raas_node.runner.image import ensure_runtime_image

    return ensure_runtime_image()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd, API server, controller manager and scheduler on loopback, for the whole session."""
    from controlplane.cluster import ControlPlane  # (imported here: most sessions never start one)

    with ControlPlane() as plane:
        yield plane
