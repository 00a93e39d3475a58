"""API tokens as Secrets of a cluster, so that they outlive the API's pods and every replica sees them.

One Secret per token, ``raas-token-<id>``, labelled ``raas.dev/token=true``, ``raas.dev/owner``
and ``raas.dev/role``; its data holds only the SHA-256 of the token's secret (as `TokenStore`
keeps it), and a revoked token keeps its Secret with the label ``raas.dev/revoked=true`` (so
that listings show it). A verified token is remembered for `cache_s` seconds, so that a request
costs no read of the API server; a revocation therefore takes effect within that time on every
replica.
"""

from __future__ import annotations

import base64
import threading
import time
from datetime import datetime, timezone
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from raas_api.auth.tokens import HashedTokens, Role, TokenInfo, new_token

TOKEN_LABEL = "raas.dev/token"
OWNER_LABEL = "raas.dev/owner"
ROLE_LABEL = "raas.dev/role"
REVOKED_LABEL = "raas.dev/revoked"
CREATED_ANNOTATION = "raas.dev/created-at"
HASH_KEY = "secret-sha256"


def secret_name(token_id: str) -> str:
    return f"raas-token-{token_id}"


class SecretTokenStore(HashedTokens):
    """Tokens in `namespace` through `core` (the API's service account needs get, list, create and
    patch on its Secrets)."""

    def __init__(
        self,
        namespace: str,
        core: client.CoreV1Api,
        *,
        bootstrap_admin_token: str | None = None,
        cache_s: float = 10.0,
    ) -> None:
        self.namespace = namespace
        self.core = core
        self.cache_s = cache_s
        super().__init__(bootstrap_admin_token)
        self._cache: dict[str, tuple[float, str, TokenInfo]] = {}
        self._lock = threading.Lock()

    def create(self, owner: str, role: Role = Role.USER) -> tuple[str, TokenInfo]:
        made = new_token(owner)
        created = datetime.now(timezone.utc)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": secret_name(made.token_id),
                "namespace": self.namespace,
                "labels": {TOKEN_LABEL: "true", OWNER_LABEL: owner, ROLE_LABEL: role.value},
                "annotations": {CREATED_ANNOTATION: created.isoformat()},
            },
            "type": "Opaque",
            "data": {HASH_KEY: base64.b64encode(made.secret_sha256.encode()).decode()},
        }
        self.core.create_namespaced_secret(self.namespace, cast(Any, body))
        return made.token, TokenInfo(made.token_id, owner, role, created, False)

    def _lookup(self, token_id: str) -> tuple[TokenInfo, str] | None:
        with self._lock:
            cached = self._cache.get(token_id)
        if cached is not None and time.monotonic() - cached[0] < self.cache_s:
            return cached[2], cached[1]
        try:
            secret = self.core.read_namespaced_secret(secret_name(token_id), self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        info, stored = _info(secret)
        if info is None:
            return None
        with self._lock:
            self._cache[token_id] = (time.monotonic(), stored, info)
        return info, stored

    def revoke(self, token_id: str) -> bool:
        patch = {"metadata": {"labels": {REVOKED_LABEL: "true"}}}
        try:
            self.core.patch_namespaced_secret(secret_name(token_id), self.namespace, patch)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        with self._lock:
            self._cache.pop(token_id, None)
        return True

    def list_tokens(self) -> list[TokenInfo]:
        listing = self.core.list_namespaced_secret(self.namespace, label_selector=f"{TOKEN_LABEL}=true")
        infos = [info for info, _ in map(_info, listing.items) if info is not None]
        return sorted(infos, key=lambda info: info.created_at)

    def close(self) -> None:
        with self._lock:
            self._cache.clear()


def _info(secret: client.V1Secret) -> tuple[TokenInfo | None, str]:
    """The token a Secret holds, and the stored hash (None for a Secret that is not a token)."""
    metadata = secret.metadata
    labels = (metadata.labels if metadata else None) or {}
    data = secret.data or {}
    if metadata is None or not metadata.name or labels.get(TOKEN_LABEL) != "true" or HASH_KEY not in data:
        return None, ""
    try:
        role = Role(labels.get(ROLE_LABEL, Role.USER.value))
        created = datetime.fromisoformat((metadata.annotations or {})[CREATED_ANNOTATION])
    except (ValueError, KeyError):
        return None, ""
    token_id = metadata.name.removeprefix("raas-token-")
    revoked = labels.get(REVOKED_LABEL) == "true"
    stored = base64.b64decode(data[HASH_KEY]).decode()
    return TokenInfo(token_id, labels.get(OWNER_LABEL, ""), role, created, revoked), stored
