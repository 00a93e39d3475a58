"""Fixtures of the real-control-plane tests: a fresh namespace per test that needs isolation.

The session's control plane itself (``control_plane``) and the chart installed once on it
(``raas_chart``) come from ``tests/conftest.py``, shared with the suites of the other folders: one
control plane per pytest session overall.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from controlplane.cluster import ControlPlane


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this test's own (named after it), deleted after it."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    with control_plane.namespace(f"{stem}-{secrets.token_hex(3)}") as name:
        yield name
