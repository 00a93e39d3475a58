"""The kopf operator against the Kubernetes emulator: dispatch latency and throughput at scale.

The operator runs as its own process (``raas-operator --standalone``) so its memory can be read.
Robots are virtual: Robot objects kept Ready with fresh heartbeats, no agents. An instant kubelet
finishes every pod as soon as it appears (fetch pods report a commit, run pods exit 0), so the
figures are the operator's own: how fast it moves jobs and hands robots on.

* Dispatch latency: from a robot being freed (its booking cleared when its job ended) to the
  next job's run pod for that robot existing.
* Throughput: RaasJobs created at once until all are Succeeded, over the virtual robots.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubernetes import client

from benchmarks.report import Report

SECTION = "Operator (raas_operator.runtime) on the Kubernetes emulator"
NAMESPACE = "raas"


def _tests_on_path() -> None:
    tests = Path(__file__).resolve().parents[1] / "tests"
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))


class InstantKubelet:
    """Finishes every pod at once; records when each run pod was first seen, per robot."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        self.seen: dict[str, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> InstantKubelet:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        import json

        done: set[str] = set()
        while not self._stop.wait(0.1):
            response = self.core.list_namespaced_pod(NAMESPACE, _preload_content=False)
            for pod in json.loads(response.data).get("items", []):
                name = pod["metadata"]["name"]
                if name in done or pod["metadata"].get("deletionTimestamp"):
                    continue
                robot = (pod["spec"].get("nodeSelector") or {}).get("raas.dev/robot")
                if robot:
                    self.seen[name] = (robot, time.monotonic())
                message = "0" * 40 if not robot else ""
                terminated = {"exitCode": 0, "reason": "Completed", "message": message}
                status = {
                    "phase": "Succeeded",
                    "containerStatuses": [
                        {"name": pod["spec"]["containers"][0]["name"], "image": "x", "imageID": "x", "ready": False,
                         "restartCount": 0, "state": {"terminated": terminated}}
                    ],
                }  # fmt: skip
                with contextlib.suppress(client.exceptions.ApiException):
                    self.core.patch_namespaced_pod_status(name, NAMESPACE, {"status": status}, _preload_content=False)
                done.add(name)


class VirtualRobots:
    """Robot objects kept Ready with a fresh heartbeat; records when each robot's booking clears."""

    def __init__(self, custom: client.CustomObjectsApi, count: int) -> None:
        self.custom = custom
        self.names = [f"virtual-{index:02d}" for index in range(count)]
        self.freed: list[tuple[str, float]] = []
        self._booked: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        for name in self.names:
            body = {
                "apiVersion": "raas.dev/v1alpha1",
                "kind": "Robot",
                "metadata": {"name": name, "labels": {"raas.dev/robot": name}},
                "spec": {"node_name": f"node-{name}"},
            }
            custom.create_cluster_custom_object("raas.dev", "v1alpha1", "robots", body)
        self._beat()

    def __enter__(self) -> VirtualRobots:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for name in self.names:
            status = {"status": {"phase": "Ready", "last_heartbeat": now}}
            with contextlib.suppress(client.exceptions.ApiException):
                self.custom.patch_cluster_custom_object_status("raas.dev", "v1alpha1", "robots", name, status)

    def _loop(self) -> None:
        last_beat = 0.0
        while not self._stop.wait(0.02):
            if time.monotonic() - last_beat > 2:
                self._beat()
                last_beat = time.monotonic()
            listing = self.custom.list_cluster_custom_object("raas.dev", "v1alpha1", "robots")
            for item in listing["items"]:
                name = item["metadata"]["name"]
                booked = (item["metadata"].get("annotations") or {}).get("raas.dev/booked-job") or None
                if self._booked.get(name) and not booked:
                    self.freed.append((name, time.monotonic()))
                self._booked[name] = booked


