"""``raas-operator``: run the kopf operator for the namespace the settings name."""

from __future__ import annotations

import argparse
import logging
import sys

import kopf

from raas_operator.runtime.settings import OperatorSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raas-operator", description=__doc__)
    parser.add_argument("--standalone", action="store_true", help="no peering with other operators")
    parser.add_argument(
        "--peering", default="raas-operator", help="peering object shared by an operator and its standbys"
    )
    parser.add_argument("--priority", type=int, default=0, help="the highest-priority peer is the active one")
    parser.add_argument("--verbose", action="store_true")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if arguments.verbose else logging.INFO)
    settings = OperatorSettings()  # type: ignore[call-arg]  # from the environment; fails early when incomplete
    import raas_operator.runtime.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        namespaces=[settings.namespace],
        standalone=arguments.standalone,
        peering_name=None if arguments.standalone else arguments.peering,
        priority=arguments.priority,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
