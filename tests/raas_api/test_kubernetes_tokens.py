"""API tokens as Secrets of a cluster (`SecretTokenStore`), on the real control plane.

The store speaks as the web API's own ServiceAccount (``raas-system/raas-api``, a TokenRequest
token) to the namespace the chart keeps the tokens in (the job namespace, ``raas-jobs``): the
chart's RBAC is the one in force, so a call the API's Role does not grant fails here as it would
in a cluster. That Role grants get, list, create and patch on Secrets but not delete, so the
tokens a test made are deleted after it as the admin (the chart's namespaces are shared by the
whole session).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from controlplane.chart_install import API, JOBS, ServiceAccountClient, token_for, token_kubeconfig
from controlplane.cluster import ControlPlane
from kubernetes import client

from raas_api.auth.kubernetes_tokens import TOKEN_LABEL, SecretTokenStore
from raas_api.auth.tokens import BOOTSTRAP_OWNER, Role

pytestmark = pytest.mark.slow


def delete_tokens(plane: ControlPlane) -> None:
    """Every token Secret of the job namespace, deleted as the admin."""
    with plane.api_client() as admin:
        client.CoreV1Api(admin).delete_collection_namespaced_secret(JOBS, label_selector=f"{TOKEN_LABEL}=true")


@pytest.fixture
def core(raas_chart: ControlPlane, service_account_client: ServiceAccountClient) -> Iterator[client.CoreV1Api]:
    """The Core API as the web API's ServiceAccount, on a job namespace without tokens."""
    delete_tokens(raas_chart)
    yield client.CoreV1Api(service_account_client(API))
    delete_tokens(raas_chart)


def test_a_token_is_a_secret_holding_only_its_hash_and_verifies(core: client.CoreV1Api) -> None:
    store = SecretTokenStore(JOBS, core, cache_s=0)
    token, info = store.create("ada")
    secret = core.read_namespaced_secret(f"raas-token-{info.token_id}", JOBS)
    assert secret.metadata is not None
    assert secret.data is not None
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
    first, second = SecretTokenStore(JOBS, core, cache_s=0), SecretTokenStore(JOBS, core, cache_s=0)
    token, info = first.create("bob", Role.ADMIN)
    assert second.verify(token) is not None  # another API pod, or the API after a restart
    assert second.revoke(info.token_id)
    assert first.verify(token) is None
    assert not first.revoke("000000000000")
    listed = {(token.owner, token.role, token.revoked) for token in first.list_tokens()}
    assert listed == {("bob", Role.ADMIN, True)}


def test_a_verified_token_is_remembered_for_the_cache_time(core: client.CoreV1Api) -> None:
    caching = SecretTokenStore(JOBS, core, cache_s=60)
    token, info = caching.create("ada")
    assert caching.verify(token) is not None
    SecretTokenStore(JOBS, core).revoke(info.token_id)  # on another replica
    assert caching.verify(token) is not None  # within the documented delay
    caching.revoke(info.token_id)  # on this replica: at once
    assert caching.verify(token) is None


def test_the_bootstrap_admin_token_is_accepted_but_never_stored(core: client.CoreV1Api) -> None:
    store = SecretTokenStore(JOBS, core, bootstrap_admin_token="from-the-chart-secret")
    info = store.verify("from-the-chart-secret")
    assert info is not None
    assert (info.owner, info.role) == (BOOTSTRAP_OWNER, Role.ADMIN)
    assert store.list_tokens() == []
    with pytest.raises(ValueError, match="owner"):
        store.create("Not Valid")


def test_raas_admin_manages_a_clusters_tokens_from_the_api_pod(
    raas_chart: ControlPlane,
    core: client.CoreV1Api,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``kubectl exec deploy/raas-api -- raas admin token create``: the pod's RAAS_BACKEND says where.

    The CLI loads its kubeconfig (here one holding the API ServiceAccount's token, as the pod's
    mounted token would be), so it meets the same RBAC as the API."""
    from gym_raas.cli.main import main

    kubeconfig = token_kubeconfig(raas_chart, tmp_path / "kubeconfig", token_for(raas_chart, *API), JOBS)
    for name in [name for name in os.environ if name.startswith("KUBERNETES_SERVICE")]:
        monkeypatch.delenv(name)  # not in a pod: the kubeconfig, not the in-cluster configuration
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.setenv("RAAS_BACKEND", "kubernetes")
    monkeypatch.setenv("RAAS_KUBERNETES_NAMESPACE", JOBS)
    assert main(["admin", "token", "create", "--owner", "erin"]) == 0
    token = capsys.readouterr().out.splitlines()[0]
    info = SecretTokenStore(JOBS, core).verify(token)
    assert info is not None
    assert info.owner == "erin"
    assert main(["admin", "token", "revoke", info.token_id]) == 0
    assert main(["admin", "token", "list"]) == 0
    assert "erin" in capsys.readouterr().out
    assert SecretTokenStore(JOBS, core).verify(token) is None
