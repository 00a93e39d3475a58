"""Fixtures of the stand-in kubelet's tests: a namespace per test (the session's ``control_plane``
and the ``runtime_image`` come from tests/conftest.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from controlplane.cluster import ControlPlane


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A namespace of this test's own, deleted after it."""
    with control_plane.namespace(f"kubelet-{secrets.token_hex(3)}") as name:
        yield name
