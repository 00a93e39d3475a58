"""Fitting the rig model to recorded trajectories: the public entry points and the fit report.

See the package docstring (`gym_raas.sysid`) for the method. The two stages run here; one stage
is `gym_raas.sysid.shooting.solve`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gym_raas.params import PendulumParams, save_calibration
from gym_raas.sysid.fields import DEFAULT_FIT_FIELDS, FITTABLE, checked_fields, value_of, with_values
from gym_raas.sysid.model import short_segments, whole_recordings
from gym_raas.sysid.recording import RecordedTrajectory
from gym_raas.sysid.shooting import Stage, longest_runs, solve, start_guess

log = logging.getLogger(__name__)

SEGMENT_DURATION_S = 1.5
"""Length of the pieces of the first (multiple-shooting) stage: about one swing period."""


@dataclass(frozen=True)
class TrajectoryFit:
    """How well the fitted model reproduces one recording."""

    label: str
    samples: int
    rmse_rad: float
    max_error_rad: float
    initial_theta_dot_rad_per_s: float
    """Fitted speed at the first sample (the recording did not know it)."""
    initial_theta_offset_rad: float
    """Fitted true start angle minus the measured one (quantisation); with the speed, what
    `gym_raas.sysid.predict` needs to replay the fit."""
    pieces: int = 1
    """Runs the recording was fitted in: 1 normally; more when the model could not follow it
    from one start state (each run then has its own start state)."""
    excluded_samples: int = 0
    """Samples left out of the final fit because the model could not follow them at all (an
    event the model does not know, or a gap that makes the unwrapped angle ambiguous)."""


@dataclass(frozen=True)
class FitResult:
    """Fitted parameters and the quality of the fit."""

    params: PendulumParams
    per_trajectory: tuple[TrajectoryFit, ...]
    rmse_rad: float
    """Root-mean-square angle error over all samples of all recordings."""
    iterations: int
    """Model evaluations (each one simulates every recording and the Jacobian's variants)."""
    converged: bool
    fitted_fields: tuple[str, ...]

    def to_report(self) -> dict[str, Any]:
        """JSON-able summary, stored as the ``fit`` section of a calibration file."""
        values = {name: value_of(self.params, name) for name in self.fitted_fields}
        return {
            "method": "gym_raas.sysid.fit_params: multiple then single shooting, scipy least_squares (soft_l1)",
            "fitted": values,
            "rmse_rad": self.rmse_rad,
            "iterations": self.iterations,
            "converged": self.converged,
            "trajectories": [
                {
                    "label": fit.label,
                    "samples": fit.samples,
                    "rmse_rad": fit.rmse_rad,
                    "max_error_rad": fit.max_error_rad,
                    "initial_theta_dot_rad_per_s": fit.initial_theta_dot_rad_per_s,
                    "initial_theta_offset_rad": fit.initial_theta_offset_rad,
                    "pieces": fit.pieces,
                    "excluded_samples": fit.excluded_samples,
                }
                for fit in self.per_trajectory
            ],
        }


def fit_params(
    trajectories: Sequence[RecordedTrajectory],
    initial: PendulumParams | None = None,
    fit: Sequence[str] = DEFAULT_FIT_FIELDS,
) -> FitResult:
    """Fit the parameters named in `fit` to `trajectories`; all others keep `initial`'s values.

    `initial` (default: the reference rig) is the starting point and supplies the structural
    parameters (encoder, PWM, command range, control period, latency). Every recording also gets
    its own unknown initial speed and start angle (within 0.5 rad of the first measured angle).
    ``linear_damping_per_s`` fits viscous + back-EMF damping as one sum, split in `initial`'s
    proportion. Raises `ValueError` for no recordings or an unknown or unidentifiable field set.
    """
    recordings = list(trajectories)
    if not recordings:
        raise ValueError("fit_params needs at least one recorded trajectory")
    fields = checked_fields(fit)
    initial = initial or PendulumParams()
    values = {name: float(np.clip(value_of(initial, name), FITTABLE[name].lower, FITTABLE[name].upper))
              for name in fields}  # fmt: skip
    evaluations = 0
    resolution = initial.encoder_resolution_rad
    segments = whole_recordings(recordings)
    offsets, speeds = np.array([start_guess(recording, 0, resolution) for recording in recordings]).T
    if fields:
        # Short pieces first: their errors cannot pile up over many swings, so a start far from
        # the truth (say ω₀ off by 20 %) does not lock onto a wrong number of periods.
        pieces = short_segments(recordings, SEGMENT_DURATION_S)
        guesses = np.array([start_guess(recordings[piece.trajectory], piece.first, resolution) for piece in pieces])
        first = solve(recordings, pieces, initial, fields, values, guesses[:, 0], guesses[:, 1])
        values, evaluations = first.values, first.evaluations
        segments, offsets, speeds = longest_runs(recordings, initial, first)
    final = solve(recordings, segments, initial, fields, values, offsets, speeds)
    evaluations += final.evaluations
    per_trajectory = tuple(
        _quality(final, index, recording.label or f"trajectory-{index}", len(recording))
        for index, recording in enumerate(recordings)
    )
    rmse = float(
        np.sqrt(np.mean(np.square(np.concatenate([final.errors_of(index) for index in range(len(recordings))]))))
    )
    split = [fit.label for fit in per_trajectory if fit.pieces > 1 or fit.excluded_samples]
    if split:
        log.warning("sysid: could not follow all of %s in one piece (chaotic or unmodelled motion)", ", ".join(split))
    log.info("sysid: fitted %s; rmse %.4f rad after %d evaluations", ", ".join(fields) or "nothing", rmse, evaluations)
    return FitResult(with_values(initial, final.values), per_trajectory, rmse, evaluations, final.success, fields)


def write_calibration(result: FitResult, path: str | Path, robot: str | None = None) -> Path:
    """Write the fitted parameters and the fit report as a calibration file; returns its path."""
    return save_calibration(path, result.params, robot=robot, fit_report=result.to_report())


def _quality(stage: Stage, index: int, label: str, total_samples: int) -> TrajectoryFit:
    error = stage.errors_of(index)
    first = stage.columns_of(index)[0]
    return TrajectoryFit(
        label=label,
        samples=len(error),
        rmse_rad=float(np.sqrt(np.mean(np.square(error)))),
        max_error_rad=float(np.max(np.abs(error))),
        initial_theta_dot_rad_per_s=float(stage.speeds[first]),
        initial_theta_offset_rad=float(stage.offsets[first]),
        pieces=len(stage.columns_of(index)),
        excluded_samples=total_samples - len(error),
    )
