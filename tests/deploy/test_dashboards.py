"""The Grafana dashboards (charts/raas/files/dashboards): Grafana's schema reads them back, and every
panel's PromQL returns data from a real Prometheus scraping a running local platform.

No Grafana server is installable here, so the dashboards are read back with Grafana's own schema
types (grafana-foundation-sdk's ``Dashboard.from_json``; what it does not know it drops, so a
dashboard must come back unchanged), and each panel query is run, with Grafana's variables
substituted, against a real Prometheus that scrapes ``raas serve --robots 2`` (the API's
``/metrics``: API, fleet and agent metrics, one target) after real jobs ran on its simulated robots.
"""

from __future__ import annotations

import io
import json
import math
import re
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from api_fixtures import controller_zip
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import prometheus as prometheus_query
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, RowPanel
from polling import wait_until
from prometheus_server import Prometheus, running_prometheus

REPOSITORY = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPOSITORY / "charts/raas/files/dashboards").glob("*.json"))
RULES = REPOSITORY / "charts/raas/files/alerts/raas-rules.yaml"
TERMINAL = ("Succeeded", "Failed", "Cancelled", "TimedOut")
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "1h"}
"""Grafana's interval variables, as wide as the test's whole run (scrapes every second)."""
METRIC_NAME = re.compile(r"\b(raas_\w+)\b(?!\s*(?:=|!=|=~|!~))")
"""A RaaS metric's name in a PromQL expression (not a label name such as ``raas_component=``)."""
LOCAL_ROLES = {
    "raas-operator": {"raas_component": "operator"},
    "raas-api": {"raas_component": "api"},
    "raas-agent": {"raas_component": "agent", "node": "local"},
}
"""``raas serve`` plays the operator's, the API's and the agents' roles in one process: the scrape
jobs (up only) a plain Prometheus gives it for the platform-down alerts (a chart's pods get those labels
from the relabelling in charts/raas/README.md, Monitoring)."""
FAILING_CONTROLLER = "import gym_raas\nraise SystemExit('this controller gives up at once')\n"


def dashboard_json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def panel_targets() -> list[Any]:
    """(dashboard, panel title, refId, expr) of every query of every panel, as pytest params."""
    params = []
    for path in DASHBOARDS:
        for panel in dashboard_json(path)["panels"]:
            for target in panel.get("targets", []):
                params.append(
                    pytest.param(
                        path.stem, panel["title"], target["expr"], id=f"{path.stem}: {panel['title']} {target['refId']}"
                    )
                )
    return params


# --- Read back by Grafana's schema ---------------------------------------------------------------


