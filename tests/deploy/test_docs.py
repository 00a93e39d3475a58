"""The operator guide (``docs/``) stays true to the code, the CRDs, the chart and the alert rules.

* every alert of ``charts/raas/files/alerts/raas-rules.yaml`` has a runbook section in
  ``docs/runbooks.md`` whose GitHub anchor is the one its ``runbook_url`` names, the section
  shows the alert's own expression, and every section belongs to an alert;
* every relative link in ``docs/*.md`` leads to an existing file, and to an existing heading when
  it names an anchor;
* every ``raas``, ``raas-agent`` and ``raas-operator`` command in a shell block is accepted by
  the real argparse parsers (the commands' handlers are replaced, so nothing runs);
* every YAML block parses; RaasJob and Robot blocks validate against their CRDs' schemas and
  built-in kinds with kubernetes-validate;
* the wiring tables' GPIOs and header pins are `RigWiring`'s defaults, and the PWM and dead-man
  figures are `PigpioDriverConfig`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_validation import schema_errors

from gym_raas.params import PendulumParams
from raas_node.drivers.config import PigpioDriverConfig, PwmResolution, RigWiring

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DOC_FILES = sorted(DOCS.glob("*.md"))
RULES_FILE = ROOT / "charts" / "raas" / "files" / "alerts" / "raas-rules.yaml"
RUNBOOKS = DOCS / "runbooks.md"
WIRING = DOCS / "wiring.md"
CRDS = {
    "RaasJob": ROOT / "manifests" / "crds" / "raasjobs.raas.dev.yaml",
    "Robot": ROOT / "manifests" / "crds" / "robots.raas.dev.yaml",
}
CONTRACT_ALERTS = {
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
}
"""The alerts issues 7 and 18 ask for, each with a runbook section."""
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
PROGRAMS = {"raas", "raas-agent", "raas-operator"}
BCM_TO_HEADER_PIN = {
    0: 27, 1: 28, 2: 3, 3: 5, 4: 7, 5: 29, 6: 31, 7: 26, 8: 24, 9: 21, 10: 19, 11: 23, 12: 32, 13: 33,
    14: 8, 15: 10, 16: 36, 17: 11, 18: 12, 19: 35, 20: 38, 21: 40, 22: 15, 23: 16, 24: 18, 25: 22,
    26: 37, 27: 13,
}  # fmt: skip
"""Broadcom GPIO → physical pin of the Raspberry Pi's 40-pin header."""


# -- reading Markdown ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeBlock:
    path: Path
    line: int
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")


def split_markdown(path: Path) -> tuple[list[str], list[CodeBlock]]:
    """The lines outside fenced code blocks (blanked inside them), and the fenced blocks."""
    prose: list[str] = []
    blocks: list[CodeBlock] = []
    fence: str | None = None
    language, start = "", 0
    body: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = _FENCE.match(line)
        if fence is None and match:
            fence, language, start, body = match.group(1), match.group(2).lower(), number, []
            prose.append("")
        elif fence is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            blocks.append(CodeBlock(path, start, language, "\n".join(body)))
            fence = None
            prose.append("")
        elif fence is not None:
            body.append(line)
            prose.append("")
        else:
            prose.append(line)
    assert fence is None, f"{path.name}: the code block opened on line {start} is never closed"
    return prose, blocks


def all_blocks(*languages: str) -> list[CodeBlock]:
    wanted = set(languages)
    return [block for path in DOC_FILES for block in split_markdown(path)[1] if block.language in wanted]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, text) of every ATX heading outside code blocks."""
    prose, _ = split_markdown(path)
    found = []
    for line in prose:
        match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if match:
            found.append((len(match.group(1)), match.group(2)))
    return found


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file, with GitHub's ``-1``, ``-2`` suffixes for repeats."""
    seen: dict[str, int] = {}
    result = set()
    for _, text in headings(path):
        anchor = github_anchor(text)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


