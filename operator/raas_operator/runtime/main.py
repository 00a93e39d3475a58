"""``raas-operator``: run the kopf operator for the namespace the settings name.

raas-operator [--standalone | --peering NAME --priority N|auto] [--liveness URL] [--metrics-port P]

``--priority auto`` gives each replica of a Deployment its own priority, derived from its pod's
name (``$POD_NAME``, else the host name): kopf freezes every peer when two share a priority, so
replicas started from one template need distinct ones. The highest is active, the others stand by.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import zlib

import kopf

from raas_operator.runtime.settings import OperatorSettings

AUTO_PRIORITY_RANGE = 1_000_000
"""`--priority auto` picks from 1 … this: two replicas collide with a chance of one in a million."""


def auto_priority(pod_name: str) -> int:
    """A stable priority for the pod named `pod_name`, in 1 … `AUTO_PRIORITY_RANGE`."""
    return 1 + zlib.crc32(pod_name.encode()) % AUTO_PRIORITY_RANGE


def _priority(value: str) -> int:
    if value == "auto":
        return auto_priority(os.environ.get("POD_NAME") or socket.gethostname())
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--priority takes a whole number or 'auto', not {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raas-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--standalone", action="store_true", help="no peering with other operators")
    parser.add_argument(
        "--peering", default="raas-operator", help="peering object shared by an operator and its standbys"
    )
    parser.add_argument(
        "--priority", type=_priority, default=0, help="the highest-priority peer is the active one ('auto': per pod)"
    )
    parser.add_argument(
        "--liveness", metavar="URL", help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument("--metrics-port", type=int, help="serve the fleet metrics (Prometheus) on this port")
    parser.add_argument("--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if arguments.verbose else logging.INFO)
    settings = OperatorSettings()  # type: ignore[call-arg]  # from the environment; fails early when incomplete
    import raas_operator.runtime.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        memo=kopf.Memo(metrics_port=arguments.metrics_port),
        namespaces=[settings.namespace],
        standalone=arguments.standalone,
        peering_name=None if arguments.standalone else arguments.peering,
        priority=arguments.priority,
        liveness_endpoint=arguments.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
