"""Fitting the rig model to recorded trajectories (robust nonlinear least squares)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from gym_raas.params import PendulumParams, save_calibration
from gym_raas.sysid.model import PreparedTrajectory, RecordedTrajectory, prepare, simulate

log = logging.getLogger(__name__)

LINEAR_DAMPING = "linear_damping_per_s"
"""Viscous and back-EMF damping act alike (both ∝ θ̇): only their sum is identifiable."""
DEFAULT_FIT_FIELDS: tuple[str, ...] = (
    "natural_frequency_rad_per_s",
    LINEAR_DAMPING,
    "coulomb_friction_rad_per_s2",
    "motor_stall_acceleration_rad_per_s2",
    "motor_deadband_duty",
)
_BOUNDS: dict[str, tuple[float, float]] = {
    "natural_frequency_rad_per_s": (0.3, 40.0),
    LINEAR_DAMPING: (0.0, 30.0),
    "coulomb_friction_rad_per_s2": (0.0, 30.0),
    "motor_stall_acceleration_rad_per_s2": (0.1, 400.0),
    "motor_deadband_duty": (0.0, 0.6),
}
_SPEED_BOUND_RAD_PER_S = 40.0


@dataclass(frozen=True)
class TrajectoryFit:
    """How well the fitted model reproduces one trajectory."""

    label: str
    samples: int
    rmse_rad: float
    max_error_rad: float


@dataclass(frozen=True)
class FitResult:
    """Fitted parameters and the quality of the fit."""

    params: PendulumParams
    per_trajectory: tuple[TrajectoryFit, ...]
    rmse_rad: float
    iterations: int
    converged: bool
    fitted_fields: tuple[str, ...]

    def to_report(self) -> dict[str, Any]:
        """JSON-able summary, stored as the ``fit`` section of a calibration file."""
        return {
            "method": "gym_raas.sysid.fit_params (scipy least_squares, soft_l1)",
            "fitted": list(self.fitted_fields),
            "rmse_rad": self.rmse_rad,
            "iterations": self.iterations,
            "converged": self.converged,
            "trajectories": [
                {
                    "label": fit.label,
                    "samples": fit.samples,
                    "rmse_rad": fit.rmse_rad,
                    "max_error_rad": fit.max_error_rad,
                }
                for fit in self.per_trajectory
            ],
        }


def fit_params(
    trajectories: Sequence[RecordedTrajectory],
    initial: PendulumParams | None = None,
    fit: Sequence[str] = DEFAULT_FIT_FIELDS,
) -> FitResult:
    """Fit the rig parameters named in `fit` to `trajectories`; the others keep `initial`'s values.

    Each trajectory also gets its own unknown initial speed and a small initial-angle offset
    (within two encoder counts). The linear damping is fitted as one sum; the fitted value is
    split between viscous and back-EMF damping in `initial`'s proportion.
    """
    if not trajectories:
        raise ValueError("fit_params needs at least one trajectory")
    unknown = sorted(set(fit) - set(_BOUNDS))
    if unknown:
        raise ValueError(f"cannot fit {', '.join(unknown)}; fittable: {', '.join(_BOUNDS)}")
    initial = initial or PendulumParams()
    fields = tuple(fit)
    prepared = [prepare(trajectory) for trajectory in trajectories]
    offset_bound = 2 * initial.encoder_resolution_rad
    start, low, high = _initial_vector(initial, fields, trajectories, offset_bound)

    def residuals(vector: np.ndarray) -> np.ndarray:
        params = _params_from(vector, initial, fields)
        return np.concatenate(
            [_trajectory_error(trajectory, plan, params, vector, index, len(fields)) for index, (trajectory, plan)
             in enumerate(zip(trajectories, prepared, strict=True))]
        )  # fmt: skip

    solution = least_squares(
        residuals, start, bounds=(low, high), loss="soft_l1", f_scale=2 * initial.encoder_resolution_rad,
        x_scale="jac", max_nfev=200 * len(start),
    )  # fmt: skip
    params = _params_from(solution.x, initial, fields)
    per_trajectory = tuple(
        _quality(trajectory, plan, params, solution.x, index, len(fields))
        for index, (trajectory, plan) in enumerate(zip(trajectories, prepared, strict=True))
    )
    samples = sum(fit.samples for fit in per_trajectory)
    rmse = float(np.sqrt(sum(fit.rmse_rad**2 * fit.samples for fit in per_trajectory) / samples))
    log.info("sysid: rmse %.4f rad after %d evaluations (%s)", rmse, solution.nfev, solution.message)
    return FitResult(params, per_trajectory, rmse, int(solution.nfev), bool(solution.success), fields)


def write_calibration(result: FitResult, path: str | Path, robot: str | None = None) -> Path:
    """Write the fitted parameters and the fit report as a calibration file."""
    return save_calibration(path, result.params, robot=robot, fit_report=result.to_report())


def _initial_vector(
    initial: PendulumParams, fields: tuple[str, ...], trajectories: Sequence[RecordedTrajectory], offset_bound: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start, low, high = [], [], []
    for name in fields:
        value = _get(initial, name)
        lower, upper = _BOUNDS[name]
        start.append(min(max(value, lower + 1e-9), upper - 1e-9))
        low.append(lower)
        high.append(upper)
    for trajectory in trajectories:
        first_speed = float(
            (trajectory.theta_rad[1] - trajectory.theta_rad[0]) / (trajectory.time_s[1] - trajectory.time_s[0])
        )
        start += [float(np.clip(first_speed, -_SPEED_BOUND_RAD_PER_S + 1, _SPEED_BOUND_RAD_PER_S - 1)), 0.0]
        low += [-_SPEED_BOUND_RAD_PER_S, -offset_bound]
        high += [_SPEED_BOUND_RAD_PER_S, offset_bound]
    return np.array(start), np.array(low), np.array(high)


def _get(params: PendulumParams, name: str) -> float:
    if name == LINEAR_DAMPING:
        return params.viscous_damping_per_s + params.motor_back_emf_damping_per_s
    return float(getattr(params, name))


def _params_from(vector: np.ndarray, initial: PendulumParams, fields: tuple[str, ...]) -> PendulumParams:
    changes: dict[str, float] = {}
    for name, value in zip(fields, vector[: len(fields)], strict=True):
        if name == LINEAR_DAMPING:
            total = initial.viscous_damping_per_s + initial.motor_back_emf_damping_per_s
            viscous_share = initial.viscous_damping_per_s / total if total > 0 else 0.5
            changes["viscous_damping_per_s"] = float(value) * viscous_share
            changes["motor_back_emf_damping_per_s"] = float(value) * (1.0 - viscous_share)
        else:
            changes[name] = float(value)
    return initial.replace(**changes)


def _trajectory_error(
    trajectory: RecordedTrajectory,
    plan: PreparedTrajectory,
    params: PendulumParams,
    vector: np.ndarray,
    index: int,
    field_count: int,
) -> np.ndarray:
    speed, offset = vector[field_count + 2 * index : field_count + 2 * index + 2]
    model = simulate(plan, params, float(trajectory.theta_rad[0] + offset), float(speed))
    return model - trajectory.theta_rad


def _quality(
    trajectory: RecordedTrajectory,
    plan: PreparedTrajectory,
    params: PendulumParams,
    vector: np.ndarray,
    index: int,
    field_count: int,
) -> TrajectoryFit:
    error = _trajectory_error(trajectory, plan, params, vector, index, field_count)
    return TrajectoryFit(
        label=trajectory.label or f"trajectory-{index}",
        samples=len(error),
        rmse_rad=float(np.sqrt(np.mean(np.square(error)))),
        max_error_rad=float(np.max(np.abs(error))),
    )
