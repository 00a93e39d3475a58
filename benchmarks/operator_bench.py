"""The kopf operator on a real control plane and on the Kubernetes emulator, side by side in one run:
dispatch latency, throughput and memory at scale.

The operator runs as its own process (``raas-operator --standalone``) so its memory can be read;
on the real control plane it logs in with the chart's operator ServiceAccount token in the chart's
job namespace. Robots are virtual: Robot objects kept Ready with fresh heartbeats, no agents; on
the real control plane each has a Node kept Ready through its Lease and the real scheduler binds
the pods (`benchmarks.operator_cluster`). An instant kubelet finishes every pod as soon as it may
(fetch pods report a commit, run pods exit 0), so the figures are the operator's and the API
server's own: how fast jobs move and robots are handed on.

* Dispatch latency: from a robot being freed (its booking cleared when its job ended) to the
  next job's run pod for that robot existing (both as the benchmark's watches saw them).
* Throughput: RaasJobs created at once until all are Succeeded, over the virtual robots.
* Memory: the operator process, and the API server (kube-apiserver + etcd on the real control
  plane; the emulator's process), at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from benchmarks.operator_cluster import (
    InstantKubelet,
    VirtualRobots,
    World,
    control_plane_world,
    emulator_world,
    real_control_plane,
    robot_names,
    rss_mib,
    tests_on_path,
)
from benchmarks.report import Report

SECTION = "Operator (raas_operator.runtime): real control plane vs Kubernetes emulator"
EMULATOR_NAMESPACE = "raas-jobs"


@dataclass
class Figures:
    """One world's results."""

    world: str
    jobs: int
    finished: int = 0
    elapsed_s: float = float("nan")
    created_s: float = float("nan")
    latencies_s: list[float] = field(default_factory=list)
    operator_rss_mib: float = float("nan")
    server_rss_mib: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.finished / self.elapsed_s

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_s) if self.latencies_s else float("nan")

    @property
    def p99(self) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[int(0.99 * (len(ordered) - 1))]


