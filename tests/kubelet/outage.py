"""What a kubelet rides out: the API server unreachable or unable to serve for a while.

A real kubelet keeps its pods running through an API server restart and catches up afterwards
(the Lease, the node status, every pod status it could not write). The stand-in does the same:
such failures are outages (`is_outage`, the operator's own test of one), noted but not failures
of the stand-in, and the write that met one is tried again (`until_served`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from raas_operator.runtime.outage import is_api_outage as is_outage

T = TypeVar("T")

RETRY_S = 0.5
PATIENCE_S = 120.0
"""How long a write waits out an outage before it counts as a failure."""

Reporter = Callable[[str, BaseException], None]
"""``report(what, error)``: the kubelet's record of a failed call (an outage or a failure)."""


def until_served(call: Callable[[], T], stopping: threading.Event) -> T | None:
    """`call()`, tried again every `RETRY_S` while the API server has an outage, for at most
    `PATIENCE_S`; None once `stopping` is set. Any other error, or an outage past the patience,
    propagates."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            return call()
        except Exception as error:
            if not is_outage(error) or time.monotonic() > deadline:
                raise
        if stopping.wait(RETRY_S):
            return None