@contextlib.contextmanager
def _operator_process(url: str, scratch: Path, s3_endpoint: str) -> Iterator[subprocess.Popen[bytes]]:
    from k8s_fixtures import write_kubeconfig

    kubeconfig = write_kubeconfig(scratch / "kubeconfig", url, token="bench", namespace=NAMESPACE)
    environment = dict(
        os.environ,
        KUBECONFIG=str(kubeconfig),
        RAAS_OPERATOR_NAMESPACE=NAMESPACE,
        RAAS_OPERATOR_SESSION_KEY="bench",
        RAAS_OPERATOR_S3_ENDPOINT=s3_endpoint,
        RAAS_OPERATOR_S3_ACCESS_KEY="bench",
        RAAS_OPERATOR_S3_SECRET_KEY="bench-secret",
        RAAS_OPERATOR_S3_SECURE="false",
        RAAS_OPERATOR_SESSION_UPLOAD_WAIT_S="0",
        RAAS_OPERATOR_MAX_RUNNING_PER_OWNER="1000",
        RAAS_OPERATOR_MAX_QUEUED_PER_OWNER="100000",
    )
    log = (scratch / "operator.log").open("wb")
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


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure(report: Report, jobs: int, robots: int) -> None:
    _tests_on_path()
    from k8s_fixtures import running_emulator
    from s3_server import running_s3_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    report.section(SECTION)
    with tempfile.TemporaryDirectory(prefix="raas-operator-bench-") as folder, running_s3_server() as s3:
        scratch = Path(folder)
        with running_emulator(NAMESPACE) as emulator:
            api = emulator.api_client()
            custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
            with (
                VirtualRobots(custom, robots) as fleet,
                InstantKubelet(core) as kubelet,
                _operator_process(emulator.url, scratch, s3.endpoint) as operator,
            ):
                time.sleep(3)  # the operator logs in and starts watching
                start = time.monotonic()
                for index in range(jobs):
                    body: dict[str, Any] = {
                        "apiVersion": "raas.dev/v1alpha1",
                        "kind": "RaasJob",
                        "metadata": {"name": f"bench-{index:04d}", "namespace": NAMESPACE},
                        "spec": {
                            "owner": f"user-{index % 10}",
                            "source": {"kind": "git", "url": "https://github.com/a/b.git"},
                        },
                    }
                    custom.create_namespaced_custom_object("raas.dev", "v1alpha1", NAMESPACE, "raasjobs", body)
                created_s = time.monotonic() - start
                deadline = start + min(300.0, 60 + jobs * 2.0)  # an unfinished run is reported as such
                finished = 0
                while time.monotonic() < deadline:
                    items = custom.list_namespaced_custom_object("raas.dev", "v1alpha1", NAMESPACE, "raasjobs")["items"]
                    finished = sum((item.get("status") or {}).get("phase") == "Succeeded" for item in items)
                    if finished == jobs:
                        break
                    time.sleep(0.5)
                elapsed = time.monotonic() - start
                rss = _rss_mib(operator.pid)
                if finished < jobs:
                    phases = [(item.get("status") or {}).get("phase") for item in items]
                    lines = (scratch / "operator.log").read_text().splitlines()
                    problems = [line for line in lines if "ERROR" in line or "Traceback" in line][-5:]
                    print(f"  unfinished phases: {sorted(set(map(str, phases)))}", *problems, sep="\n    ")
                latencies = []
                for robot, freed_at in fleet.freed:
                    following = [at for name, (owner, at) in kubelet.seen.items() if owner == robot and at > freed_at]
                    if following:
                        latencies.append(min(following) - freed_at)
        report.figure(
            SECTION,
            f"{jobs} RaasJobs over {robots} virtual robots: all Succeeded",
            f"{finished}/{jobs} in {elapsed:.0f} s",
        )
        report.figure(SECTION, "  throughput", f"{finished / elapsed:.1f} jobs/s")
        report.figure(SECTION, "  creating the RaasJobs (client side)", f"{created_s:.1f} s")
        if latencies:
            ordered = sorted(latencies)
            p99 = ordered[int(0.99 * (len(ordered) - 1))]
            report.figure(
                SECTION, "dispatch: robot freed → next run pod exists, p50 / p99",
                f"{statistics.median(ordered):.2f} / {p99:.2f} s", "p99 ≤ 1 s",
            )  # fmt: skip
        report.figure(SECTION, "operator resident memory at the end", f"{rss:.0f} MiB")


def run(report: Report) -> None:
    _measure(report, jobs=1000, robots=20)


def run_quick(report: Report) -> None:
    _measure(report, jobs=int(os.environ.get("RAAS_BENCH_JOBS", "100")), robots=10)
