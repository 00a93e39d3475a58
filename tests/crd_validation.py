"""Validating a custom resource against its CRD's schema as the API server would, with jsonschema.

The structural ``openAPIV3Schema`` becomes plain JSON Schema: ``nullable`` turns into a null type,
``x-kubernetes-*`` extensions are dropped (CEL rules are checked separately), and objects with
declared properties refuse unknown fields, as the API server does under strict field validation.
"""

from __future__ import annotations

from typing import Any

import jsonschema


def openapi_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 / structural schema → plain Draft 4 JSON Schema with strict unknown fields."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: as_json_schema(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if node.get("type") == "object" and "properties" in node:
        out.setdefault("additionalProperties", False)
    return out


def schema_errors(crd: dict[str, Any], document: dict[str, Any]) -> list[str]:
    """What jsonschema finds wrong with `document` against the CRD's schema (metadata left aside)."""
    schema = as_json_schema(openapi_schema(crd))
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta is the API server's own
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]
