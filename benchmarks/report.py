"""Printing benchmark figures in one consistent table."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Report:
    """Collects (section, figure, value, goal) rows and prints them as they come."""

    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def section(self, title: str) -> None:
        print(f"\n== {title}", flush=True)

    def figure(self, section: str, name: str, value: str, goal: str = "") -> None:
        self.rows.append((section, name, value, goal))
        suffix = f"   (goal: {goal})" if goal else ""
        print(f"  {name:<58} {value:>16}{suffix}", flush=True)


def rate(run: Callable[[int], None], count: int, repeats: int = 3) -> float:
    """Best items-per-second of `repeats` runs of `run(count)`."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run(count)
        best = max(best, count / (time.perf_counter() - start))
    return best
