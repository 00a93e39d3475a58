"""Domain randomisation: which rig parameters may vary, over which ranges, and drawing them.

A *randomisation* maps parameter names of `gym_raas.params.PendulumParams` to ranges. Each
range is one of:

* ``{"scale": (low, high)}``: a factor of the base value (the calibration's, or the reference
  rig's), drawn uniformly in [low, high]. A bare ``(low, high)`` tuple means the same (the usual
  way to write it: ``{"motor_stall_acceleration_rad_per_s2": (0.85, 1.15)}``).
* ``{"range": (low, high)}``: absolute values in the parameter's own unit, drawn uniformly.

``"default"`` stands for `DEFAULT_RANGES`. Values are drawn independently per parameter, from
the environment's random generator, at every reset of an episode (per sub-environment in the
vector env), so the same reset seed draws the same rigs.

Only the continuous physical parameters vary (`RANDOMIZABLE`). Structural ones (control period,
integrator substeps, command range, velocity limit, encoder counts, PWM steps) set the spaces
and the integrator's loop and are refused: pass another calibration for those.

`resolve_randomization` checks a user's mapping once: an unknown or structural name, a range that
is not two finite numbers with low ≤ high, or one that reaches a value the simulator cannot model
(a negative mass-normalised quantity, a deadband of 100 %, a latency of two control periods or
more) raises `ValueError` naming the parameter.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gym_raas.params import CalibrationError, PendulumParams

RANDOMIZABLE: tuple[str, ...] = (
    "natural_frequency_rad_per_s",
    "viscous_damping_per_s",
    "coulomb_friction_rad_per_s2",
    "motor_stall_acceleration_rad_per_s2",
    "motor_back_emf_damping_per_s",
    "motor_deadband_duty",
    "actuation_latency_s",
    "encoder_edge_jitter_s",
)
"""Parameters a randomisation may name (every continuous physical field of `PendulumParams`)."""

_PLAUSIBLE: Mapping[str, tuple[float, float]] = {
    "natural_frequency_rad_per_s": (0.5, 40.0),
    "viscous_damping_per_s": (0.0, 20.0),
    "coulomb_friction_rad_per_s2": (0.0, 20.0),
    "motor_stall_acceleration_rad_per_s2": (0.1, 500.0),
    "motor_back_emf_damping_per_s": (0.0, 20.0),
    "motor_deadband_duty": (0.0, 0.6),
    "encoder_edge_jitter_s": (0.0, 1e-3),
}
"""Values the simulator's integrator models faithfully (the bounds `gym_raas.sysid` fits within);
the latency's bound is two control periods (`PendulumParams`' own rule)."""

DEFAULT_RANGES: Mapping[str, Mapping[str, tuple[float, float]]] = {
    "natural_frequency_rad_per_s": {"scale": (0.92, 1.08)},
    "viscous_damping_per_s": {"scale": (0.5, 2.0)},
    "coulomb_friction_rad_per_s2": {"scale": (0.5, 2.0)},
    "motor_stall_acceleration_rad_per_s2": {"scale": (0.85, 1.15)},
    "motor_back_emf_damping_per_s": {"scale": (0.8, 1.2)},
    "motor_deadband_duty": {"scale": (0.5, 1.5)},
    "actuation_latency_s": {"range": (0.001, 0.006)},
}
"""The spread of real rigs, as used by ``randomize="default"`` and by the local platform's robots.

No fleet of calibrations is stored in this repository yet, so the ranges come from the documented
tolerances of the reference rig's parts rather than from fitted calibrations (replace them by the
spread of the robots' calibrations once there are enough):

* ω₀ ±8 %: ω₀² = m·g·l / J, with pendulum length, mass and the hub's share of the inertia each
  within a few percent between builds (±8 % in ω₀ is ±17 % in the gravity term).
* motor stall acceleration ±15 %: the 12 V supply (±5 %), the winding resistance and the torque
  constant of this class of gear motor (±10 % each, partly cancelling).
* back-EMF damping ±20 %: k_t·k_e / R, the same constants, one more factor.
* viscous damping and Coulomb friction ×0.5–×2: gearbox run-in, grease and temperature; the
  issue that asked for randomisation saw a policy fail at twice the damping.
* deadband ×0.5–×1.5: the static friction of the gearbox, as spread as the friction.
* actuation latency 1–6 ms absolute: what the robot agents measure (1–3 ms, see
  ``benchmarks/latency_bench.py``) plus up to 3 ms more on a busy Pi.
