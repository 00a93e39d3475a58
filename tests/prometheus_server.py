"""A real Prometheus server for tests: the Debian binary, started on a free loopback port.

scripts/install-system-deps unpacks it into .tools/prometheus (RAAS_PROMETHEUS_BIN overrides).
The first scraped sample appears only after ≈5-6 s: `query_until` polls instead of sleeping.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]


def prometheus_binary() -> str | None:
    candidates = [os.environ.get("RAAS_PROMETHEUS_BIN"), str(REPOSITORY / ".tools/prometheus/usr/bin/prometheus")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("prometheus")


def promtool_binary() -> str | None:
    """promtool from the same Debian package (RAAS_PROMTOOL_BIN overrides)."""
    candidates = [os.environ.get("RAAS_PROMTOOL_BIN"), str(REPOSITORY / ".tools/prometheus/usr/bin/promtool")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("promtool")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        return list(body["data"]["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        """Values of `label` on the series `match` selects (what Grafana's ``label_values`` lists)."""
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/label/{label}/values?{query}", timeout=5) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"label values of {label!r} for {match!r} failed: {body}")
        return [str(value) for value in body["data"]]

    def query_until(
        self, promql: str, accept: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 30.0
    ) -> list[dict[str, Any]]:
        """Poll `promql` until `accept(result)`; raises TimeoutError with the last result."""
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                result = self.query(promql)
            except OSError:
                result = []
            if accept(result):
                return result
            time.sleep(0.5)
        raise TimeoutError(f"{promql!r} never satisfied the check; last result {result}")


@contextmanager
def running_prometheus(
    targets: list[str], scrape_interval_s: float = 1.0, liveness: dict[str, dict[str, str]] | None = None
) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` ("host:port") as job "raas"; stopped at exit.

    `liveness` (job name → target labels) adds jobs that scrape the same targets for their `up`
    series alone, labelled as given (every scraped sample is dropped, so no metric is counted
    twice): how one process that plays several of the platform's roles (``raas serve``: operator,
    API and agents) meets alerts that select each role by its ``raas_component`` label."""
    binary = prometheus_binary()
    if binary is None:
        raise RuntimeError("no prometheus binary: run scripts/install-system-deps")
    folder = Path(tempfile.mkdtemp(prefix="raas-prometheus-"))
    config = folder / "prometheus.yml"
    jobs = [{"job_name": "raas", "static_configs": [{"targets": targets}]}]
    for name, labels in (liveness or {}).items():
        jobs.append({
            "job_name": name,
            "static_configs": [{"targets": targets, "labels": labels}],
            "metric_relabel_configs": [{"source_labels": ["__name__"], "regex": ".+", "action": "drop"}],
        })  # fmt: skip
    interval = f"{round(scrape_interval_s * 1000)}ms"
    config.write_text(
        json.dumps({"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": jobs})
    )
    port = _free_port()
    process = subprocess.Popen(
        [
            binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("wb"),
    )  # fmt: skip
    server = Prometheus(port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{server.url}/-/ready", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((folder / "prometheus.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)
