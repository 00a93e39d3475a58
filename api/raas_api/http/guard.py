"""The API's door: the bearer token is checked before any of a request's body is read, and every
body is capped.

`RequestGuard` is a plain ASGI middleware, the outermost of the app's own, because FastAPI reads
and parses a body before it runs a route's dependencies: without it, a 400 MB POST without a token
was read into memory before its 401. For paths under ``/api/`` the token must be one the token
store knows (401 otherwise); ``/metrics`` needs ``settings.metrics_token`` when one is set. A
declared ``Content-Length`` over the cap is a 413 before anything is read; a streamed body is
counted as it arrives and refused (413) as soon as it passes the cap. Refusals of a request that
came with a body close the connection, so that the rest of it is not read either.

The token's record is left in the request's state (``raas_token``) for `deps.caller`, which adds
the rate limit and the role checks.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from raas_api.auth.tokens import TokenInfo, Tokens, TokenStore
from raas_api.settings import ApiSettings

UPLOAD_PATH = "/api/v1/jobs/upload"
MULTIPART_ALLOWANCE = 64 * 1024
"""Room for the multipart framing and form fields around an uploaded archive."""
TOKEN_STATE_KEY = "raas_token"

MISSING_TOKEN = "missing bearer token (Authorization: Bearer <token>)"
INVALID_TOKEN = "invalid or revoked token"


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` when a streamed body passes its cap (FastAPI re-raises HTTP errors
    met while reading a body, so the app answers 413 with the usual error body)."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


def bearer_token(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class RequestGuard:
    """Token before body, and a cap on every body (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, tokens: Tokens, settings: ApiSettings) -> None:
        self.app = app
        self.tokens = tokens
        self.settings = settings
        metrics = settings.metrics_token
        self.metrics_token = metrics.get_secret_value() if metrics is not None else None

    def cap(self, path: str) -> tuple[int, str]:
        """The largest body `path` accepts, and the refusal of a larger one."""
        if path == UPLOAD_PATH:
            limit = self.settings.max_upload_bytes
            return limit + MULTIPART_ALLOWANCE, f"the archive is larger than this server's limit of {limit} bytes"
        limit = self.settings.max_body_bytes
        return limit, f"the request body is larger than this server's limit of {limit} bytes; send less"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        has_body = "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0")
        refusal = await self._refusal(scope, headers, path)
        if refusal is not None:
            await _respond(send, *refusal, close=has_body)
            return
        cap, too_large = self.cap(path)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _respond(send, 400, "the Content-Length header is not a number of bytes", close=True)
                return
            if int(declared) > cap:
                await _respond(send, 413, too_large, close=True)
                return
        await _CappedExchange(self.app, cap, too_large)(scope, receive, send)

    async def _refusal(self, scope: Scope, headers: Headers, path: str) -> tuple[int, str, dict[str, str]] | None:
        """(status, detail, headers) when the request may not go on, before its body is read."""
        challenge = {"WWW-Authenticate": "Bearer"}
        if path == "/metrics" and self.metrics_token is not None:
            token = bearer_token(headers)
            if token is None or not hmac.compare_digest(token.encode(), self.metrics_token.encode()):
                return 401, "/metrics needs the metrics token (Authorization: Bearer <RAAS_METRICS_TOKEN>)", challenge
            return None
        if not path.startswith("/api/"):
            return None
        token = bearer_token(headers)
        if token is None:
            return 401, MISSING_TOKEN, challenge
        info: TokenInfo | None
        if isinstance(self.tokens, TokenStore):
            # A primary-key read of a local SQLite file (tens of microseconds): cheaper on the
            # event loop than the thread pool's round trip. Other stores may go to the network.
            info = self.tokens.verify(token)
        else:
            info = await anyio.to_thread.run_sync(self.tokens.verify, token)
        if info is None:
            return 401, INVALID_TOKEN, challenge
        scope.setdefault("state", {})[TOKEN_STATE_KEY] = info
        return None


class _CappedExchange:
    """One request whose body may not pass `cap`: ``receive`` raises `BodyTooLargeError` when it
    does, and the response then closes the connection."""

    def __init__(self, app: ASGIApp, cap: int, too_large: str) -> None:
        self.app = app
        self.cap = cap
        self.too_large = too_large
        self.received = 0
        self.overflowed = False
        self.started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def capped_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.cap:
                    self.overflowed = True
                    raise BodyTooLargeError(self.too_large)
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.started = True
                if self.overflowed:
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, capped_receive, closing_send)
        except BodyTooLargeError as error:
            if self.started:
                raise
            await _respond(send, 413, str(error.detail), close=True)


async def _respond(send: Send, code: int, detail: str, extra: dict[str, str] | None = None, *, close: bool) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in (extra or {}).items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
