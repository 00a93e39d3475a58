"""``raas``: the RaaS command line (``raas demo``; more subcommands join as they are built)."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from gym_raas import __version__
from gym_raas.cli import commands, demo

PLUGIN_GROUP = "raas.cli"
"""Entry-point group through which installed RaaS components add subcommands (e.g. the local
platform's ``demo``); each entry is a function ``add_parser(subcommands)``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raas", description="RaaS: run controllers on real pendulum robots.")
    parser.add_argument("--version", action="version", version=f"raas {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands_group = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plugins = {entry.name: entry for entry in entry_points(group=PLUGIN_GROUP)}
    for entry in plugins.values():
        entry.load()(commands_group)
    if "demo" not in plugins:  # the platform's demo replaces the simulator-only one
        demo.add_parser(commands_group)
    commands.add_parsers(commands_group)  # after the plugins: a name a plugin took stays the plugin's
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if arguments.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return int(arguments.handler(arguments))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
