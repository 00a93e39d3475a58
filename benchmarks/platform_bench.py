"""Local platform: dispatch latency, controller exit → results available, bundle size.

* Dispatch latency: one robot, two jobs queued; from the moment the robot is free again (idle
  after the first job: session closed, pendulum reset) to the first line of the second
  controller running. Peer: starting a bare ``python -c pass`` in the same run, the floor of
  any launcher that starts a fresh interpreter. Measured for each isolation level: a
  subprocess; a cold container (``podman run`` per job, `run_in_container`); a warm container
  (`ContainerPool`: the robot's container already started, the job handed over) — with the
  ratios to the subprocess and the cost of a container start alone (``podman run`` until its
  first program runs), which the pool takes off the dispatch path. The container figures need
  root and podman and build the job image first if it is missing.
* Results: a controller drives a swinging pendulum for 60 s (10 s with ``--quick``); from its
  last line (it prints the time) to the job's terminal phase, when every file of the bundle is
  in the store. Includes the robot's reset after the run, the replay, the plot and the GIF.
* Bundle size of that run, per file.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.report import Report
from gym_raas.params import PendulumParams
from gym_raas.results.layout import job_prefix
from raas_api.local.platform import Isolation, LocalPlatform, PlatformConfig
from raas_node.agent.agent import AgentState
from raas_node.runner.container import (
    ContainerShape,
    discard,
    hard_stop_after_s,
    reap_containers,
    start_container,
)
from raas_node.runner.image import ImageBuildError, ensure_runtime_image
from raas_node.runner.launch import RunRequest
from raas_node.runner.warm_pool import ContainerPool
from raas_operator.jobs.model import JobSpec, Phase

SECTION = "Local platform (raas_api.local)"

CONTROLLER = """
    import time
    print("started", repr(time.time()), flush=True)
    import math
    import gymnasium as gym
    import numpy as np
    import gym_raas
    steps = {steps}
    env = gym.make("RaasPendulum-v0", max_episode_steps=steps)
    env.reset()
    for step in range(steps):
        env.step(np.array([math.sin(step * 0.05)], dtype=np.float32))
    env.close()
    print("exiting", repr(time.time()), flush=True)
"""


def _controller(folder: Path, steps: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.py").write_text(textwrap.dedent(CONTROLLER.format(steps=steps)))
    return folder


def _printed_time(platform: LocalPlatform, job_id: str, word: str) -> float:
    stdout = platform.results.get_bytes(job_prefix(job_id) + "stdout.txt").decode()
    line = next(line for line in stdout.splitlines() if line.startswith(word))
    return float(line.split()[1])


def _terminal_time(platform: LocalPlatform, job_id: str) -> float:
    return platform.get(job_id).status.history[-1].at.timestamp()


def _python_start_s() -> float:
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-s", "-c", "pass"], check=True)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def _dispatch_s(platform: LocalPlatform, short: Path, pairs: int) -> float:
    """Median of `pairs` measurements: robot free → the next queued controller's first line."""
    latencies = []
    for _ in range(pairs):
        first, second = (
            platform.submit(JobSpec.model_validate({"owner": "bench", "source": {"kind": "local", "path": str(short)}}))
            for _ in range(2)
        )
        for record in (first, second):
            done = platform.wait(record.job_id, timeout_s=120)
            assert done.status.phase is Phase.SUCCEEDED, done.status
        started = _printed_time(platform, second.job_id, "started")
        agent = platform.agents[platform.get(second.job_id).status.robot or ""]
        free_at = max(at for at, state in agent.state_changes if state is AgentState.IDLE and at < started)
        latencies.append(started - free_at)
    return statistics.median(latencies)


def _container_start_s(image: str, repeats: int = 5) -> float:
    """Median time from ``podman run`` to the container's first program running (and saying so)."""
    timings = []
    shape = ContainerShape.for_limits(PlatformConfig(data_dir=Path("/")).run_limits)
    for _ in range(repeats):
        start = time.perf_counter()
        container = start_container(image, shape, owner="bench", timeout_s=hard_stop_after_s(60))
        timings.append(time.perf_counter() - start)
        discard(container)
    return statistics.median(timings)


