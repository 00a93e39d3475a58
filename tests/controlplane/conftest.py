"""Fixtures of the real-control-plane tests: one `ControlPlane` per test session, a fresh
namespace per test that needs isolation.

The binaries come from ``RAAS_CONTROLPLANE_BIN`` (``make test`` sets it), else from
``tests/controlplane/build.sh``; when they are missing the fixture fails with what to run, it does
not skip. The control plane is stopped at the end of the session, and by ``atexit`` and a
parent-death signal if the session dies first.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from controlplane.cluster import ControlPlane


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd, API server, controller manager and scheduler on loopback, for the whole session."""
    with ControlPlane() as plane:
        yield plane


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this test's own (named after it), deleted after it."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    with control_plane.namespace(f"{stem}-{secrets.token_hex(3)}") as name:
        yield name
