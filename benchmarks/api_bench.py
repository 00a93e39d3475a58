"""REST API under 100 concurrent clients: ``GET /api/v1/jobs`` over 10,000 stored jobs and
``POST /api/v1/jobs``, against ``raas serve`` (uvicorn, one process) started for the run.

Peer: ``GET /healthz`` under the same load, the framework's floor on this machine (no auth, no
store); the ratios say what the API's own work costs. The load comes from ``wrk`` (C, two
threads, keep-alive), which shares the machine's two cores with the server.

Then the same listing on the Kubernetes backend, side by side: the same number of finished
RaasJobs in a real control plane (`benchmarks.api_cluster`), ``raas serve`` with
``RAAS_BACKEND=kubernetes`` as the chart's API ServiceAccount, ``GET /api/v1/jobs`` as the same
owner at 10 and 100 connections, against the local platform's list at the same concurrency.
Goal: the cluster's list within 2× of the local one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchmarks.report import Report
from raas_api.auth.tokens import TokenStore
from raas_api.stores.sqlite import SqliteJobStore, encode_cursor
from raas_operator.jobs.model import FailureClass, JobSpec, JobStatus, JobSummary, Phase, PhaseChange

SECTION = "REST API (raas_api.http), 100 concurrent clients"
CLIENTS = 100
OWNERS = 20
HISTORY_SECTION = "REST API list as the job history grows (10 connections, admin token)"
HISTORY_SIZES = (1_000, 10_000, 100_000)
HISTORY_CONNECTIONS = 10
CLUSTER_SECTION = "REST API list on the Kubernetes backend (real control plane) vs the local platform"
CLUSTER_CONNECTIONS = (10, 100)


def _seed(data_dir: Path, jobs: int) -> str:
    """Store finished jobs of 20 owners (`seed_jobs`); returns a token of one of them."""
    store = SqliteJobStore(data_dir / "jobs.db")
    seed_jobs(store, jobs)
    store.close()
    tokens = TokenStore(data_dir / "tokens.db")
    token, _ = tokens.create("user-0")
    tokens.close()
    return token


def seed_jobs(store: SqliteJobStore, jobs: int, first: int = 0, batch: int = 10_000) -> None:
    """Store `jobs` finished jobs numbered from `first` (owners ``user-0`` … ``user-19`` in turn),
    in transactions of `batch`: as a finished run leaves them, with the whole phase history and a
    summary. Every 10th job failed, every 25th was cancelled, the rest succeeded."""
    owners = [f"user-{index}" for index in range(OWNERS)]
    specs = [
        JobSpec.model_validate({"owner": owner, "source": {"kind": "local", "path": "/nonexistent"}})
        for owner in owners
    ]
    statuses = {phase: _finished(phase) for phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)}
    for start in range(first, first + jobs, batch):
        store.create_many(
            (specs[index % OWNERS], statuses[_phase_of(index)])
            for index in range(start, min(start + batch, first + jobs))
        )


def _phase_of(index: int) -> Phase:
    return Phase.CANCELLED if index % 25 == 0 else Phase.FAILED if index % 10 == 0 else Phase.SUCCEEDED


def _finished(phase: Phase) -> JobStatus:
    """A finished job's status as a run leaves it (every phase it went through, a summary)."""
    now = datetime.now(timezone.utc)
    path = (Phase.PENDING, Phase.FETCHING, Phase.QUEUED, Phase.STARTING, Phase.RUNNING, Phase.UPLOADING, phase)
    history = tuple(
        PhaseChange(phase=step, at=now + timedelta(seconds=index), reason=step.value) for index, step in enumerate(path)
    )
    summary = JobSummary(steps=1200, total_reward=-812.5, swing_up_time_s=3.2, sim_to_real_rmse_rad=0.041)
    failure = FailureClass.USER_ERROR if phase is Phase.FAILED else None
    return JobStatus(
        phase=phase, reason=phase.value, robot="sim-1", attempts=1, failure_class=failure, summary=summary,
        history=history, results_prefix="results/v1/job",
    )  # fmt: skip


