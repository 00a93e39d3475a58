"""Scheduler core: one decision over 10,000 queued jobs and 100 robots."""

from __future__ import annotations

import random
import statistics
import time

from benchmarks.report import Report
from raas_operator.jobs.model import RobotRequest
from raas_operator.scheduling.core import Quotas, RobotView, WaitingJob, schedule

SECTION = "Scheduler core (raas_operator)"


def _workload(jobs: int, robots: int, seed: int = 0) -> tuple[list[WaitingJob], list[RobotView]]:
    rng = random.Random(seed)
    fleet = [
        RobotView(
            name=f"pendulum-{index:03d}",
            labels={"lab": rng.choice(["north", "south"])},
            ready=rng.random() < 0.3,
            free_at_s=rng.uniform(0, 120),
        )
        for index in range(robots)
    ]
    owners = [f"user-{index}" for index in range(200)]
    waiting = []
    for index in range(jobs):
        roll = rng.random()
        if roll < 0.05:
            request = RobotRequest(name=rng.choice(fleet).name)
        elif roll < 0.15:
            request = RobotRequest(selector={"lab": rng.choice(["north", "south"])})
        else:
            request = RobotRequest()
        waiting.append(
            WaitingJob(
                job_id=f"job-{index}",
                owner=rng.choice(owners),
                submitted_at_s=float(index),
                request=request,
                priority=rng.choice([0, 0, 0, 0, 10]),
                expected_duration_s=rng.uniform(10, 120),
            )
        )
    return waiting, fleet


def run(report: Report) -> None:
    report.section(SECTION)
    waiting, fleet = _workload(10_000, 100)
    quotas = Quotas(max_running_per_owner=2, max_queued_per_owner=10_000)
    timings = []
    for _ in range(7):
        start = time.perf_counter()
        decision = schedule(waiting, fleet, {}, quotas, now_s=0.0)
        timings.append(time.perf_counter() - start)
    report.figure(
        SECTION,
        "decision, 10,000 queued jobs × 100 robots (median)",
        f"{statistics.median(timings) * 1e3:.1f} ms",
        "≤ 50 ms",
    )
    report.figure(
        SECTION, "  of which assignments / queue estimates", f"{len(decision.assignments)} / {len(decision.queue)}"
    )
