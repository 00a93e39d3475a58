"""A container's environment and command line as the kubelet resolves them from the pod spec.

`resolve_environment` reads ``envFrom`` (secretRef, configMapRef, with prefix) and then ``env``
in order: ``value`` (with Kubernetes' ``$(NAME)`` expansion against the variables defined
before it; ``$$`` escapes), ``valueFrom.secretKeyRef`` / ``configMapKeyRef`` (``optional``
honoured) and ``valueFrom.fieldRef`` for ``metadata.name``, ``metadata.namespace``,
``metadata.uid``, ``spec.nodeName`` and ``spec.serviceAccountName``. A missing Secret, ConfigMap
or key raises `ContainerConfigError` with the kubelet's message, which the kubelet reports as the
container's ``CreateContainerConfigError``. `expand` applies the same ``$(NAME)`` expansion to
``command`` and ``args``.

`Lookup` reads a Secret's or ConfigMap's data, already decoded, from the API (None if absent).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Lookup = Callable[[str, str], Mapping[str, str] | None]
"""(kind ``Secret`` or ``ConfigMap``, name) → its decoded data, or None when it does not exist."""

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_FIELDS = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "metadata.uid": ("metadata", "uid"),
    "spec.nodeName": ("spec", "nodeName"),
    "spec.serviceAccountName": ("spec", "serviceAccountName"),
}


class ContainerConfigError(Exception):
    """The container cannot be created as specified; `reason` is the kubelet's waiting reason."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason


def expand(text: str, variables: Mapping[str, str]) -> str:
    """``$(NAME)`` replaced by the variable's value when defined (left as is otherwise); ``$$`` → ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return variables[name] if name in variables else match.group(0)

    return _REFERENCE.sub(replace, text)


def resolve_environment(pod: Mapping[str, Any], container: Mapping[str, Any], lookup: Lookup) -> dict[str, str]:
    """The container's variables, in the order Kubernetes defines them (later entries win)."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            if key in source:
                data = _read(lookup, kind, source[key]["name"], optional=bool(source[key].get("optional")))
                environment.update({prefix + name: value for name, value in (data or {}).items()})
    for variable in container.get("env") or []:
        name = variable["name"]
        if "valueFrom" not in variable:
            environment[name] = expand(str(variable.get("value", "")), environment)
            continue
        value = _value_from(pod, variable["valueFrom"], lookup)
        if value is not None:
            environment[name] = value
    return environment


def _value_from(pod: Mapping[str, Any], source: Mapping[str, Any], lookup: Lookup) -> str | None:
    for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
        if key in source:
            reference = source[key]
            optional = bool(reference.get("optional"))
            data = _read(lookup, kind, reference["name"], optional=optional)
            if data is None:
                return None
            if reference["key"] not in data:
                if optional:
                    return None
                raise ContainerConfigError(f"couldn't find key {reference['key']} in {kind} {reference['name']}")
            return data[reference["key"]]
    if "fieldRef" in source:
        path = source["fieldRef"]["fieldPath"]
        if path not in _FIELDS:
            raise ContainerConfigError(f"fieldRef {path} is not supported by the stand-in kubelet")
        section, field = _FIELDS[path]
        return str((pod.get(section) or {}).get(field, ""))
    raise ContainerConfigError(f"valueFrom {sorted(source)} is not supported by the stand-in kubelet")


def _read(lookup: Lookup, kind: str, name: str, *, optional: bool) -> Mapping[str, str] | None:
    data = lookup(kind, name)
    if data is None and not optional:
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
    return data
