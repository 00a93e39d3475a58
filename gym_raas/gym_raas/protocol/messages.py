"""Messages of the session protocol and their schemas.

Numbers are bounded before they reach either side's code: an integer literal of more than
`MAX_INTEGER_DIGITS` digits is refused while parsing (Python would otherwise spend time on it or
raise a bare ValueError past 4300 digits), and a step's action must lie within
`MAX_ABS_ACTION`. NaN and ±Infinity stay valid actions on the wire: the agent's safety layer
refuses them (motor off for that boundary) and counts a ``nan`` safety event, and the session goes
on. Strings are bounded per field (`MAX_TEXT_LENGTH`, `MAX_TOKEN_LENGTH`); nesting too deep for the
parser is a malformed frame. Every violation is a `ProtocolError`, never another exception.

Versions: 2 (this one) adds the rate a client asks for (``hello.control_hz``), the rates and the
rate of the session (``welcome.control_hz``, ``welcome.supported_control_hz``) and the actuation
latency of each step (``observation.actuation_latency``). Version 1 peers keep working: a
message is checked against the schema of its own version, and `encode_message` with
``version=1`` leaves the newer fields out, so an old client reads exactly what it knows.
"""

from __future__ import annotations

import json
import math
from typing import Any

PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
"""Versions a peer of this version understands (and answers in kind)."""


class ProtocolError(ValueError):
    """A message that breaks the protocol; `code` is machine-readable, str() is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# type → {field: (python types, required)}; "v" and "type" are implicit.
_NUMBER = (int, float)
SCHEMAS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    # client → agent
    "hello": {"token": ((str,), True), "client": ((str,), False)},
    "reset": {},
    "step": {"action": (_NUMBER, True)},
    "close": {},
    # agent → client
    "welcome": {"session": ((str,), True), "robot": ((str,), True), "params": ((dict,), True), "dt": (_NUMBER, True)},
    "observation": {
        "theta": (_NUMBER, True),
        "theta_dot": (_NUMBER, True),
        "step": ((int,), True),
        "boundary_time": (_NUMBER, True),
        "late_by": (_NUMBER, True),
        "deadline_misses": ((int,), True),
        "applied": (_NUMBER, True),
        "safety": ((list,), True),
    },
    "error": {"code": ((str,), True), "message": ((str,), True)},
    "bye": {"reason": ((str,), True)},
}
NEWER_FIELDS: dict[int, dict[str, dict[str, tuple[tuple[type, ...], bool]]]] = {
    2: {
        "hello": {"control_hz": (_NUMBER, False)},
        "welcome": {"control_hz": (_NUMBER, False), "supported_control_hz": ((list,), False)},
        "observation": {"actuation_latency": (_NUMBER, False)},
    }
}
"""Optional fields by the version that introduced them (version 1 is `SCHEMAS` as it stands)."""


def schema_of(kind: str, version: int) -> dict[str, tuple[tuple[type, ...], bool]]:
    """The fields a message of type `kind` may carry in protocol `version`."""
    schema = dict(SCHEMAS[kind])
    for introduced, additions in NEWER_FIELDS.items():
        if introduced <= version:
            schema.update(additions.get(kind, {}))
    return schema


CLIENT_TYPES = frozenset({"hello", "reset", "step", "close"})
MAX_TOKEN_LENGTH = 256
MAX_TEXT_LENGTH = 4096
"""Longest string any other field may hold (a client name, an error message, a reason)."""
MAX_INTEGER_DIGITS = 20
"""Longest integer literal accepted anywhere in a message (2⁶⁴ has 20 digits)."""
MAX_CONTROL_HZ = 1000.0
"""The largest control rate a hello may ask for."""
MAX_ABS_ACTION = 1e6
"""Largest finite |action| accepted: far beyond any motor's command range (the safety layer
clamps to the robot's envelope), small enough that every later computation stays finite."""