def test_there_is_a_fleet_and_a_robot_dashboard() -> None:
    assert [path.name for path in DASHBOARDS] == ["raas-fleet.json", "raas-robot.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_grafanas_schema_types_read_the_dashboard_back_unchanged(path: Path) -> None:
    register_default_plugins()
    original = dashboard_json(path)
    dashboard = Dashboard.from_json(original)
    assert json.loads(json.dumps(dashboard, cls=JSONEncoder)) == original
    assert dashboard.uid == path.stem
    panels = [panel for panel in dashboard.panels or [] if not isinstance(panel, RowPanel)]
    assert panels
    for panel in panels:
        assert isinstance(panel, Panel)
        assert panel.targets, panel.title
        for query in panel.targets:
            assert isinstance(query, prometheus_query.Dataquery), panel.title  # typed as a Prometheus query
            assert query.expr
        assert panel.datasource is not None
        assert (panel.datasource.type_val, panel.datasource.uid) == ("prometheus", "${datasource}")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboards_are_templated_by_robot_and_datasource(path: Path) -> None:
    variables = {variable["name"]: variable for variable in dashboard_json(path)["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    robot = variables["robot"]
    assert robot["type"] == "query"
    assert robot["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert re.fullmatch(r"label_values\(raas_\w+, robot\)", robot["query"])
    expressions = [target["expr"] for panel in dashboard_json(path)["panels"] for target in panel.get("targets", [])]
    if path.stem == "raas-robot":
        assert all('robot=~"$robot"' in expr for expr in expressions)
    else:
        assert any('robot=~"$robot"' in expr for expr in expressions)


# --- Every query against a real Prometheus scraping the local platform ------------------------------


@dataclass
class ScrapedPlatform:
    prometheus: Prometheus
    robot: str
    """The robot that ran the succeeding job."""
    robots: tuple[str, ...]


class ServeProcess:
    """``raas serve --robots 2 --port 0`` as a subprocess; its URL and admin token."""

    def __init__(self, data_dir: Path) -> None:
        command = [sys.executable, "-m", "gym_raas.cli.main", "serve", "--port", "0", "--robots", "2"]
        self.process = subprocess.Popen(
            [*command, "--data-dir", str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.url = self.token = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not wait_until(lambda: bool(self.url and self.token) or self.process.poll() is not None, timeout_s=60):
            self.stop()
            pytest.fail("raas serve printed no URL and token within 60 s:\n" + "\n".join(self.lines))
        if not self.token:
            pytest.fail("raas serve exited:\n" + "\n".join(self.lines))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if match := re.match(r"RaaS API listening on http://(\S+)", line):
                self.url = f"http://{match.group(1)}"
            elif match := re.match(r"admin token: (\S+)", line):
                self.token = match.group(1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def failing_controller_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("run.py", FAILING_CONTROLLER)
    return buffer.getvalue()


def run_job(client: httpx.Client, archive: bytes) -> dict[str, Any]:
    response = client.post(
        "/api/v1/jobs/upload", files={"archive": ("controller.zip", archive, "application/zip")}, data={}
    )
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    job: dict[str, Any] = {}

    def done() -> bool:
        nonlocal job
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        return job["phase"] in TERMINAL

    assert wait_until(done, timeout_s=180, interval_s=0.5), job
    return job


@pytest.fixture(scope="module")
def scraped_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScrapedPlatform]:
    """A Prometheus scraping ``raas serve`` every second, after a succeeding and a failing job."""
    server = ServeProcess(tmp_path_factory.mktemp("raas-serve"))
    try:
        target = server.url.removeprefix("http://")
        with running_prometheus([target], liveness=LOCAL_ROLES) as prometheus:
            prometheus.query_until("raas_robot_state", bool, timeout_s=30)  # scraping before the jobs move counters
            headers = {"Authorization": f"Bearer {server.token}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
                succeeded = run_job(client, controller_zip(steps=20))
                failed = run_job(client, failing_controller_zip())
            assert succeeded["phase"] == "Succeeded", succeeded
            assert (failed["phase"], failed["failure_class"]) == ("Failed", "UserError"), failed
            prometheus.query_until(
                "sum(raas_jobs_finished_total)", lambda found: bool(found) and float(found[0]["value"][1]) >= 2
            )
            prometheus.query_until(  # the robot's reset after the session has been scraped too
                f'sum(raas_resets_total{{robot="{succeeded["robot"]}"}})',
                lambda found: bool(found) and float(found[0]["value"][1]) >= 2,
                timeout_s=60,
            )
            yield ScrapedPlatform(prometheus, succeeded["robot"], ("sim-1", "sim-2"))
    finally:
        server.stop()


def substituted(expr: str, robot: str) -> str:
    for variable, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, value)
    expr = expr.replace("$robot", robot)
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr}"
    return expr


def has_a_number(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


@pytest.mark.prometheus
@pytest.mark.slow
@pytest.mark.parametrize(("dashboard", "title", "expr"), panel_targets())
def test_every_panel_query_returns_data_from_the_running_platform(
    scraped_platform: ScrapedPlatform, dashboard: str, title: str, expr: str
) -> None:
    result = scraped_platform.prometheus.query(substituted(expr, scraped_platform.robot))
    assert result, f"{dashboard}: {title}: {expr} returned no series"
    assert has_a_number(result), f"{dashboard}: {title}: {expr} returned only NaN: {result}"


@pytest.mark.prometheus
@pytest.mark.slow
def test_the_robot_variable_lists_the_platforms_robots(scraped_platform: ScrapedPlatform) -> None:
    for path in DASHBOARDS:
        variable = next(item for item in dashboard_json(path)["templating"]["list"] if item["name"] == "robot")
        metric = re.fullmatch(r"label_values\((\w+), robot\)", variable["query"])
        assert metric is not None
        assert sorted(scraped_platform.prometheus.label_values("robot", metric.group(1))) == list(
            scraped_platform.robots
        )


@pytest.mark.prometheus
@pytest.mark.slow
def test_the_panels_count_the_jobs_that_ran(scraped_platform: ScrapedPlatform) -> None:
    prometheus = scraped_platform.prometheus
    finished = prometheus.query("sum by (phase, failure_class) (increase(raas_jobs_finished_total[1h])) > 0.5")
    outcomes = {(series["metric"]["phase"], series["metric"]["failure_class"]) for series in finished}
    assert outcomes == {("Succeeded", "none"), ("Failed", "UserError")}
    sessions = prometheus.query(f'sum(increase(raas_sessions_total{{robot="{scraped_platform.robot}"}}[1h]))')
    assert float(sessions[0]["value"][1]) >= 0.5
    waits = prometheus.query("sum(raas_queue_wait_seconds_count)")
    assert float(waits[0]["value"][1]) == 2.0


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


@pytest.mark.prometheus
@pytest.mark.slow
def test_every_metric_the_alerts_use_is_exported_by_the_local_platform(scraped_platform: ScrapedPlatform) -> None:
    exported = set(scraped_platform.prometheus.label_values("__name__", '{job="raas"}'))
    for rule in alert_rules():
        used = set(re.findall(METRIC_NAME, rule["expr"]))
        assert used <= exported, f"{rule['alert']} uses metrics nobody exports: {used - exported}"


@pytest.mark.prometheus
@pytest.mark.slow
def test_the_alerts_stay_quiet_on_a_healthy_platform(scraped_platform: ScrapedPlatform) -> None:
    # Control-step latency depends on this shared machine's load, so that alert is only run, not judged.
    judged_by_load = {"RaasControlDeadlineMisses"}
    for rule in alert_rules():
        result = scraped_platform.prometheus.query(rule["expr"])
        if rule["alert"] not in judged_by_load:
            assert result == [], f"{rule['alert']} fires on a healthy platform: {result}"


@pytest.mark.prometheus
@pytest.mark.slow
def test_the_platform_down_alerts_fire_on_a_real_prometheus_when_their_targets_stop_answering() -> None:
    # A port nothing listens on: every role's target is down, as when the platform's pods are gone.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    with running_prometheus([dead], liveness=LOCAL_ROLES) as prometheus:
        prometheus.query_until('up{raas_component="agent"}', bool, timeout_s=30)
        expressions = {rule["alert"]: rule["expr"] for rule in alert_rules() if "raas_component" in rule["expr"]}
        assert set(expressions) == {"RaasOperatorDown", "RaasApiDown", "RaasAgentDown"}
        for name, expression in expressions.items():
            assert prometheus.query(expression) != [], f"{name} does not fire with its targets down"
        agent = prometheus.query(expressions["RaasAgentDown"])
        assert [series["metric"].get("node") for series in agent] == ["local"]
