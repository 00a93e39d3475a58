"""The CRDs and the pydantic models are one contract: generated from them, and agreeing with them.

No API server can run here, so the CRD's ``openAPIV3Schema`` is checked the two ways the API
server checks a custom resource:

* the OpenAPI part with ``jsonschema`` (Draft 4 semantics, as OpenAPI 3.0: boolean
  ``exclusiveMinimum``; ``nullable: true`` rewritten as a ``null`` type; ``additionalProperties:
  false`` added to every object with properties, which is what strict field validation —
  ``kubectl apply`` by default — does with unknown fields instead of pruning them);
* the ``x-kubernetes-validations`` CEL rules with ``cel-python`` (RE2 regular expressions, as the
  API server), on create: transition rules (``oldSelf``, e.g. the immutable spec) are not
  evaluated; their presence is asserted instead.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from celpy.adapter import json_to_cel
from crd_validation import openapi_schema, schema_errors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from raas_operator.crds import raasjob_crd, rendered_crds, robot_crd, structural_schema
from raas_operator.crds.__main__ import main as crds_main
from raas_operator.crds.schema import UnsupportedSchemaError
from raas_operator.jobs.model import (
    Condition,
    ConditionStatus,
    FailureClass,
    JobSpec,
    JobStatus,
    JobSummary,
    Phase,
    PhaseChange,
    transition,
)
from raas_operator.robots.model import Robot, RobotHealth, RobotPhase, RobotSpec, RobotStatus

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "manifests" / "crds"
EXAMPLES = ROOT / "manifests" / "examples"
BAD = Path(__file__).resolve().parent / "bad_resources"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


# --- validating a custom resource as the API server would --------------------------------------


def cel_rules(node: dict[str, Any], value: Any, path: str = "") -> Iterator[tuple[str, dict[str, str], Any]]:
    """Every (path, rule, self) the API server evaluates for `value` under schema `node`."""
    if value is None:
        return
    for validation in node.get("x-kubernetes-validations", []):
        yield path, validation, value
    if isinstance(value, dict):
        for key, item in value.items():
            sub = node.get("properties", {}).get(key) or node.get("additionalProperties")
            if isinstance(sub, dict):
                yield from cel_rules(sub, item, f"{path}.{key}")
    elif isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            yield from cel_rules(node["items"], item, f"{path}[{index}]")


_CEL = celpy.Environment()


def cel_errors(crd: dict[str, Any], document: dict[str, Any]) -> list[str]:
    """Messages of the CEL rules `document` breaks on create (transition rules skipped)."""
    errors = []
    for path, validation, value in cel_rules(openapi_schema(crd), document):
        if "oldSelf" in validation["rule"]:
            continue
        program = _CEL.program(_CEL.compile(validation["rule"]))
        if program.evaluate({"self": json_to_cel(value)}) != celpy.celtypes.BoolType(True):
            errors.append(f"{path or '<root>'}: {validation['message']}")
    return errors


def api_server_errors(crd: dict[str, Any], document: dict[str, Any]) -> list[str]:
    return schema_errors(crd, document) + cel_errors(crd, document)


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


CRDS = {"RaasJob": raasjob_crd(), "Robot": robot_crd()}


def pydantic_errors(document: dict[str, Any]) -> str | None:
    """The model's complaint about a RaasJob or Robot object, None when it accepts it."""
    try:
        if document["kind"] == "RaasJob":
            JobSpec.model_validate(document.get("spec", {}))
            JobStatus.model_validate(document.get("status", {}))
        else:
            Robot.model_validate(
                {"name": document["metadata"]["name"], "spec": document.get("spec", {}), **_status(document)}
            )
    except ValidationError as error:
        return str(error)
    return None


def _status(document: dict[str, Any]) -> dict[str, Any]:
    return {"status": document["status"]} if "status" in document else {}


def job_document(spec: JobSpec, status: JobStatus | None = None, name: str = "job-1") -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "raas.dev/v1alpha1",
        "kind": "RaasJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec.model_dump(mode="json"),
    }
    if status is not None:
        document["status"] = status.model_dump(mode="json")
    return document


def robot_document(robot: Robot) -> dict[str, Any]:
    return {
        "apiVersion": "raas.dev/v1alpha1",
        "kind": "Robot",
        "metadata": {"name": robot.name},
        "spec": robot.spec.model_dump(mode="json"),
        "status": robot.status.model_dump(mode="json"),
    }


def a_spec(**changes: Any) -> JobSpec:
    values: dict[str, Any] = {"owner": "ada", "source": {"kind": "git", "url": "https://git.example/ada/c.git"}}
    values.update(changes)
    return JobSpec.model_validate(values)


