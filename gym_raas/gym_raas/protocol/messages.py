"""Messages of the session protocol and their schemas."""

from __future__ import annotations

import json
import math
from typing import Any

PROTOCOL_VERSION = 1


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
CLIENT_TYPES = frozenset({"hello", "reset", "step", "close"})
MAX_TOKEN_LENGTH = 256


def encode_message(kind: str, **fields: Any) -> bytes:
    """JSON bytes of a message of type `kind` (checked against its schema)."""
    message = {"type": kind, "v": PROTOCOL_VERSION, **fields}
    _check(message)
    return json.dumps(message, separators=(",", ":"), allow_nan=True).encode()


def decode_message(payload: bytes, *, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    """Parse and schema-check one message; raises `ProtocolError` saying what is wrong."""
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ProtocolError("malformed", f"frame is not UTF-8 JSON: {error}") from None
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
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            "version", f"protocol version {version!r} not supported; this side speaks {PROTOCOL_VERSION}"
        )
    schema = SCHEMAS[kind]
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
    token = message.get("token")
    if isinstance(token, str) and len(token) > MAX_TOKEN_LENGTH:
        raise ProtocolError("schema", "hello: token too long")


def is_finite_number(value: Any) -> bool:
    """True for an int or a finite float (the step action must be one to reach the motor)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
