"""The Prometheus alerting rules (charts/raas/files/alerts): valid for promtool, unit-tested by promtool.

`promtool check rules` validates the file; `promtool test rules` runs the unit tests in
``alerts/tests/`` (synthetic series, 15 s evaluation interval) in which every alert fires when it
should and stays quiet when it should. The tests here also check that every alert of the
deployment contract exists with its annotations, that every alert has both kinds of unit test,
and that the unit tests really depend on each alert (they fail once it is removed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_server import promtool_binary

REPOSITORY = Path(__file__).resolve().parents[2]
ALERTS = REPOSITORY / "charts/raas/files/alerts"
RULES = ALERTS / "raas-rules.yaml"
UNIT_TESTS = sorted((ALERTS / "tests").glob("*.yaml"))
CONTRACT_ALERTS = (
    "RaasRobotDown",
    "RaasRobotOverheating",
    "RaasEncoderFault",
    "RaasResetFailing",
    "RaasControlDeadlineMisses",
    "RaasQueueBacklog",
    "RaasLongQueueWait",
    "RaasJobFailureRate",
    "RaasResultUploadsSpooled",
    "RaasOperatorDown",
    "RaasApiDown",
    "RaasAgentDown",
)
RUNBOOKS = "docs/runbooks.md"


@pytest.fixture(scope="module")
def promtool() -> str:
    binary = promtool_binary()
    if binary is None:
        pytest.fail("no promtool binary: run scripts/install-system-deps")
    return binary


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    groups = {group["name"]: group for group in document["groups"]}
    assert list(groups) == ["raas"]
    return list(groups["raas"]["rules"])


def run_promtool(promtool: str, *arguments: str | Path, cwd: Path = ALERTS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, arguments)], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_rules_file(promtool: str) -> None:
    checked = run_promtool(promtool, "check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(CONTRACT_ALERTS)} rules found" in checked.stdout


def test_every_alert_passes_its_promtool_unit_tests(promtool: str) -> None:
    assert UNIT_TESTS, "no promtool unit tests in charts/raas/files/alerts/tests"
    tested = run_promtool(promtool, "test", "rules", *UNIT_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_every_contract_alert_exists_with_summary_description_runbook_and_severity() -> None:
    found = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert sorted(found) == sorted(CONTRACT_ALERTS)
    for name, rule in found.items():
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), f"{name} has no summary"
        assert annotations.get("description"), f"{name} has no description"
        assert annotations.get("runbook_url", "").endswith(f"{RUNBOOKS}#{name.lower()}"), name
        assert rule.get("labels", {}).get("severity") in ("critical", "warning"), name
        assert re.search(r"\braas_\w+|\bup\{raas_component=", rule["expr"]), f"{name} uses no RaaS metric or target"


def test_unit_tests_run_at_a_15_s_evaluation_interval_and_see_every_alert_fire_and_stay_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        document = yaml.safe_load(path.read_text())
        assert document["evaluation_interval"] == "15s", path.name
        assert document["rule_files"] == ["../raas-rules.yaml"], path.name
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert firing == set(CONTRACT_ALERTS), f"alerts never expected to fire: {set(CONTRACT_ALERTS) - firing}"
    assert quiet == set(CONTRACT_ALERTS), f"alerts never expected to stay quiet: {set(CONTRACT_ALERTS) - quiet}"


@pytest.mark.parametrize("removed", CONTRACT_ALERTS)
def test_the_unit_tests_fail_once_the_alert_is_removed(promtool: str, removed: str, tmp_path: Path) -> None:
    document = yaml.safe_load(RULES.read_text())
    document["groups"][0]["rules"] = [rule for rule in document["groups"][0]["rules"] if rule["alert"] != removed]
    (tmp_path / "raas-rules.yaml").write_text(yaml.safe_dump(document))
    shutil.copytree(ALERTS / "tests", tmp_path / "tests")
    tested = run_promtool(promtool, "test", "rules", *(f"tests/{path.name}" for path in UNIT_TESTS), cwd=tmp_path)
    assert tested.returncode != 0
    assert f"alertname: {removed}," in tested.stdout + tested.stderr