# --- generated files never drift ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(rendered_crds()))
def test_committed_crd_files_equal_the_generator_output(name: str) -> None:
    committed = (CRD_DIR / name).read_text(encoding="utf-8")
    assert committed == rendered_crds()[name], f"{name} is stale: run python -m raas_operator.crds manifests/crds"


def test_the_generator_module_writes_and_checks_the_files(tmp_path: Path) -> None:
    assert crds_main([str(tmp_path), "--check"]) == 1
    assert crds_main([str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(rendered_crds())
    assert crds_main([str(tmp_path), "--check"]) == 0
    assert crds_main([str(CRD_DIR), "--check"]) == 0


# --- CRD shape: names, scope, columns, immutability, conditions ------------------------------------


def test_raasjob_crd_is_namespaced_with_short_name_status_and_columns() -> None:
    crd = CRDS["RaasJob"]
    assert crd["metadata"]["name"] == "raasjobs.raas.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"] | {"shortNames": ["rj"]} == crd["spec"]["names"]
    assert (crd["spec"]["names"]["kind"], crd["spec"]["names"]["singular"]) == ("RaasJob", "raasjob")
    version = crd["spec"]["versions"][0]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Robot"] == ".status.robot"
    assert columns["Queue"] == ".status.queue_position"
    assert columns["Reward"] == ".status.summary.total_reward"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_robot_crd_is_cluster_scoped_with_short_name_status_and_columns() -> None:
    crd = CRDS["Robot"]
    assert crd["metadata"]["name"] == "robots.raas.dev"
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["shortNames"] == ["rb"]
    assert crd["spec"]["names"]["plural"] == "robots"
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Node"] == ".spec.node_name"
    assert columns["Job"] == ".status.current_job"
    assert columns["Heartbeat"] == ".status.last_heartbeat"


def test_raasjob_spec_is_immutable_after_creation() -> None:
    spec = openapi_schema(CRDS["RaasJob"])["properties"]["spec"]
    assert {"rule": "self == oldSelf"}.items() <= spec["x-kubernetes-validations"][0].items()


def test_robot_node_name_is_immutable_but_the_rest_of_the_spec_is_not() -> None:
    spec = openapi_schema(CRDS["Robot"])["properties"]["spec"]
    assert "x-kubernetes-validations" not in spec
    assert spec["properties"]["node_name"]["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"


def test_raasjob_status_has_standard_conditions_keyed_by_type() -> None:
    conditions = openapi_schema(CRDS["RaasJob"])["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert set(item["required"]) == {"type", "status", "reason", "lastTransitionTime"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_phase_enums_are_the_models_enums() -> None:
    job_status = openapi_schema(CRDS["RaasJob"])["properties"]["status"]["properties"]
    assert job_status["phase"]["enum"] == [phase.value for phase in Phase]
    assert job_status["failure_class"]["enum"] == [failure.value for failure in FailureClass]
    robot_status = openapi_schema(CRDS["Robot"])["properties"]["status"]["properties"]
    assert robot_status["phase"]["enum"] == [phase.value for phase in RobotPhase]


# --- structural-schema rules -----------------------------------------------------------------------


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every schema node with its path and whether it sits inside a logical junctor."""
    yield from _walk(node, path, junctor=False)


def _walk(node: Any, path: str, junctor: bool) -> Iterator[tuple[str, dict[str, Any], bool]]:
    if not isinstance(node, dict):
        return
    yield path, node, junctor
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}", junctor)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            yield from _walk(node[key], f"{path}.{key}", junctor or key == "not")
    for key in ("oneOf", "anyOf", "allOf"):
        for index, sub in enumerate(node.get(key, [])):
            yield from _walk(sub, f"{path}.{key}[{index}]", True)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_schemas_are_structural(kind: str) -> None:
    forbidden_everywhere = {"$ref", "$defs", "definitions", "const", "title", "discriminator"}
    forbidden_in_junctors = {"type", "description", "default", "nullable", "additionalProperties"}
    root = openapi_schema(CRDS[kind])
    for path, node, in_junctor in walk(root):
        assert not forbidden_everywhere & node.keys(), (path, node.keys())
        assert "anyOf" not in node or in_junctor, f"{path}: a union left in the structural part"
        if in_junctor:
            assert not forbidden_in_junctors & node.keys(), (path, node.keys())
            declared = node_properties_outside_junctors(root, path)
            assert set(node.get("properties", {})) <= declared, path
        else:
            assert "type" in node or path == ".metadata", f"{path} has no type"
            assert not ("properties" in node and "additionalProperties" in node), path
            assert node.get("additionalProperties") is not False, path
            if isinstance(node.get("exclusiveMinimum"), bool):
                assert "minimum" in node, path


def node_properties_outside_junctors(root: dict[str, Any], junctor_path: str) -> set[str]:
    """Properties the structural parent of a junctor declares (a junctor may only constrain those)."""
    parent_path = re.split(r"\.(?:oneOf|anyOf|allOf)\[|\.not", junctor_path)[0]
    node = root
    for step in [step for step in parent_path.split(".") if step]:
        node = node[step] if step in ("items", "additionalProperties") else node["properties"][step]
    return set(node.get("properties", {}))


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("RaasJob", "status.robot"),
        ("RaasJob", "status.commit"),
        ("RaasJob", "status.failure_class"),
        ("RaasJob", "status.queue_position"),
        ("RaasJob", "status.summary"),
        ("RaasJob", "status.summary.total_reward"),
        ("RaasJob", "spec.robot.name"),
        ("Robot", "spec.calibration"),
        ("Robot", "status.current_job"),
        ("Robot", "status.last_heartbeat"),
        ("Robot", "status.health.encoder_ok"),
    ],
)
def test_optional_model_fields_are_nullable_in_the_crd(kind: str, path: str) -> None:
    node = openapi_schema(CRDS[kind])
    for step in path.split("."):
        node = node["properties"][step]
    assert node["nullable"] is True
    assert "default" not in node


def test_plain_unions_are_refused_rather_than_loosened() -> None:
    with pytest.raises(UnsupportedSchemaError, match=r"X \| None"):
        structural_schema({"anyOf": [{"type": "string"}, {"type": "integer"}]})
    with pytest.raises(UnsupportedSchemaError, match="keywords"):
        structural_schema({"type": "array", "prefixItems": [{"type": "string"}]})


# --- examples, bad resources, round trips ----------------------------------------------------------


EXAMPLE_FILES = sorted(path for path in EXAMPLES.glob("*.yaml") if load(path)["kind"] in CRDS)
BAD_FILES = sorted(BAD.glob("*.yaml"))
CEL_ONLY = {"raasjob-entrypoint-escapes.yaml", "raasjob-ref-option-injection.yaml"}
"""Bad resources only a CEL rule catches: jsonschema passes them, CEL (and pydantic) refuse them."""


def test_there_are_examples_of_both_kinds() -> None:
    assert {load(path)["kind"] for path in EXAMPLE_FILES} == {"RaasJob", "Robot"}


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_examples_are_accepted_by_the_crd_and_the_model(path: Path) -> None:
    document = load(path)
    assert api_server_errors(CRDS[document["kind"]], document) == []
    assert pydantic_errors(document) is None


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda path: path.name)
def test_bad_resources_are_refused_by_the_crd_and_the_model(path: Path) -> None:
    document = load(path)
    crd = CRDS[document["kind"]]
    assert pydantic_errors(document) is not None
    if path.name in CEL_ONLY:
        assert schema_errors(crd, document) == []  # jsonschema cannot evaluate CEL rules
        assert cel_errors(crd, document) != []
    else:
        assert schema_errors(crd, document) != []


def test_names_too_long_for_a_label_are_refused_by_a_cel_rule() -> None:
    document = job_document(a_spec(), name="j" * 64)
    assert cel_errors(CRDS["RaasJob"], document) == ["<root>: " + CRDS_MESSAGE_NAME]


CRDS_MESSAGE_NAME = openapi_schema(CRDS["RaasJob"])["x-kubernetes-validations"][0]["message"]


def full_status() -> JobStatus:
    status = JobStatus()
    status = transition(status, Phase.FETCHING, at=T0)
    status = transition(status, Phase.QUEUED, at=T0, commit="a" * 40, queue_position=3, estimated_start=T0)
    status = transition(status, Phase.STARTING, at=T0, robot="pendulum-1", attempts=1)
    status = transition(status, Phase.RUNNING, at=T0 + timedelta(seconds=2), reason="PodRunning", message="go")
    status = transition(status, Phase.FAILED, at=T0 + timedelta(seconds=9), failure_class=FailureClass.USER_ERROR)
    return status.model_copy(
        update={
            "excluded_robots": ("pendulum-2",),
            "results_prefix": "results/v1/job-1/",
            "results_pending": 2,
            "summary": JobSummary(steps=500, total_reward=-123.5, swing_up_time_s=None, deadline_misses=1),
            "conditions": (
                Condition(
                    type="Scheduled",
                    status=ConditionStatus.TRUE,
                    reason="RobotAssigned",
                    last_transition_time=T0,
                    observed_generation=1,
                ),
                Condition(
                    type="ResultsStored", status=ConditionStatus.UNKNOWN, reason="StoreDown", last_transition_time=T0
                ),
            ),
        }
    )


@pytest.mark.parametrize(
    "status",
    [
        JobStatus(),
        JobStatus(phase=Phase.QUEUED, queue_position=1, estimated_start=T0, commit="0" * 40),
        full_status(),
        JobStatus(
            phase=Phase.SUCCEEDED,
            summary=JobSummary(total_reward=0.0),
            history=(PhaseChange(phase=Phase.SUCCEEDED, at=T0),),
        ),
    ],
    ids=["empty", "queued", "full", "succeeded"],
)
def test_model_dumps_of_job_statuses_validate_against_the_crd(status: JobStatus) -> None:
    document = job_document(a_spec(), status)
    assert api_server_errors(CRDS["RaasJob"], document) == []
    assert JobStatus.model_validate(document["status"]) == status


def test_a_full_status_round_trips_through_its_json_form() -> None:
    status = full_status()
    dumped = status.model_dump(mode="json")
    assert dumped["conditions"][0]["lastTransitionTime"] == "2025-03-01T12:00:00Z"
    assert dumped["conditions"][0]["observedGeneration"] == 1
    assert JobStatus.model_validate(dumped) == status


def test_model_dumps_of_robots_validate_against_the_crd() -> None:
    robot = Robot(
        name="pendulum-1",
        spec=RobotSpec(node_name="pi-1.lab.local", calibration={"mass_kg": 0.1, "length_m": 0.2}),
        status=RobotStatus(
            phase=RobotPhase.BUSY,
            current_job="default/swingup",
            last_heartbeat=T0,
            health=RobotHealth(
                reasons=("motor warm",),
                encoder_ok=True,
                motor_temperature_celsius=41.5,
                last_reset_ok=True,
                last_reset_duration_s=4.2,
            ),
            jobs_completed=17,
        ),
    )
    for candidate in (robot, Robot(name="pendulum-2", spec=RobotSpec(node_name="pi-2"))):
        document = robot_document(candidate)
        assert api_server_errors(CRDS["Robot"], document) == []
        assert pydantic_errors(document) is None


label_values = st.from_regex(r"\A([A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?)?\Z") | st.sampled_from(
    ["bad value", "-x", "a" * 64, "ok.value"]
)
path_segments = st.sampled_from(["ctl", "a.b", "..", ".", "", "x-y", "_u"])


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    owner=st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z"),
    entrypoint=st.lists(path_segments, min_size=0, max_size=4).map(lambda parts: "/".join([*parts, "run.py"])),
    ref=st.text(alphabet="ab-./@{}+_ ", min_size=1, max_size=12),
    time_limit_s=st.integers(min_value=-5, max_value=4000),
    priority=st.integers(min_value=-150, max_value=150),
    selector=st.dictionaries(st.sampled_from(["raas.dev/lab", "room", "x"]), label_values, max_size=3),
)
def test_the_crd_accepts_exactly_the_specs_the_model_accepts(
    owner: str, entrypoint: str, ref: str, time_limit_s: int, priority: int, selector: dict[str, str]
) -> None:
    values = {
        "owner": owner,
        "source": {"kind": "git", "url": "https://git.example/ada/c.git", "ref": ref},
        "entrypoint": entrypoint,
        "time_limit_s": time_limit_s,
        "priority": priority,
        "robot": {"selector": selector},
    }
    document = {"apiVersion": "raas.dev/v1alpha1", "kind": "RaasJob", "metadata": {"name": "j"}, "spec": values}
    crd_accepts = api_server_errors(CRDS["RaasJob"], copy.deepcopy(document)) == []
    assert crd_accepts == (pydantic_errors(document) is None), (values, api_server_errors(CRDS["RaasJob"], document))


@pytest.mark.parametrize("status", [JobStatus(), full_status()], ids=["empty", "full"])
def test_statuses_dumped_without_nulls_round_trip_and_validate(status: JobStatus) -> None:
    """Writers to the API server omit None (a merge-patch null deletes the field; see crds.generate)."""
    dumped = status.model_dump(mode="json", exclude_none=True)
    assert JobStatus.model_validate(dumped) == status
    assert api_server_errors(CRDS["RaasJob"], job_document(a_spec()) | {"status": dumped}) == []