def encode_message(kind: str, *, version: int = PROTOCOL_VERSION, **fields: Any) -> bytes:
    """JSON bytes of a message of type `kind` in protocol `version` (checked against its schema);
    fields newer than `version` are left out, so a peer of that version reads what it knows."""
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"protocol version {version} is not one of {SUPPORTED_VERSIONS}")
    if kind in SCHEMAS:
        known = schema_of(kind, version)
        newer = {name for additions in NEWER_FIELDS.values() for name in additions.get(kind, {})}
        fields = {name: value for name, value in fields.items() if name in known or name not in newer}
    message = {"type": kind, "v": version, **fields}
    _check(message)
    return json.dumps(message, separators=(",", ":"), allow_nan=True).encode()


def decode_message(payload: bytes, *, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    """Parse and schema-check one message; raises `ProtocolError` saying what is wrong."""
    try:
        message = json.loads(payload.decode("utf-8"), parse_int=_bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProtocolError("malformed", f"frame is not UTF-8 JSON: {error}") from None
    except RecursionError:
        raise ProtocolError("malformed", "frame is not UTF-8 JSON: it is nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError("malformed", "a message must be a JSON object")
    _check(message)
    if allowed is not None and message["type"] not in allowed:
        raise ProtocolError("unexpected", f"message type {message['type']!r} is not allowed here")
    return message


def _check(message: dict[str, Any]) -> None:
    kind = message.get("type")
    if kind not in SCHEMAS:
        raise ProtocolError("unknown-type", f"unknown message type {kind!r}; known: {', '.join(SCHEMAS)}")
    version = message.get("v")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            "version",
            f"protocol version {version!r} not supported; this side speaks {', '.join(map(str, SUPPORTED_VERSIONS))}",
        )
    schema = schema_of(kind, version)
    extra = sorted(set(message) - set(schema) - {"type", "v"})
    if extra:
        raise ProtocolError("schema", f"{kind}: unexpected field(s) {', '.join(extra)}")
    for name, (types, required) in schema.items():
        if name not in message:
            if required:
                raise ProtocolError("schema", f"{kind}: missing field {name!r}")
            continue
        value = message[name]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(kind_.__name__ for kind_ in types)
            raise ProtocolError("schema", f"{kind}: field {name!r} must be {expected}, got {type(value).__name__}")
        if isinstance(value, str):
            limit = MAX_TOKEN_LENGTH if name == "token" else MAX_TEXT_LENGTH
            if len(value) > limit:
                raise ProtocolError("schema", f"{kind}: field {name!r} is longer than {limit} characters")
    if kind == "step":
        _check_action(message["action"])
    if kind == "hello" and "control_hz" in message:
        _check_rate(message["control_hz"])


def _check_rate(control_hz: int | float) -> None:
    """A control rate a robot could run at: finite, above 0, at most `MAX_CONTROL_HZ` (which rates
    a robot offers is the agent's answer: ``unsupported-rate``)."""
    if not (is_finite_number(control_hz) and 0 < control_hz <= MAX_CONTROL_HZ):
        shown = f"{control_hz:g}" if isinstance(control_hz, float) or abs(control_hz) < 10**9 else "(a huge number)"
        raise ProtocolError(
            "range", f"hello: control_hz {shown} is not a rate in (0, {MAX_CONTROL_HZ:g}] Hz; ask for one such as 20"
        )


def _check_action(action: int | float) -> None:
    """A finite action within `MAX_ABS_ACTION`, or NaN/±inf (left to the safety layer's refusal)."""
    finite_float = isinstance(action, float) and math.isfinite(action)
    if (isinstance(action, int) or finite_float) and abs(action) > MAX_ABS_ACTION:
        if isinstance(action, float):
            shown = f"{action:g}"
        else:  # str() of an int past 4300 digits raises: never echo a huge one
            shown = str(action) if abs(action) < 10**MAX_INTEGER_DIGITS else "(a huge integer)"
        raise ProtocolError(
            "range", f"step: action {shown} is outside ±{MAX_ABS_ACTION:g}; send a command within the action space"
        )


def _bounded_int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise ProtocolError("range", f"an integer of {digits} digits is out of range (at most {MAX_INTEGER_DIGITS})")
    return int(literal)


def is_finite_number(value: Any) -> bool:
    """True for an int or a finite float (the step action must be one to reach the motor)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