"""

Randomization = Mapping[str, Any] | str | None
"""What ``randomize=`` takes: a mapping of parameter names to ranges, ``"default"``, or None."""


@dataclass(frozen=True)
class ParameterRange:
    """Absolute bounds of one randomised parameter (already resolved from a scale range)."""

    name: str
    low: float
    high: float
    relative: bool
    """Whether the user gave a factor (kept for error messages and documentation)."""


def resolve_randomization(randomize: Randomization, base: PendulumParams) -> tuple[ParameterRange, ...]:
    """Checked absolute ranges of `randomize` around `base`; () for None or an empty mapping.

    Raises `ValueError` (naming the parameter) for anything `sample_parameters` could not draw.
    """
    if randomize is None:
        return ()
    if isinstance(randomize, str):
        if randomize != "default":
            raise ValueError(f"randomize must be a mapping of parameter ranges or 'default', got {randomize!r}")
        randomize = DEFAULT_RANGES
    if not isinstance(randomize, Mapping):
        raise ValueError(
            f"randomize must be a mapping of parameter ranges or 'default', got {type(randomize).__name__}"
        )
    return tuple(_resolve_one(name, spec, base) for name, spec in randomize.items())


def _resolve_one(name: Any, spec: Any, base: PendulumParams) -> ParameterRange:
    if name not in RANDOMIZABLE:
        known = {field for field in base.to_dict()}
        why = "is structural (it shapes the spaces or the integrator)" if name in known else "is not a parameter"
        raise ValueError(f"randomize: {name!r} {why}; randomisable: {', '.join(RANDOMIZABLE)}")
    relative, bounds = _kind_and_bounds(name, spec)
    low, high = bounds
    if relative:
        base_value = float(getattr(base, name))
        low, high = low * base_value, high * base_value
    _check_physical(name, low, high, base)
    return ParameterRange(name, low, high, relative)


def _kind_and_bounds(name: str, spec: Any) -> tuple[bool, tuple[float, float]]:
    if isinstance(spec, Mapping):
        if len(spec) != 1 or next(iter(spec)) not in ("scale", "range"):
            raise ValueError(
                f"randomize: {name} must be (low, high), {{'scale': (low, high)}} or {{'range': (low, high)}}, "
                f"got {spec!r}"
            )
        kind, bounds = next(iter(spec.items()))
        return kind == "scale", _pair(name, bounds)
    return True, _pair(name, spec)


def _pair(name: str, bounds: Any) -> tuple[float, float]:
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"randomize: {name} needs a (low, high) pair, got {bounds!r}")
    if any(isinstance(value, bool) or not isinstance(value, (int, float)) for value in bounds):
        raise ValueError(f"randomize: {name} bounds must be numbers, got {bounds!r}")
    low, high = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"randomize: {name} bounds must be finite, got {bounds!r}")
    if low > high:
        raise ValueError(f"randomize: {name} range is inverted ({low} > {high}); give (low, high)")
    return low, high


def _check_physical(name: str, low: float, high: float, base: PendulumParams) -> None:
    for value in (low, high):
        try:
            base.replace(**{name: value})
        except CalibrationError as error:
            raise ValueError(f"randomize: {name} would reach {value:g}, which is not physical: {error}") from None
    lowest, highest = _PLAUSIBLE.get(name, (0.0, 2.0 * base.control_period_s))
    if low < lowest or high > highest:
        raise ValueError(
            f"randomize: {name} would span [{low:g}, {high:g}], outside what the simulator models "
            f"[{lowest:g}, {highest:g}]; narrow the range"
        )


def sample_parameters(
    ranges: tuple[ParameterRange, ...], rng: np.random.Generator, size: int
) -> dict[str, NDArray[np.float64]]:
    """One uniform draw of every ranged parameter for `size` rigs, in the order of `ranges`."""
    return {item.name: rng.uniform(item.low, item.high, size) for item in ranges}


def rig_around(base: PendulumParams, name: str, randomize: Randomization = "default") -> PendulumParams:
    """A rig of its own for robot `name`: `base` with `randomize`'s parameters drawn from a
    generator seeded by a hash of the name (the same name always gives the same rig)."""
    ranges = resolve_randomization(randomize, base)
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    values = sample_parameters(ranges, rng, 1)
    return base.replace(**{key: float(value[0]) for key, value in values.items()})


def params_digest(params: PendulumParams) -> str:
    """A short stable hash of every field of `params` (for cache keys)."""
    text = ",".join(f"{key}={value!r}" for key, value in sorted(params.to_dict().items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
