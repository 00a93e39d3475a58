"""API tokens as Secrets of a cluster (`SecretTokenStore`), against the Kubernetes emulator (no real
API server can run here: ../shared/TESTING.md)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from k8s_fixtures import Emulator, running_emulator
from kubernetes import client

from raas_api.auth.kubernetes_tokens import SecretTokenStore
from raas_api.auth.tokens import BOOTSTRAP_OWNER, Role


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with running_emulator("raas") as running:
        yield running


@pytest.fixture
def core(emulator: Emulator) -> client.CoreV1Api:
    return client.CoreV1Api(emulator.api_client())


def test_a_token_is_a_secret_holding_only_its_hash_and_verifies(core: client.CoreV1Api) -> None:
    store = SecretTokenStore("raas", core, cache_s=0)
    token, info = store.create("ada")
    secret = core.read_namespaced_secret(f"raas-token-{info.token_id}", "raas")
    assert secret.metadata.labels == {"raas.dev/token": "true", "raas.dev/owner": "ada", "raas.dev/role": "user"}
    stored = base64.b64decode(secret.data["secret-sha256"]).decode()
    assert token.rsplit("_", 1)[-1] not in stored  # the hash, never the secret
    verified = store.verify(token)
    assert verified is not None
    assert (verified.owner, verified.role) == ("ada", Role.USER)
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None  # a wrong secret
    assert store.verify("raas_000000000000_x") is None  # no such token
    assert store.verify("not a token") is None


def test_every_replica_sees_tokens_and_revocations(core: client.CoreV1Api) -> None:
    first, second = SecretTokenStore("raas", core, cache_s=0), SecretTokenStore("raas", core, cache_s=0)
    token, info = first.create("bob", Role.ADMIN)
    assert second.verify(token) is not None  # another API pod, or the API after a restart
    assert second.revoke(info.token_id)
    assert first.verify(token) is None
    assert not first.revoke("000000000000")
    listed = {(token.owner, token.role, token.revoked) for token in first.list_tokens()}
    assert listed == {("bob", Role.ADMIN, True)}


def test_a_verified_token_is_remembered_for_the_cache_time(core: client.CoreV1Api) -> None:
    caching = SecretTokenStore("raas", core, cache_s=60)
    token, info = caching.create("ada")
    assert caching.verify(token) is not None
    SecretTokenStore("raas", core).revoke(info.token_id)  # on another replica
    assert caching.verify(token) is not None  # within the documented delay
    caching.revoke(info.token_id)  # on this replica: at once
    assert caching.verify(token) is None


def test_the_bootstrap_admin_token_is_accepted_but_never_stored(core: client.CoreV1Api) -> None:
    store = SecretTokenStore("raas", core, bootstrap_admin_token="from-the-chart-secret")
    info = store.verify("from-the-chart-secret")
    assert info is not None
    assert (info.owner, info.role) == (BOOTSTRAP_OWNER, Role.ADMIN)
    assert store.list_tokens() == []
    with pytest.raises(ValueError, match="owner"):
        store.create("Not Valid")


def test_raas_admin_manages_a_clusters_tokens_from_the_api_pod(
    emulator: Emulator,
    core: client.CoreV1Api,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``kubectl exec deploy/raas-api -- raas admin token create``: the pod's RAAS_BACKEND says where."""
    from cluster_world import use_kubeconfig

    from gym_raas.cli.main import main

    use_kubeconfig(monkeypatch, tmp_path, emulator)
    monkeypatch.setenv("RAAS_BACKEND", "kubernetes")
    monkeypatch.setenv("RAAS_KUBERNETES_NAMESPACE", "raas")
    assert main(["admin", "token", "create", "--owner", "erin"]) == 0
    token = capsys.readouterr().out.splitlines()[0]
    info = SecretTokenStore("raas", core).verify(token)
    assert info is not None
    assert info.owner == "erin"
    assert main(["admin", "token", "revoke", info.token_id]) == 0
    assert main(["admin", "token", "list"]) == 0
    assert "erin" in capsys.readouterr().out
    assert SecretTokenStore("raas", core).verify(token) is None
