"""`python -m benchmarks [name ...]`: run the benchmarks and print their figures."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys

from benchmarks.report import Report

BENCHMARKS = (
    "env_bench",
    "scheduler_bench",
    "agent_bench",
    "platform_bench",
    "api_bench",
    "operator_bench",
    "latency_bench",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run, from {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="shorter runs (less precise figures)")
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    report = Report()
    print(f"RaaS benchmarks on {platform.machine()}, Python {platform.python_version()}")
    for name in arguments.names or BENCHMARKS:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as error:
            print(f"\n== {name}: not available ({error})")
            continue
        runner = module.run
        if arguments.quick and hasattr(module, "run_quick"):
            runner = module.run_quick
        runner(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
