"""API tokens: created and revoked by an admin command, stored hashed, checked per request.

A token reads ``raas_<id>_<secret>``: the id finds the record, the secret (32 random bytes) is
compared by its SHA-256 in constant time. A fast hash is right here: the secret is random and
long, so there is nothing to brute-force that a slow password hash would protect; the store
never holds a usable token. `TokenStore` keeps them in SQLite (the local platform);
`raas_api.auth.kubernetes_tokens.SecretTokenStore` as Secrets of a cluster. Both accept one more
admin token given at start (`BootstrapToken`), which is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Protocol

from raas_api.stores.sqlite_files import open_checked
from raas_operator.jobs.model import NAME_PATTERN

_PREFIX = "raas"
BOOTSTRAP_TOKEN_ID = "bootstrap"
BOOTSTRAP_OWNER = "admin"
_EPOCH = datetime.fromtimestamp(0, timezone.utc)


class Role(str, Enum):
    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True)
class TokenInfo:
    """Who a token speaks for."""

    token_id: str
    owner: str
    role: Role
    created_at: datetime
    revoked: bool


class Tokens(Protocol):
    """Where API tokens live."""

    def create(self, owner: str, role: Role = Role.USER) -> tuple[str, TokenInfo]:
        """A new token for `owner`; returns the token (shown once, never stored) and its info."""

    def verify(self, token: str) -> TokenInfo | None:
        """The token's info if it is valid and not revoked, else None."""

    def revoke(self, token_id: str) -> bool:
        """Revoke a token by id; False if there is no such token."""

    def list_tokens(self) -> list[TokenInfo]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class NewToken:
    """A token as made for `owner`: what the user gets, and what the store keeps."""

    token: str
    token_id: str
    secret_sha256: str


def new_token(owner: str) -> NewToken:
    """A fresh token for `owner` (ValueError for an owner name the platform cannot use)."""
    if not re.match(NAME_PATTERN, owner):
        raise ValueError(f"owner {owner!r} must be lowercase letters, digits and '-'")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewToken(f"{_PREFIX}_{token_id}_{secret}", token_id, _digest(secret))


def parse_token(token: str) -> tuple[str, str] | None:
    """(id, SHA-256 of the secret) of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX or not re.fullmatch(r"[0-9a-f]{12}", parts[1]):
        return None
    return parts[1], _digest(parts[2])


def secret_matches(stored_sha256: str, presented_sha256: str) -> bool:
    return hmac.compare_digest(stored_sha256, presented_sha256)


class BootstrapToken:
    """One admin token given rather than created (a cluster's Secret holds it, so that the first
    admin can create the others); only its hash is kept in memory."""

    def __init__(self, token: str | None) -> None:
        self._sha256 = _digest(token) if token else None

    def verify(self, token: str) -> TokenInfo | None:
        if self._sha256 is None or not hmac.compare_digest(self._sha256, _digest(token)):
            return None
        return TokenInfo(BOOTSTRAP_TOKEN_ID, BOOTSTRAP_OWNER, Role.ADMIN, _EPOCH, False)


class HashedTokens(ABC):
    """Verification shared by the stores: the bootstrap token, else the stored hash of the token's id."""

    def __init__(self, bootstrap_admin_token: str | None) -> None:
        self._bootstrap = BootstrapToken(bootstrap_admin_token)

    def verify(self, token: str) -> TokenInfo | None:
        """The token's info if it is valid and not revoked, else None."""
        bootstrap = self._bootstrap.verify(token)
        if bootstrap is not None:
            return bootstrap
        parsed = parse_token(token)
        if parsed is None:
            return None
        token_id, presented = parsed
        found = self._lookup(token_id)
        if found is None:
            return None
        info, stored = found
        return None if info.revoked or not secret_matches(stored, presented) else info

    @abstractmethod
    def _lookup(self, token_id: str) -> tuple[TokenInfo, str] | None:
        """The token with this id and its stored hash (None if there is none)."""


class TokenStore(HashedTokens):
    """Hashed API tokens in SQLite (thread-safe)."""

    def __init__(self, path: Path, *, bootstrap_admin_token: str | None = None) -> None:
        """`bootstrap_admin_token`: see `BootstrapToken`."""
        super().__init__(bootstrap_admin_token)
        self._db = open_checked(path, "the API tokens")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, owner TEXT NOT NULL, role TEXT NOT NULL,"
            " secret_sha256 TEXT NOT NULL, created_at TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0)"
        )
        self._lock = threading.Lock()

    def create(self, owner: str, role: Role = Role.USER) -> tuple[str, TokenInfo]:
        """A new token for `owner`; returns the token (shown once, never stored) and its info."""
        made = new_token(owner)
        created = datetime.now(timezone.utc)
        with self._lock:
            self._db.execute(
                "INSERT INTO tokens (id, owner, role, secret_sha256, created_at) VALUES (?, ?, ?, ?, ?)",
                (made.token_id, owner, role.value, made.secret_sha256, created.isoformat()),
            )
        return made.token, TokenInfo(made.token_id, owner, role, created, False)

    def _lookup(self, token_id: str) -> tuple[TokenInfo, str] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT owner, role, secret_sha256, created_at, revoked FROM tokens WHERE id = ?", (token_id,)
            ).fetchone()
        if row is None:
            return None
        return TokenInfo(token_id, row[0], Role(row[1]), datetime.fromisoformat(row[3]), bool(row[4])), row[2]

    def revoke(self, token_id: str) -> bool:
        """Revoke a token by id; False if there is no such token."""
        with self._lock:
            cursor = self._db.execute("UPDATE tokens SET revoked = 1 WHERE id = ?", (token_id,))
        return cursor.rowcount > 0

    def list_tokens(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, owner, role, created_at, revoked FROM tokens ORDER BY created_at"
            ).fetchall()
        return [TokenInfo(row[0], row[1], Role(row[2]), datetime.fromisoformat(row[3]), bool(row[4])) for row in rows]

    def close(self) -> None:
        self._db.close()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