def _handoff_s(image: str, root: Path, repeats: int = 5) -> float:
    """Median time from `ContainerPool.run` to the first line of a controller in a warm container."""
    code = root / "handoff" / "code"
    code.mkdir(parents=True)
    (code / "run.py").write_text("import time\nprint('started', repr(time.time()), flush=True)\n")
    limits = PlatformConfig(data_dir=Path("/")).run_limits
    timings = []
    with ContainerPool(image, owner="bench") as pool:
        pool.prepare("robot", limits=limits)
        for index in range(repeats):
            assert pool.wait_ready("robot", timeout_s=120)
            stdout = root / "handoff" / f"stdout-{index}.txt"
            request = RunRequest(
                code, "run.py", root / "handoff" / "scratch", stdout, stdout.with_suffix(".err"), limits
            )
            called = time.time()
            pool.run(request, slot="robot")
            timings.append(float(stdout.read_text().split()[1]) - called)
    reap_containers("bench")
    return statistics.median(timings)


def _runtime_image() -> str | None:
    """The job image, or None (with the reason printed) where containers cannot run."""
    if os.geteuid() != 0 or shutil.which("podman") is None:
        print("  (container figures need root and podman: skipped)", flush=True)
        return None
    try:
        return ensure_runtime_image()
    except ImageBuildError as error:
        print(f"  (container figures skipped: {error})", flush=True)
        return None


def _measure_containers(report: Report, root: Path, short: Path, pairs: int, process_s: float) -> None:
    image = _runtime_image()
    if image is None:
        return
    figures = {}
    for kind in ("cold", "warm"):
        config = PlatformConfig(
            data_dir=root / f"platform-{kind}",
            robots=1,
            isolation=Isolation.CONTAINER,
            container_image=image,
            warm_containers=kind == "warm",
        )
        with LocalPlatform(config) as platform:
            figures[kind] = _dispatch_s(platform, short, pairs)
        report.figure(
            SECTION,
            f"dispatch, {kind} container: robot free → controller running (median)",
            f"{figures[kind] * 1e3:.0f} ms",
            "≤ 200 ms",
        )
    start = _container_start_s(image)
    report.figure(SECTION, "  container start alone (`podman run` → first program)", f"{start * 1e3:.0f} ms")
    handoff = _handoff_s(image, root)
    report.figure(SECTION, "  warm hand-over alone (`pool.run` → first line)", f"{handoff * 1e3:.0f} ms")
    report.figure(SECTION, "  cold container / subprocess dispatch", f"{figures['cold'] / process_s:.2f}×")
    report.figure(SECTION, "  warm container / subprocess dispatch", f"{figures['warm'] / process_s:.2f}×")
    report.figure(SECTION, "  warm / cold container dispatch", f"{figures['warm'] / figures['cold']:.2f}×")


def _measure(report: Report, run_s: float, dispatch_pairs: int) -> None:
    report.section(SECTION)
    with tempfile.TemporaryDirectory(prefix="raas-bench-") as scratch:
        root = Path(scratch)
        root.chmod(0o755)
        short = _controller(root / "short", 10)
        config = PlatformConfig(data_dir=root / "platform", robots=1)
        with LocalPlatform(config) as platform:
            dispatch = _dispatch_s(platform, short, dispatch_pairs)
            floor = _python_start_s()
            report.figure(
                SECTION,
                "dispatch, subprocess: robot free → controller running (median)",
                f"{dispatch * 1e3:.0f} ms",
                "≤ 200 ms",
            )
            report.figure(SECTION, "  peer: bare `python -c pass` start", f"{floor * 1e3:.0f} ms")
            report.figure(SECTION, "  dispatch / bare interpreter start", f"{dispatch / floor:.2f}×")

            steps = round(run_s / PendulumParams().control_period_s)
            long = _controller(root / "long", steps)
            record = platform.submit(
                JobSpec.model_validate(
                    {"owner": "bench", "source": {"kind": "local", "path": str(long)}, "time_limit_s": int(run_s) + 60}
                )
            )
            done = platform.wait(record.job_id, timeout_s=run_s + 120)
            assert done.status.phase is Phase.SUCCEEDED, done.status
            available = _terminal_time(platform, record.job_id) - _printed_time(platform, record.job_id, "exiting")
            report.figure(
                SECTION,
                f"controller exit → results available, {run_s:.0f} s run",
                f"{available:.2f} s",
                "≤ 2 s (60 s run)",
            )
            files = platform.results.list_keys(job_prefix(record.job_id))
            sizes = {key.rsplit("/", 1)[1]: len(platform.results.get_bytes(key)) for key in files}
            report.figure(SECTION, f"bundle size of the {run_s:.0f} s run", f"{sum(sizes.values()) / 1024:.0f} KiB")
            for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
                report.figure(SECTION, f"  {name}", f"{size / 1024:.0f} KiB")
        _measure_containers(report, root, short, dispatch_pairs, dispatch)


def run(report: Report) -> None:
    _measure(report, run_s=60.0, dispatch_pairs=5)


def run_quick(report: Report) -> None:
    _measure(report, run_s=10.0, dispatch_pairs=2)
