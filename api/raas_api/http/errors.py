"""The API's one error body, ``{"detail": "<one sentence>"}``, and how routes document it.

Every error response of every route is listed in the OpenAPI document with this body (422 adds
the list of problems), so that clients generated from the document and schema checkers agree
with what the server sends.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import HTTPException, status
from pydantic import BaseModel

MAX_DETAIL_CHARS = 1000
"""Longest ``detail`` sent: a message built from a user's input or a failing tool stays readable."""

_WHY = {
    400: "The request is malformed: a body that cannot be parsed, a bad Content-Length or cursor.",
    401: "No valid bearer token.",
    403: "The token may not do this.",
    404: "No such resource, or not the caller's.",
    409: "The resource changed meanwhile; read it again and retry.",
    413: "The request body is larger than this server accepts.",
    422: "The request is well-formed but not acceptable.",
    429: "Over a rate limit or a quota; ``Retry-After`` says when to retry, where it applies.",
    503: "A store the request needs is unavailable; retry later.",
}


class ErrorBody(BaseModel):
    """Every error: what was wrong and what to do, in one sentence."""

    detail: str


class Problem(BaseModel):
    """One invalid part of a request."""

    loc: list[str | int]
    msg: str


class ValidationErrorBody(ErrorBody):
    """A request that does not match the schema: the first problem in ``detail``, all in ``errors``."""

    errors: list[Problem] = []


def bounded(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    omitted = f" … ({len(text) - limit} more characters)"
    return text[: max(0, limit - len(omitted))] + omitted


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of these error statuses."""
    return {
        code: {"model": ValidationErrorBody if code == 422 else ErrorBody, "description": _WHY[code]} for code in codes
    }


AUTHENTICATED = error_responses(400, 401, 413, 422, 429)
"""What any route behind a token can answer: unparsable request, no token, body too large, bad input,
rate limit."""


def retry_after_s(wait_s: float) -> int:
    """Whole seconds for ``Retry-After``: never 0, never before the wait is over."""
    return max(1, math.ceil(wait_s))


def too_many_requests(what: str, wait_s: float) -> HTTPException:
    """A 429 whose message and ``Retry-After`` header name the same number of seconds."""
    seconds = retry_after_s(wait_s)
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS, f"{what}; retry in {seconds} s", {"Retry-After": str(seconds)}
    )