def sections(path: Path, level: int = 2) -> dict[str, str]:
    """Heading text → the text under it (code blocks included) up to the next heading of that level."""
    text = path.read_text(encoding="utf-8")
    parts = re.split(rf"(?m)^{'#' * level} (.+)$", text)
    return {parts[index].strip(): parts[index + 1] for index in range(1, len(parts), 2)}


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(path: Path) -> Iterator[tuple[int, str]]:
    prose, _ = split_markdown(path)
    for number, line in enumerate(prose, start=1):
        outside_code = re.sub(r"`[^`]*`", "", line)  # links inside inline code are not links
        for match in _LINK.finditer(outside_code):
            target = match.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                yield number, target


# -- the docs exist ------------------------------------------------------------------------------


def test_the_guide_has_its_pages() -> None:
    names = {path.name for path in DOC_FILES}
    assert {
        "README.md",
        "k3s-raspberry-pi.md",
        "wiring.md",
        "calibration.md",
        "maintenance.md",
        "submitting-jobs.md",
        "runbooks.md",
    } <= names


def test_the_index_links_every_page() -> None:
    linked = {target.split("#")[0] for _, target in relative_links(DOCS / "README.md")}
    assert {path.name for path in DOC_FILES if path.name != "README.md"} <= linked


# -- runbooks ------------------------------------------------------------------------------------


def alert_rules() -> dict[str, dict[str, Any]]:
    """Alert name → rule, from the plain rules file (which must exist: no skipping)."""
    assert RULES_FILE.is_file(), f"{RULES_FILE.relative_to(ROOT)} is missing: the runbooks cannot be checked"
    document = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    rules = {rule["alert"]: rule for group in document["groups"] for rule in group["rules"] if "alert" in rule}
    assert rules, "the rules file has no alerts"
    return rules


def runbook_sections() -> dict[str, str]:
    return sections(RUNBOOKS)


def test_every_alert_of_the_issue_is_in_the_rules_and_the_runbooks() -> None:
    assert set(alert_rules()) >= CONTRACT_ALERTS
    assert set(runbook_sections()) >= CONTRACT_ALERTS


def test_every_alert_links_to_its_own_runbook_section() -> None:
    available = anchors(RUNBOOKS)
    for name, rule in alert_rules().items():
        annotations = rule.get("annotations") or {}
        assert annotations.get("summary"), f"{name} has no summary"
        url = annotations.get("runbook_url", "")
        assert url.endswith(f"docs/runbooks.md#{name.lower()}"), f"{name}: runbook_url {url!r}"
        anchor = url.rsplit("#", 1)[1]
        assert anchor in available, f"{name}: docs/runbooks.md has no section with anchor #{anchor}"


def test_every_runbook_section_belongs_to_an_alert() -> None:
    rules = alert_rules()
    strays = set(runbook_sections()) - set(rules)
    assert not strays, f"runbook sections without an alert: {sorted(strays)}"
    assert len(runbook_sections()) == len(rules)


def _squash(text: str) -> str:
    return " ".join(text.split())


def test_every_runbook_section_shows_its_alerts_expression_duration_and_severity() -> None:
    found = runbook_sections()
    for name, rule in alert_rules().items():
        section = found[name]
        assert _squash(rule["expr"]) in _squash(section), f"{name}: the section's expression differs from the rule's"
        assert f"**fires after** {rule['for']}" in section, f"{name}: the section does not say `for: {rule['for']}`"
        severity = (rule.get("labels") or {}).get("severity")
        assert f"**Severity** {severity}" in section, f"{name}: the section does not say severity {severity}"


def test_every_runbook_section_explains_and_gives_steps() -> None:
    for name, section in runbook_sections().items():
        prose = re.sub(r"```.*?```", "", section, flags=re.S)
        assert len(prose.split()) >= 80, f"{name}: the runbook is too thin to act on"
        assert re.search(r"(?m)^1\. ", prose), f"{name}: the runbook has no numbered steps"


def test_runbook_sections_name_every_metric_of_their_expression() -> None:
    for name, rule in alert_rules().items():
        prose = re.sub(r"```.*?```", "", runbook_sections()[name], flags=re.S)
        metrics = set(re.findall(r"\braas_[a-z_]+", rule["expr"]))
        for metric in metrics:
            base = re.sub(r"_bucket$", "", metric)
            assert base in prose, f"{name}: the explanation never mentions {base}"


