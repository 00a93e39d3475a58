"""Which parameters `fit_params` can fit, their scales and bounds, and the damping sum."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gym_raas.params import PendulumParams

LINEAR_DAMPING = "linear_damping_per_s"
"""Pseudo-field: viscous + back-EMF damping. Both act ∝ θ̇, so angle data identify only the sum."""


@dataclass(frozen=True)
class Fittable:
    """Scale and bounds of one fittable parameter, in its own units."""

    scale: float
    """A typical size; the solver works in value / scale, so every unknown is of order one."""
    lower: float
    upper: float


FITTABLE: Mapping[str, Fittable] = {
    "natural_frequency_rad_per_s": Fittable(5.0, 0.5, 40.0),
    LINEAR_DAMPING: Fittable(1.0, 0.0, 20.0),
    "viscous_damping_per_s": Fittable(1.0, 0.0, 20.0),
    "motor_back_emf_damping_per_s": Fittable(1.0, 0.0, 20.0),
    "coulomb_friction_rad_per_s2": Fittable(0.5, 0.0, 20.0),
    "motor_stall_acceleration_rad_per_s2": Fittable(15.0, 0.1, 500.0),
    "motor_deadband_duty": Fittable(0.05, 0.0, 0.6),
}
"""Parameters `fit_params` can fit, with their scale and bounds (in their own units)."""

DEFAULT_FIT_FIELDS: tuple[str, ...] = (
    "natural_frequency_rad_per_s",
    LINEAR_DAMPING,
    "coulomb_friction_rad_per_s2",
    "motor_stall_acceleration_rad_per_s2",
    "motor_deadband_duty",
)


def checked_fields(fit: Sequence[str]) -> tuple[str, ...]:
    """The fields to fit, without repeats; `ValueError` for unknown or unidentifiable ones."""
    if isinstance(fit, str):
        fit = [fit]
    fields = tuple(dict.fromkeys(fit))
    unknown = [name for name in fields if name not in FITTABLE]
    if unknown:
        raise ValueError(f"cannot fit {', '.join(unknown)}; fittable: {', '.join(FITTABLE)}")
    damping = {LINEAR_DAMPING, "viscous_damping_per_s", "motor_back_emf_damping_per_s"} & set(fields)
    if len(damping) > 1:
        raise ValueError(
            f"cannot fit {' and '.join(sorted(damping))} together: angle data only identify their sum; "
            f"fit {LINEAR_DAMPING} or one of them"
        )
    return fields


def value_of(params: PendulumParams, name: str) -> float:
    """A parameter's value, or the linear-damping sum."""
    if name == LINEAR_DAMPING:
        return params.viscous_damping_per_s + params.motor_back_emf_damping_per_s
    return float(getattr(params, name))


def with_values(initial: PendulumParams, values: Mapping[str, float]) -> PendulumParams:
    """`initial` with fitted values; a damping sum is split in `initial`'s proportion."""
    changes = dict(values)
    if LINEAR_DAMPING in changes:
        total = changes.pop(LINEAR_DAMPING)
        old_total = initial.viscous_damping_per_s + initial.motor_back_emf_damping_per_s
        viscous_share = initial.viscous_damping_per_s / old_total if old_total > 0 else 0.5
        changes["viscous_damping_per_s"] = total * viscous_share
        changes["motor_back_emf_damping_per_s"] = total * (1.0 - viscous_share)
    return initial.replace(**changes)
