"""Telling an API server outage from a failure of the operator's own.

While the API server restarts (an upgrade, a crash, a control-plane node lost) every request
fails with a refused or cut connection, and a busy server answers 429 or 5xx. Those are outages:
the operator retries them (its work queue, kopf's watches) and says so in one line, with no stack
trace that would read like a bug of its own.
"""

from __future__ import annotations

import urllib3
from kubernetes.client.exceptions import ApiException


def is_api_outage(error: BaseException) -> bool:
    """Whether `error` says the API server was unreachable or could not serve (a refused or cut
    connection, a 5xx, a 429), rather than that it refused the request."""
    if isinstance(error, ApiException):
        return error.status in (0, 429) or error.status >= 500
    return isinstance(error, (urllib3.exceptions.HTTPError, ConnectionError))


def outage_summary(error: BaseException) -> str:
    """One line saying what the outage was (for a warning, not a traceback)."""
    if isinstance(error, ApiException):
        return f"the API server answered {error.status} {error.reason}"
    reason = getattr(error, "reason", None)
    return f"the API server is unreachable ({type(reason or error).__name__}: {reason or error})"