@contextlib.contextmanager
def _operator_process(world: World, scratch: Path, s3_endpoint: str) -> Iterator[subprocess.Popen[bytes]]:
    environment = dict(
        os.environ,
        KUBECONFIG=str(world.operator_kubeconfig),
        RAAS_OPERATOR_NAMESPACE=world.namespace,
        RAAS_OPERATOR_SESSION_KEY="bench",
        RAAS_OPERATOR_S3_ENDPOINT=s3_endpoint,
        RAAS_OPERATOR_S3_ACCESS_KEY="bench",
        RAAS_OPERATOR_S3_SECRET_KEY="bench-secret",
        RAAS_OPERATOR_S3_SECURE="false",
        RAAS_OPERATOR_SESSION_UPLOAD_WAIT_S="0",
        RAAS_OPERATOR_MAX_RUNNING_PER_OWNER="1000",
        RAAS_OPERATOR_MAX_QUEUED_PER_OWNER="100000",
    )
    log = (scratch / f"operator-{world.name.replace(' ', '-')}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "raas_operator.runtime.main", "--standalone"], env=environment, stdout=log, stderr=log
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # kopf waits for running handlers; the figures are taken
            process.kill()
            process.wait()
        log.close()


def _job(index: int, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "raas.dev/v1alpha1",
        "kind": "RaasJob",
        "metadata": {"name": f"bench-{index:04d}", "namespace": namespace},
        "spec": {"owner": f"user-{index % 10}", "source": {"kind": "git", "url": "https://github.com/a/b.git"}},
    }


def _workload(world: World, scratch: Path, s3_endpoint: str, jobs: int, robots: int) -> Figures:
    """`jobs` RaasJobs over `robots` virtual robots in `world`, until all Succeeded or the deadline."""
    figures = Figures(world.name, jobs)
    custom, core = client.CustomObjectsApi(world.admin), client.CoreV1Api(world.admin)
    names = robot_names(robots)
    fleet_writer = client.CustomObjectsApi(world.robots_client)
    with (
        VirtualRobots(fleet_writer, custom, names, world.node_of) as fleet,
        InstantKubelet(core, world.namespace, binds=world.binds_pods) as kubelet,
        _operator_process(world, scratch, s3_endpoint) as operator,
    ):
        time.sleep(3)  # the operator logs in and starts watching
        start = time.monotonic()
        for index in range(jobs):
            custom.create_namespaced_custom_object("raas.dev", "v1alpha1", world.namespace, "raasjobs",
                                                   _job(index, world.namespace))  # fmt: skip
        figures.created_s = time.monotonic() - start
        deadline = start + min(900.0, 60 + jobs * 2.0)  # an unfinished run is reported as such
        items: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            items = custom.list_namespaced_custom_object("raas.dev", "v1alpha1", world.namespace, "raasjobs")["items"]
            figures.finished = sum((item.get("status") or {}).get("phase") == "Succeeded" for item in items)
            if figures.finished == jobs:
                break
            time.sleep(0.5)
        figures.elapsed_s = time.monotonic() - start
        figures.operator_rss_mib = rss_mib(operator.pid)
        figures.server_rss_mib = world.server_rss_mib()
        nodes = world.extras.get("nodes")
        if nodes is not None and nodes.reposted:
            figures.problems.append(
                f"Nodes marked not Ready by the node controller and posted Ready again: {nodes.reposted}"
            )
        if figures.finished < jobs:
            phases = sorted({str((item.get("status") or {}).get("phase")) for item in items})
            log_file = scratch / f"operator-{world.name.replace(' ', '-')}.log"
            lines = log_file.read_text(errors="replace").splitlines()
            figures.problems += [f"unfinished phases: {phases}", *kubelet.failures, *kubelet.unfinished()[:5]]
            figures.problems += [line for line in lines if "ERROR" in line or "Traceback" in line][-5:]
        for robot, freed_at in fleet.freed:
            following = [at for owner, at in kubelet.seen.values() if owner == robot and at > freed_at]
            if following:
                figures.latencies_s.append(min(following) - freed_at)
    return figures


def _on_emulator(scratch: Path, s3_endpoint: str, jobs: int, robots: int) -> Figures:
    with emulator_world(scratch, EMULATOR_NAMESPACE) as world:
        return _workload(world, scratch, s3_endpoint, jobs, robots)


def _on_control_plane(scratch: Path, s3_endpoint: str, jobs: int, robots: int) -> Figures:
    with real_control_plane() as plane, control_plane_world(scratch, plane, robot_names(robots)) as world:
        return _workload(world, scratch, s3_endpoint, jobs, robots)


def _side_by_side(report: Report, name: str, real: float, emulated: float, unit: str, digits: int = 2,
                  goal: str = "") -> None:  # fmt: skip
    ratio = real / emulated if emulated else float("nan")
    value = f"{real:.{digits}f} vs {emulated:.{digits}f} {unit} ({ratio:.2f}×)"
    report.figure(SECTION, name, value, goal)


def _print(report: Report, real: Figures | None, emulated: Figures, robots: int) -> None:
    for figures in (real, emulated):
        if figures is None:
            continue
        report.figure(
            SECTION,
            f"{figures.world}: {figures.jobs} RaasJobs over {robots} robots, Succeeded",
            f"{figures.finished}/{figures.jobs} in {figures.elapsed_s:.0f} s",
        )
        for problem in figures.problems:
            print(f"    {figures.world}: {problem}")
    if real is None:
        return
    report.figure(SECTION, "real control plane vs emulator (ratio real / emulator):", "")
    _side_by_side(report, "  throughput", real.throughput, emulated.throughput, "jobs/s")
    _side_by_side(report, "  creating the RaasJobs (client side)", real.created_s, emulated.created_s, "s", 1)
    _side_by_side(report, "  dispatch: robot freed → next run pod exists, p50", real.p50,
                  emulated.p50, "s")  # fmt: skip
    _side_by_side(report, "  dispatch p99", real.p99, emulated.p99, "s", goal="p99 ≤ 1 s (real)")
    _side_by_side(report, "  operator resident memory at the end", real.operator_rss_mib,
                  emulated.operator_rss_mib, "MiB", 0)  # fmt: skip
    real_server = sum(real.server_rss_mib.values())
    parts = " + ".join(f"{name} {value:.0f}" for name, value in real.server_rss_mib.items())
    _side_by_side(report, "  API server memory (kube-apiserver + etcd vs emulator)", real_server,
                  sum(emulated.server_rss_mib.values()), "MiB", 0)  # fmt: skip
    report.figure(SECTION, "    real control plane's parts", f"{parts} MiB")


def _print_alone(report: Report, emulated: Figures) -> None:
    report.figure(SECTION, "emulator: throughput", f"{emulated.throughput:.1f} jobs/s")
    report.figure(SECTION, "emulator: dispatch p50 / p99", f"{emulated.p50:.2f} / {emulated.p99:.2f} s")
    report.figure(SECTION, "emulator: operator / emulator memory",
                  f"{emulated.operator_rss_mib:.0f} / {sum(emulated.server_rss_mib.values()):.0f} MiB")  # fmt: skip


def _measure(report: Report, jobs: int, robots: int) -> None:
    tests_on_path()
    from s3_server import running_s3_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    report.section(SECTION)
    with tempfile.TemporaryDirectory(prefix="raas-operator-bench-") as folder, running_s3_server() as s3:
        scratch = Path(folder)
        real: Figures | None = None
        try:
            real = _on_control_plane(scratch, s3.endpoint, jobs, robots)
        except Exception as error:
            print(f"  real control plane not measured: {type(error).__name__}: {error}")
        emulated = _on_emulator(scratch, s3.endpoint, jobs, robots)
    _print(report, real, emulated, robots)
    if real is None:
        _print_alone(report, emulated)


def run(report: Report) -> None:
    _measure(report, jobs=1000, robots=20)


def run_quick(report: Report) -> None:
    _measure(report, jobs=int(os.environ.get("RAAS_BENCH_JOBS", "100")), robots=10)
