"""How the platform's own pod programs (fetch pod, install container) report to the operator:
through the container's termination message, which Kubernetes copies into the pod's status."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from raas_node.runner.fetch import FetchError

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
Result = TypeVar("Result")


def run_reported(report: Path, step: Callable[[], Result], missing_setting: str) -> Result | None:
    """`step()`'s result; None after a failure, written to `report` as ``<Reason>: <message>`` (a
    `FetchError`) or as `missing_setting` followed by the missing variable's name (a `KeyError`)."""
    try:
        return step()
    except FetchError as error:
        report.write_text(f"{error.reason}: {error}"[:4000])
        print(f"{error.reason}: {error}", file=sys.stderr)
    except KeyError as missing:
        report.write_text(f"{missing_setting} {missing.args[0]}")
    return None
