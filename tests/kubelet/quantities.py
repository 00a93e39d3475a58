"""Kubernetes resource quantities (``512Mi``, ``1G``, ``250m``, ``1.5``) as numbers.

`to_bytes` reads a memory or storage quantity, `to_cpus` a CPU quantity; both raise
`ValueError` on anything that is not a Kubernetes quantity.
"""

from __future__ import annotations

import re
from decimal import Decimal

_SUFFIXES: dict[str, int | Decimal] = {
    "": 1,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(
    r"([+]?[0-9]+(?:\.[0-9]*)?|[+]?\.[0-9]+)(?:[eE]([+-]?[0-9]+))?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?"
)


def _value(quantity: str | int | float) -> Decimal:
    if isinstance(quantity, int | float):
        return Decimal(str(quantity))
    match = _QUANTITY.fullmatch(quantity.strip())
    if match is None:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity")
    number, exponent, suffix = match.groups()
    value = Decimal(number) * Decimal(_SUFFIXES[suffix or ""])
    return value * (Decimal(10) ** int(exponent)) if exponent else value


def to_bytes(quantity: str | int | float) -> int:
    """A memory or storage quantity in bytes, rounded up (``512Mi`` → 536870912)."""
    value = _value(quantity)
    return int(value) + (1 if value != int(value) else 0)


def to_cpus(quantity: str | int | float) -> float:
    """A CPU quantity in cores (``250m`` → 0.25, ``2`` → 2.0)."""
    return float(_value(quantity))
