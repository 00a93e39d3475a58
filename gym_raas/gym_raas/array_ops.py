"""Two interchangeable math namespaces, so the physics is written once for both env kinds.

The single environment steps one pendulum with Python floats (fast for scalars); the vector
environment steps N pendulums as numpy arrays. Both run the same functions in
`gym_raas.dynamics` and `gym_raas.encoder`, which only use arithmetic operators and the functions
of an `ArrayOps` namespace.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np


class ArrayOps(Protocol):
    """The elementwise functions the physics needs, for floats or numpy arrays."""

    def sin(self, x: Any) -> Any: ...
    def round(self, x: Any) -> Any: ...
    def abs(self, x: Any) -> Any: ...
    def sign(self, x: Any) -> Any: ...
    def minimum(self, a: Any, b: Any) -> Any: ...
    def maximum(self, a: Any, b: Any) -> Any: ...
    def clip(self, x: Any, low: float, high: float) -> Any: ...
    def where(self, condition: Any, if_true: Any, if_false: Any) -> Any: ...
    def shrink(self, x: Any, amount: Any) -> Any:
        """Move x toward zero by `amount`, stopping at zero (friction never reverses motion)."""
        ...


class ScalarOps:
    """`ArrayOps` for Python floats."""

    sin = staticmethod(math.sin)
    abs = staticmethod(abs)
    minimum = staticmethod(min)
    maximum = staticmethod(max)

    @staticmethod
    def round(x: float) -> float:
        return float(round(x))

    @staticmethod
    def sign(x: float) -> float:
        return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0)

    @staticmethod
    def clip(x: float, low: float, high: float) -> float:
        return low if x < low else (high if x > high else x)

    @staticmethod
    def where(condition: bool, if_true: float, if_false: float) -> float:
        return if_true if condition else if_false

    @staticmethod
    def shrink(x: float, amount: float) -> float:
        if x > amount:
            return x - amount
        if x < -amount:
            return x + amount
        return 0.0


class NumpyOps:
    """`ArrayOps` for numpy arrays (elementwise over a batch of pendulums)."""

    sin = staticmethod(np.sin)
    round = staticmethod(np.round)
    abs = staticmethod(np.abs)
    sign = staticmethod(np.sign)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    clip = staticmethod(np.clip)
    where = staticmethod(np.where)

    @staticmethod
    def shrink(x: Any, amount: Any) -> Any:
        return np.sign(x) * np.maximum(np.abs(x) - amount, 0.0)


SCALAR_OPS: ArrayOps = ScalarOps()
NUMPY_OPS: ArrayOps = NumpyOps()
