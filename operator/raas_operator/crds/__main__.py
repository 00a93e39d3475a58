"""``python -m raas_operator.crds [DIRECTORY] [--check]``: write the CRD YAML files, or check them.

DIRECTORY defaults to ``manifests/crds``. With ``--check`` nothing is written; the exit status is
1 when a file is missing or differs from what the models generate (for CI and pre-commit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raas_operator.crds.generate import rendered_crds, write_crds


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m raas_operator.crds", description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=Path("manifests/crds"))
    parser.add_argument("--check", action="store_true", help="only report whether the files are up to date")
    arguments = parser.parse_args(argv)
    if arguments.check:
        stale = [
            name
            for name, text in rendered_crds().items()
            if not (arguments.directory / name).is_file()
            or (arguments.directory / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            sys.stderr.write(f"{arguments.directory / name} is out of date: run python -m raas_operator.crds\n")
        return 1 if stale else 0
    for path in write_crds(arguments.directory):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
