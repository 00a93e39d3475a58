"""Fixtures of the stand-in kubelet's tests: the runtime image and a namespace per test (the
session's ``control_plane`` comes from tests/conftest.py)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator

import pytest
from controlplane.cluster import ControlPlane

from raas_node.runner.image import ensure_runtime_image


@pytest.fixture(scope="session")
def runtime_image() -> str:
    """The runtime image (built once per machine). Podman is a test dependency installed by
    scripts/install-system-deps (as root): without it these tests fail, they do not skip."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.fail("podman and runc are needed (real containers): run scripts/install-system-deps as root")
    if os.geteuid() != 0:
        pytest.fail("the podman kubelet needs root (rootful podman, mounts, setns)")
    return ensure_runtime_image()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A namespace of this test's own, deleted after it."""
    with control_plane.namespace(f"kubelet-{secrets.token_hex(3)}") as name:
        yield name
