"""Pydantic JSON Schema → Kubernetes structural ``openAPIV3Schema``.

Kubernetes accepts only *structural* schemas for a CRD (apiextensions.k8s.io/v1): every node
has a ``type``; no ``$ref`` / ``definitions``; ``additionalProperties`` and ``properties`` are
mutually exclusive (unknown fields are pruned, or refused with strict field validation); no
``const``; OpenAPI 3.0 bounds (``exclusiveMinimum`` is a boolean next to ``minimum``); optional
values are ``nullable: true``; logical junctors (``oneOf``/``anyOf``/``allOf``/``not``) may only
add value checks on fields that the structural part already declares (no ``type``,
``description``, ``default`` or ``nullable`` inside them).

`structural_schema` performs that conversion:

* ``$ref`` into ``$defs``: inlined (the referring node's own description and default win);
* ``anyOf [X, {type: null}]``: X with ``nullable: true`` (a ``null`` default is dropped);
* ``const``: a one-value ``enum``;
* numeric ``exclusiveMinimum``/``exclusiveMaximum``: ``minimum``/``maximum`` + boolean flag;
* ``additionalProperties: false``: dropped (structural pruning does that job);
  ``additionalProperties: <schema>`` (a dict field): converted and kept;
* a discriminated union (``oneOf`` + ``discriminator``, e.g. the git|local ``source``): one
  object declaring every member's properties (the discriminator required, enum of its values;
  defaults kept only for properties every member shares with the same default), plus a
  ``oneOf`` with one branch per member: the discriminator's value, the member's required
  properties, and ``not`` any property the member lacks — checkable by the API server and by
  any JSON Schema validator alike;
* ``title`` and ``discriminator``: dropped; enums, patterns, length/number/item bounds,
  ``format`` and descriptions: kept.

Anything else (a plain union, ``prefixItems``…) raises `UnsupportedSchemaError` rather than
producing a schema the API server would reject or silently loosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JsonSchema = dict[str, Any]

_KEPT = (
    "type",
    "format",
    "description",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "required",
)
_DROPPED = frozenset({"title", "discriminator", "$defs"})
_HANDLED = frozenset(
    {
        *_KEPT,
        *_DROPPED,
        "$ref",
        "anyOf",
        "oneOf",
        "const",
        "default",
        "properties",
        "additionalProperties",
        "items",
        "exclusiveMinimum",
        "exclusiveMaximum",
    }
)


class UnsupportedSchemaError(ValueError):
    """A pydantic construct that has no structural equivalent here (extend `structural_schema`)."""


def structural_schema(model_schema: Mapping[str, Any]) -> JsonSchema:
    """The structural ``openAPIV3Schema`` equivalent of a pydantic ``model_json_schema()``."""
    definitions = model_schema.get("$defs", {})
    return _convert(model_schema, definitions)


def _convert(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> JsonSchema:
    unknown = set(node) - _HANDLED
    if unknown:
        raise UnsupportedSchemaError(f"no structural form for the JSON Schema keywords {sorted(unknown)}")
    if "$ref" in node:
        target = _convert(definitions[node["$ref"].rsplit("/", 1)[-1]], definitions)
        return _with_own_annotations(target, node)
    if "anyOf" in node:
        return _with_own_annotations(_nullable(node["anyOf"], definitions), node)
    if "oneOf" in node:
        if "discriminator" not in node:
            raise UnsupportedSchemaError("a oneOf without a discriminator has no structural form")
        union = _discriminated_union(node, definitions)
        return _with_own_annotations(union, node)
    out: JsonSchema = {key: node[key] for key in _KEPT if key in node}
    if "const" in node:
        out["enum"] = [node["const"]]
    _convert_exclusive_bounds(node, out)
    if "properties" in node:
        out["properties"] = {name: _convert(sub, definitions) for name, sub in node["properties"].items()}
    additional = node.get("additionalProperties")
    if isinstance(additional, Mapping):
        out["additionalProperties"] = _convert(additional, definitions)
    if "items" in node:
        out["items"] = _convert(node["items"], definitions)
    if node.get("default") is not None:
        out["default"] = node["default"]
    if "type" not in out:
        raise UnsupportedSchemaError(f"schema node without a type: {dict(node)}")
    return out


def _with_own_annotations(target: JsonSchema, node: Mapping[str, Any]) -> JsonSchema:
    """`target` with the referring node's description and (non-null) default, which take precedence."""
    out = dict(target)
    if "description" in node:
        out["description"] = node["description"]
    if node.get("default") is not None:
        out["default"] = node["default"]
    return out


def _nullable(options: list[Mapping[str, Any]], definitions: Mapping[str, Any]) -> JsonSchema:
    values = [option for option in options if option.get("type") != "null"]
    if len(values) != 1 or len(options) != 2:
        raise UnsupportedSchemaError(f"only `X | None` unions have a structural form, not {options}")
    out = _convert(values[0], definitions)
    out["nullable"] = True
    return out


def _convert_exclusive_bounds(node: Mapping[str, Any], out: JsonSchema) -> None:
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if exclusive in node:
            out[inclusive] = node[exclusive]
            out[exclusive] = True


def _discriminated_union(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> JsonSchema:
    tag = node["discriminator"]["propertyName"]
    members = [_convert(member, definitions) for member in node["oneOf"]]
    tag_values: list[Any] = []
    properties: dict[str, JsonSchema] = {}
    for member in members:
        for name, sub in member.get("properties", {}).items():
            if name == tag:
                tag_values.extend(sub["enum"])
            elif name in properties and _without_default(properties[name]) != _without_default(sub):
                raise UnsupportedSchemaError(f"union members disagree on the type of {name!r}")
            elif name in properties and properties[name].get("default") != sub.get("default"):
                properties[name] = _without_default(sub)
            else:
                properties.setdefault(name, sub)
    for name, sub in list(properties.items()):
        if not all(name in member.get("properties", {}) for member in members):
            properties[name] = _without_default(sub)
    properties = {tag: {"type": "string", "enum": tag_values, "description": "Which kind of source."}, **properties}
    branches = []
    for member, value in zip(members, tag_values, strict=True):
        missing = [name for name in properties if name not in member.get("properties", {})]
        branch: JsonSchema = {"properties": {tag: {"enum": [value]}}, "required": [tag, *member.get("required", [])]}
        if missing:
            branch["not"] = {"anyOf": [{"required": [name]} for name in missing]}
        branches.append(branch)
    descriptions = [f"{value}: {member['description']}" for member, value in zip(members, tag_values, strict=True)]
    return {
        "type": "object",
        "description": "One of — " + " | ".join(descriptions),
        "required": [tag],
        "properties": properties,
        "oneOf": branches,
    }


def _without_default(schema: JsonSchema) -> JsonSchema:
    return {key: value for key, value in schema.items() if key != "default"}