def _start_server(data_dir: Path, code_root: Path) -> tuple[subprocess.Popen[str], str, str]:
    """``raas serve`` on `data_dir` with folder sources allowed below `code_root`; its URL and session token.

    Containers: a process-level server refuses to start while another person (the listing's
    user-0) holds a token. With no robots no job ever runs, so the isolation level costs nothing.
    """
    environment = dict(
        os.environ,
        RAAS_MAX_QUEUED_PER_OWNER="1000000",
        RAAS_SUBMISSIONS_PER_MINUTE="1000000",
        RAAS_REQUESTS_PER_SECOND="1000000",
        RAAS_LOCAL_SOURCE_ROOTS=json.dumps([str(code_root)]),
        RAAS_ISOLATION="container",
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gym_raas.cli.main",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
            "--robots",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert server.stdout is not None
    url = server.stdout.readline().split()[-1]
    session_token = server.stdout.readline().split()[-1]  # "admin token: <token>"
    deadline = time.monotonic() + 30
    while True:  # the address is printed before the server accepts connections
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return server, url, session_token


def _get(url: str, token: str) -> Any:
    """One authenticated GET, its JSON body."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _wrk(
    url: str, path: str, seconds: int, script: str | None = None, connections: int = CLIENTS
) -> tuple[float, float, float, int]:
    """p50 (s), p99 (s), requests/s and non-2xx count of `wrk` on `path` with `connections` connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        arguments = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
        if script is not None:
            lua.write(script)
            lua.flush()
            arguments += ["-s", lua.name]
        output = subprocess.run([*arguments, url + path], capture_output=True, text=True, check=True).stdout
    figures = dict(re.findall(r"^\s*(50%|99%)\s+([\d.]+\w+)", output, re.MULTILINE))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return _seconds(figures["50%"]), _seconds(figures["99%"]), rate, int(errors.group(1)) if errors else 0


def _seconds(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def _report(
    report: Report, name: str, result: tuple[float, float, float, int], goal_p99: str = "", goal_rate: str = ""
) -> float:
    p50, p99, rate, failures = result
    report.figure(SECTION, f"{name}: p50 / p99", f"{p50 * 1e3:.1f} / {p99 * 1e3:.1f} ms", goal_p99)
    report.figure(SECTION, f"{name}: throughput", f"{rate:.0f} req/s", goal_rate)
    if failures:
        report.figure(SECTION, f"{name}: failed requests", str(failures))
    return rate


Result = tuple[float, float, float, int]


def _measure(report: Report, stored: int, seconds: int) -> None:
    local_lists = _measure_local(report, stored, seconds)
    _measure_cluster(report, stored, seconds, local_lists)


def _measure_local(report: Report, stored: int, seconds: int) -> dict[int, Result]:
    """The local platform's figures; its listing as user-0 at each of `CLUSTER_CONNECTIONS`."""
    report.section(SECTION)
    lists: dict[int, Result] = {}
    with tempfile.TemporaryDirectory(prefix="raas-api-bench-") as scratch:
        data_dir = Path(scratch) / "data"
        token = _seed(data_dir, stored)
        code = Path(scratch) / "code"  # folder sources: only outside the data folder, below an allowed root
        code.mkdir()
        (code / "run.py").write_text("print('hi')\n")
        server, url, session_token = _start_server(data_dir, code)
        try:
            body = {"source": {"kind": "local", "path": str(code)}}

            auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n'
            submit_script = (
                f'wrk.headers["Authorization"] = "Bearer {session_token}"\n'
                'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = '{json.dumps(body)}'\n"
            )
            floor = _wrk(url, "/healthz", seconds)
            listing = _wrk(url, "/api/v1/jobs", seconds, auth)
            submit = _wrk(url, "/api/v1/jobs", seconds, submit_script)
            report.figure(SECTION, "jobs stored", f"{stored:,}")
            peer = _report(report, "peer: GET /healthz", floor)
            listed = _report(report, "GET /api/v1/jobs (50 per page)", listing, "p99 ≤ 50 ms")
            submitted = _report(report, "POST /api/v1/jobs", submit, goal_rate="≥ 300 jobs/s")
            report.figure(SECTION, "list / healthz throughput", f"{listed / peer:.2f}×")
            report.figure(SECTION, "submit / healthz throughput", f"{submitted / peer:.2f}×")
            lists[CLIENTS] = listing
            for connections in CLUSTER_CONNECTIONS:
                if connections not in lists:
                    lists[connections] = _wrk(url, "/api/v1/jobs", seconds, auth, connections)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return lists


def _measure_cluster(report: Report, stored: int, seconds: int, local: dict[int, Result]) -> None:
    """The same listing on the Kubernetes backend over a real control plane, beside `local`'s."""
    from benchmarks.api_cluster import cluster_server, seed_raasjobs
    from benchmarks.operator_cluster import real_control_plane, rss_mib, tests_on_path

    tests_on_path()
    from controlplane.chart_install import JOBS
    from s3_server import running_s3_server

    report.section(CLUSTER_SECTION)
    try:
        with contextlib.ExitStack() as stack:
            plane = stack.enter_context(real_control_plane())
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="raas-api-cluster-bench-")))
            s3 = stack.enter_context(running_s3_server())
            seeded_s = seed_raasjobs(plane, JOBS, stored)
            report.figure(CLUSTER_SECTION, "RaasJobs stored (concurrent creates + status writes)",
                          f"{stored:,} in {seeded_s:.0f} s")  # fmt: skip
            _uncached(report, plane, JOBS)
            started = time.monotonic()
            server = stack.enter_context(cluster_server(plane, scratch, s3.endpoint, "user-0"))
            report.figure(CLUSTER_SECTION, "raas serve start until ready (job cache filled)",
                          f"{time.monotonic() - started:.1f} s")  # fmt: skip
            auth = f'wrk.headers["Authorization"] = "Bearer {server.owner_token}"\n'
            request = urllib.request.Request(
                server.url + "/api/v1/jobs", headers={"Authorization": f"Bearer {server.owner_token}"}
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                listed = len(json.load(response)["jobs"])
            report.figure(CLUSTER_SECTION, "jobs on the listed page (cluster backend; a full page is 50)", str(listed))
            for connections in CLUSTER_CONNECTIONS:
                cluster = _wrk(server.url, "/api/v1/jobs", seconds, auth, connections)
                _side_by_side(report, connections, cluster, local[connections])
            report.figure(CLUSTER_SECTION, "API process resident memory (cluster backend)",
                          f"{rss_mib(server.process.pid):.0f} MiB")  # fmt: skip
    except Exception as error:  # no control plane here: the local figures still count
        print(f"  cluster backend not measured: {type(error).__name__}: {error}")


def _uncached(report: Report, plane: Any, namespace: str) -> None:
    """What one listing cost before the API's job cache: every (owner's) RaasJob read from the API
    server and parsed (`KubernetesJobStore.list_jobs`), median of three, in this process."""
    from kubernetes import client

    from raas_api.stores.kubernetes import KubernetesJobStore

    with plane.api_client() as admin:
        store = KubernetesJobStore(namespace, client.CustomObjectsApi(admin))
        for name, owner in (("one owner's", "user-0"), ("an admin's (all owners)", None)):
            times = []
            for _ in range(3):
                started = time.perf_counter()
                store.list_jobs(owner=owner)
                times.append(time.perf_counter() - started)
            report.figure(CLUSTER_SECTION, f"uncached list (before the job cache), {name}, one request",
                          f"{sorted(times)[1] * 1e3:.0f} ms")  # fmt: skip


def _side_by_side(report: Report, connections: int, cluster: Result, local: Result) -> None:
    name = f"GET /api/v1/jobs, {connections} connections"
    for label, index, unit, scale in (("p50", 0, "ms", 1e3), ("p99", 1, "ms", 1e3), ("throughput", 2, "req/s", 1)):
        ratio = cluster[index] / local[index] if local[index] else float("nan")
        goal = "≤ 2×" if label != "throughput" else ""
        report.figure(
            CLUSTER_SECTION,
            f"{name}: {label} cluster vs local",
            f"{cluster[index] * scale:.1f} vs {local[index] * scale:.1f} {unit} ({ratio:.2f}×)",
            goal,
        )
    if cluster[3]:
        report.figure(CLUSTER_SECTION, f"{name}: failed requests (cluster)", str(cluster[3]))


def _history_curve(report: Report, seconds: int, sizes: tuple[int, ...] = HISTORY_SIZES) -> None:
    """List p50 with each of `sizes` jobs stored, for the first page, a page in the middle of the
    history (cursor), one owner's jobs and one phase's; goal: within 1.2× of each other.

    One server throughout; the store grows between measurements (bulk inserts, `seed_jobs`)."""
    report.section(HISTORY_SECTION)
    curve: dict[str, list[float]] = {}
    tails: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="raas-api-history-bench-") as scratch:
        data_dir = Path(scratch) / "data"
        code = Path(scratch) / "code"
        code.mkdir()
        store = SqliteJobStore(data_dir / "jobs.db")
        server, url, admin_token = _start_server(data_dir, code)
        auth = f'wrk.headers["Authorization"] = "Bearer {admin_token}"\n'
        stored = 0
        try:
            for size in sizes:
                started = time.perf_counter()
                seed_jobs(store, size - stored, first=stored)
                seeded_s, stored = time.perf_counter() - started, size
                report.figure(HISTORY_SECTION, f"seeding {size:,} jobs (bulk insert)", f"{seeded_s:.1f} s")
                queries = {
                    "first page": "/api/v1/jobs",
                    "middle page (cursor)": f"/api/v1/jobs?cursor={encode_cursor(size // 2)}",
                    "owner filter (one of 20 owners)": "/api/v1/jobs?owner=user-7",
                    "phase filter (Failed, 8% of jobs)": "/api/v1/jobs?phase=Failed",
                }
                for name, path in queries.items():
                    _get(url + path, admin_token)  # the first request after a top-up reads the new rows
                    p50, p99, _, failures = _wrk(url, path, seconds, auth, HISTORY_CONNECTIONS)
                    if failures:
                        report.figure(HISTORY_SECTION, f"{name} at {size:,}: failed requests", str(failures))
                    curve.setdefault(name, []).append(p50)
                    tails.setdefault(name, []).append(p99)
        finally:
            server.terminate()
            server.wait(timeout=30)
            store.close()
    label = " / ".join(f"{size:,}" for size in sizes)
    for name, p50s in curve.items():
        spread = max(p50s) / min(p50s) if min(p50s) > 0 else float("nan")
        values = " / ".join(f"{p50 * 1e3:.1f}" for p50 in p50s)
        report.figure(HISTORY_SECTION, f"{name}: p50 at {label} jobs", f"{values} ms ({spread:.2f}×)", "≤ 1.2×")
    for name, p99s in tails.items():
        values = " / ".join(f"{p99 * 1e3:.1f}" for p99 in p99s)
        report.figure(HISTORY_SECTION, f"{name}: p99 at {label} jobs", f"{values} ms", "≤ 50 ms")


def run(report: Report) -> None:
    _measure(report, stored=10_000, seconds=10)
    _history_curve(report, seconds=5)


def run_quick(report: Report) -> None:
    _measure(report, stored=int(os.environ.get("RAAS_BENCH_STORED", "2000")), seconds=4)
    _history_curve(report, seconds=2)