# -- links ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda path: path.name)
def test_every_relative_link_resolves(path: Path) -> None:
    broken = []
    for line, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"line {line}: {target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"line {line}: {target} (no heading with anchor #{anchor})")
    assert not broken, f"{path.name}: " + "; ".join(broken)


def test_github_anchors_are_computed_as_github_does() -> None:
    assert github_anchor("RaasRobotDown") == "raasrobotdown"
    assert github_anchor("1. The k3s server") == "1-the-k3s-server"
    assert github_anchor("Install the agent tools on the Pi") == "install-the-agent-tools-on-the-pi"
    assert github_anchor("With `kubectl`") == "with-kubectl"


# -- commands ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    where: str
    program: str
    argv: list[str]

    def __str__(self) -> str:
        return f"{self.where}: {self.program} {shlex.join(self.argv)}"


_SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def shell_lines(text: str) -> Iterator[str]:
    """Logical lines of a shell block: continuations joined, here-document bodies left out."""
    pending = ""
    heredoc_end: str | None = None
    for raw in text.splitlines():
        if heredoc_end is not None:
            if raw.strip() == heredoc_end:
                heredoc_end = None
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line, pending = pending + raw, ""
        marker = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if marker:
            heredoc_end = marker.group(1)
            line = line[: marker.start()]
        yield line


def commands_in(block: CodeBlock) -> Iterator[Command]:
    """The raas / raas-agent / raas-operator invocations of a shell block (also after ``--``)."""
    for line in shell_lines(block.text):
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        simple: list[list[str]] = [[]]
        for token in tokens:
            if token in _SEPARATORS or set(token) <= set("&|;()<>"):
                simple.append([])
            else:
                simple[-1].append(token)
        for command_words in simple:
            words = list(command_words)
            while words and (_ASSIGNMENT.match(words[0]) or words[0] in ("sudo", "exec", "time")):
                words = words[1:]
            starts = [0] + [index + 1 for index, word in enumerate(words) if word == "--"]
            for start in starts:
                if start < len(words) and Path(words[start]).name in PROGRAMS:
                    yield Command(block.where, Path(words[start]).name, words[start + 1 :])
                    break


def documented_commands() -> list[Command]:
    return [command for block in all_blocks(*SHELL_LANGUAGES) for command in commands_in(block)]


class _ParsedError(Exception):
    """Raised instead of running a command once its arguments were accepted."""


def _accepts(command: Command, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """None when the program's real parser accepts the arguments, else what it said."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            _parse(command, monkeypatch)
    except _ParsedError:
        return None
    except SystemExit as exit_:
        return f"exit {exit_.code}: {stderr.getvalue().strip().splitlines()[-1:] or ''}"
    return None


def _stop(*_: Any, **__: Any) -> int:
    raise _ParsedError


def _parse(command: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    if command.program == "raas":
        from gym_raas.cli.main import build_parser

        build_parser().parse_args(command.argv)
        raise _ParsedError
    if command.program == "raas-agent":
        import raas_node.cli
        import raas_node.virtual_rig
        from raas_node.virtual_rig.cli import build_parser as rig_parser

        def rig(argv: list[str]) -> int:
            rig_parser().parse_args(argv)
            raise _ParsedError

        monkeypatch.setenv("NODE_NAME", "pi-pendulum-1")  # the DaemonSet's downward API
        monkeypatch.setattr(raas_node.cli, "_run", _stop)
        monkeypatch.setattr(raas_node.cli, "_calibrate", _stop)
        monkeypatch.setattr(raas_node.virtual_rig, "main", rig)
        raas_node.cli.main(command.argv)
        return
    import raas_operator.runtime.main

    monkeypatch.setattr(raas_operator.runtime.main, "OperatorSettings", _stop)  # read right after parsing
    raas_operator.runtime.main.main(command.argv)


def test_the_guide_shows_commands_of_every_program() -> None:
    assert {command.program for command in documented_commands()} == PROGRAMS


def test_every_documented_command_is_accepted_by_its_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = []
    for command in documented_commands():
        problem = _accepts(command, monkeypatch)
        if problem is not None:
            refused.append(f"{command} → {problem}")
    assert not refused, "\n".join(refused)


def test_a_wrong_command_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: unknown options and missing arguments are caught."""
    where = "test"
    assert _accepts(Command(where, "raas", ["submit", "--no-such-flag", "x"]), monkeypatch) is not None
    assert _accepts(Command(where, "raas", ["results", "job-1", "--download"]), monkeypatch) is not None
    assert _accepts(Command(where, "raas-agent", ["calibrate", "--robot", "r"]), monkeypatch) is not None
    assert _accepts(Command(where, "raas-agent", ["virtual-rig", "--prot", "1"]), monkeypatch) is not None
    assert _accepts(Command(where, "raas-operator", ["--no-such-flag"]), monkeypatch) is not None
    assert _accepts(Command(where, "raas", ["logs", "job-1", "--follow"]), monkeypatch) is None


def test_commands_are_found_after_sudo_variables_and_double_dashes() -> None:
    block = CodeBlock(
        WIRING,
        1,
        "sh",
        "X=1 sudo raas-agent run --robot a &\n"
        "kubectl exec deploy/raas-api -- /opt/raas/bin/raas admin token list  # comment\n"
        "raas list \\\n  --all; raas robots\n"
        "python - <<'PY'\nraas not-a-command\nPY\n",
    )
    found = [(command.program, command.argv) for command in commands_in(block)]
    assert found == [
        ("raas-agent", ["run", "--robot", "a"]),
        ("raas", ["admin", "token", "list"]),
        ("raas", ["list", "--all"]),
        ("raas", ["robots"]),
    ]


# -- YAML ----------------------------------------------------------------------------------------


def yaml_documents() -> list[tuple[CodeBlock, Any]]:
    found = []
    for block in all_blocks("yaml", "yml"):
        try:
            documents = list(yaml.safe_load_all(block.text))
        except yaml.YAMLError as error:
            pytest.fail(f"{block.where}: the YAML block does not parse: {error}")
        found += [(block, document) for document in documents if document is not None]
    return found


def test_every_yaml_block_parses() -> None:
    assert yaml_documents(), "the guide has no YAML blocks"


def test_raasjob_and_robot_blocks_validate_against_their_crds() -> None:
    crds = {kind: yaml.safe_load(path.read_text(encoding="utf-8")) for kind, path in CRDS.items()}
    checked = set()
    for block, document in yaml_documents():
        if not isinstance(document, dict) or document.get("apiVersion") != "raas.dev/v1alpha1":
            continue
        kind = document.get("kind")
        assert kind in crds, f"{block.where}: unknown RaaS kind {kind!r}"
        errors = schema_errors(crds[kind], document)
        assert not errors, f"{block.where}: {kind} is invalid: {errors}"
        checked.add(kind)
    assert checked == set(CRDS), f"the guide should show a RaasJob and a Robot; it shows {sorted(checked)}"


def test_yaml_blocks_that_name_a_repository_file_show_it_as_it_is() -> None:
    """A block whose first line is ``# <path in the repository>`` is a copy of that file."""
    copies = 0
    for block in all_blocks("yaml", "yml"):
        first = block.text.splitlines()[0] if block.text else ""
        match = re.match(r"^#\s+([\w./-]+/[\w./-]+\.ya?ml)\b", first)
        if match is None or match.group(1).startswith("/"):
            continue
        source = ROOT / match.group(1)
        assert source.is_file(), f"{block.where}: {match.group(1)} does not exist"
        shown = [document for document in yaml.safe_load_all(block.text) if document is not None]
        actual = [document for document in yaml.safe_load_all(source.read_text(encoding="utf-8")) if document]
        assert shown == actual, f"{block.where}: differs from {match.group(1)}"
        copies += 1
    assert copies, "the guide shows no example manifest"


def test_a_bad_raasjob_is_refused_by_the_same_check() -> None:
    crd = yaml.safe_load(CRDS["RaasJob"].read_text(encoding="utf-8"))
    job = {"apiVersion": "raas.dev/v1alpha1", "kind": "RaasJob", "metadata": {"name": "x"},
           "spec": {"owner": "ada", "source": {"kind": "git"}, "time_limit_s": 0}}  # fmt: skip
    assert schema_errors(crd, job)


def test_builtin_kubernetes_objects_in_the_guide_are_valid() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for block, document in yaml_documents():
        if not isinstance(document, dict) or "apiVersion" not in document:
            continue
        if str(document["apiVersion"]).startswith("raas.dev/"):
            continue
        try:
            kubernetes_validate.validate(document, "1.33.0", strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{block.where}: {str(error).splitlines()[0]}")


# -- wiring --------------------------------------------------------------------------------------


def markdown_tables(path: Path) -> list[list[dict[str, str]]]:
    """Every table of a Markdown file as a list of rows (header cell → cell)."""
    prose, _ = split_markdown(path)
    tables: list[list[dict[str, str]]] = []
    header: list[str] | None = None
    for line in [*prose, ""]:
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            tables.append([])
        elif not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
            tables[-1].append(dict(zip(header, cells, strict=True)))
    return tables


def _fields(cell: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", cell)


def test_the_wiring_tables_are_the_drivers_default_pins() -> None:
    wiring = RigWiring()
    documented: dict[str, int] = {}
    for table in markdown_tables(WIRING):
        for row in table:
            field_column = next((key for key in row if "RigWiring" in key), None)
            if field_column is None:
                continue
            (name,) = _fields(row[field_column])
            gpio = int(row["GPIO (BCM)"])
            default = getattr(wiring, name)
            assert default == gpio, f"{name}: the table says GPIO {gpio}, RigWiring {default}"
            assert int(row["header pin"]) == BCM_TO_HEADER_PIN[gpio], f"{name}: GPIO {gpio} is not on that pin"
            documented[name] = gpio
    pin_fields = {name for name in vars(wiring) if name.endswith("_pin")}
    assert set(documented) == pin_fields, f"pins missing from the tables: {sorted(pin_fields - set(documented))}"


def test_the_default_bridge_mode_is_the_documented_one() -> None:
    text = WIRING.read_text(encoding="utf-8")
    assert f"`BridgeMode.{RigWiring().bridge_mode.name}`" in text.split("## Bridge and encoder")[1].split("|")[0]


def test_the_pwm_and_dead_man_figures_are_the_drivers() -> None:
    config = PigpioDriverConfig()
    params = PendulumParams()
    checked = set()
    for table in markdown_tables(WIRING):
        for row in table:
            field_column = next((key for key in row if "PigpioDriverConfig" in key), None)
            if field_column is None:
                continue
            (name,) = _fields(row[field_column])
            value = float(re.findall(r"[\d.]+", row["value"])[0])
            assert value == pytest.approx(getattr(config, name)), f"{name}: the table says {value}"
            checked.add(name)
    assert checked == {"pwm_frequency_hz", "pwm_range", "deadman_timeout_s", "deadman_check_interval_s"}
    text = " ".join(WIRING.read_text(encoding="utf-8").split())
    resolution = PwmResolution.expected(config.pwm_frequency_hz, config.pwm_range)
    assert resolution.duty_steps == params.pwm_duty_steps
    assert f"all {resolution.duty_steps} duty values" in text
    assert f"{resolution.real_range} samples per cycle" in text
    assert f"after {config.deadman_missed_checks} checks" in text
    stop_ms = (round(config.deadman_timeout_s * 1000), round(config.deadman_worst_case_stop_s * 1000))
    assert f"{stop_ms[0]}–{stop_ms[1]} ms" in text
    assert f"{params.encoder_counts_per_rev} counts per revolution" in text


def test_the_documented_agent_defaults_are_the_cli_defaults() -> None:
    import raas_node.cli

    seen: dict[str, argparse.Namespace] = {}

    def keep(arguments: argparse.Namespace) -> int:
        seen["run"] = arguments
        return 0

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(raas_node.cli, "_run", keep)
        raas_node.cli.main(["run", "--robot", "pendulum-1"])
    text = WIRING.read_text(encoding="utf-8")
    assert f"{seen['run'].pigpio_host}:{seen['run'].pigpio_port}" in text
