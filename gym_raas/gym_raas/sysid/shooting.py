"""One least-squares stage of the fit, and the choice of runs between the two stages.

A stage fits the parameters together with every segment's start angle and speed, from one
batched simulation per evaluation (`ShootingProblem`). Between the stages, `longest_runs` joins
the first stage's short pieces into the longest runs the model can follow from one start state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from gym_raas.params import PendulumParams
from gym_raas.sysid.fields import FITTABLE, with_values
from gym_raas.sysid.model import FloatArray, ModelVariants, Schedule, Segment, build_schedule, simulate
from gym_raas.sysid.recording import RecordedTrajectory

log = logging.getLogger(__name__)

OFFSET_BOUND_RAD = 0.5
"""How far a segment's true start angle may lie from the measured one: a few counts of
quantisation normally, but the first read of a recording can be a glitch like any other."""
SPEED_BOUND_RAD_PER_S = 40.0
FOLLOW_COUNTS = 3.0
FOLLOW_QUANTILE = 0.9
"""The model *follows* a stretch of a recording when this share of its samples lie within
``FOLLOW_COUNTS`` encoder counts (so a glitched read does not count against it). A recording the
first-stage estimate cannot follow from one start state is fitted in shorter runs, and a piece it
cannot follow at all is left out: chaotic motion near upright, a bump, or an unwrap ambiguity
would otherwise trap the final stage in a wrong minimum."""
ROBUST_SCALE_COUNTS = 2.0
"""Residuals beyond about this many encoder counts lose weight (soft-L1 loss): glitches."""
_SPEED_SCALE_RAD_PER_S = 1.0
_DIFFERENCE_STEP = 1e-4
_MAX_EVALUATIONS = 200


def start_guess(
    recording: RecordedTrajectory, index: int, resolution_rad: float, window_s: float = 0.15
) -> tuple[float, float]:
    """Start-angle offset and speed at a sample, from a parabola through its neighbours.

    Robust to quantisation (it averages over several samples) and to a glitched read (the
    worst sample is dropped while it lies far off the parabola).
    """
    elapsed = recording.time_s - recording.time_s[index]
    nearest = np.argsort(np.abs(elapsed), kind="stable")
    chosen = nearest[: max(4, int(np.count_nonzero(np.abs(elapsed) <= window_s)))]
    coefficients = np.polyfit(elapsed[chosen], recording.theta_rad[chosen], 2)
    for _ in range(2):
        misses = np.abs(np.polyval(coefficients, elapsed[chosen]) - recording.theta_rad[chosen])
        if len(chosen) <= 4 or misses.max() < max(4.0 * resolution_rad, 4.0 * float(np.median(misses))):
            break
        chosen = np.delete(chosen, np.argmax(misses))
        coefficients = np.polyfit(elapsed[chosen], recording.theta_rad[chosen], 2)
    offset = float(np.clip(coefficients[2] - recording.theta_rad[index], -OFFSET_BOUND_RAD, OFFSET_BOUND_RAD))
    limit = SPEED_BOUND_RAD_PER_S - 1.0
    return offset, float(np.clip(coefficients[1], -limit, limit))


def longest_runs(
    recordings: Sequence[RecordedTrajectory], initial: PendulumParams, stage: Stage
) -> tuple[list[Segment], FloatArray, FloatArray]:
    """Join the first stage's pieces into the longest runs its estimate can simulate in one go.

    A piece the first stage could not follow (see ``FOLLOW_COUNTS``) even from its own start is
    left out, unless nothing of its recording could be followed. The others start as runs of
    consecutive pieces; a run is halved while the model, simulated from the state fitted at its
    first piece, does not follow every one of its pieces.
    Returns the runs (in recording order) and their start angle offsets and speeds.
    """
    pieces = stage.schedule.segments
    params = ModelVariants.stack([with_values(initial, stage.values)])
    threshold = FOLLOW_COUNTS * initial.encoder_resolution_rad

    def follows(error: FloatArray) -> bool:
        return bool(np.quantile(np.abs(error), FOLLOW_QUANTILE) <= threshold)

    pending = []
    for index in range(len(recordings)):
        columns = stage.columns_of(index)
        alone = [follows(stage.residual[stage.schedule.rows_of(column)]) for column in columns]
        if not any(alone):  # nothing to lean on: keep every piece, each from its own start
            pending += [[column] for column in columns]
            continue
        run: list[int] = []
        for column, ok in zip(columns, alone, strict=True):
            if ok:
                run.append(column)
            elif run:
                pending.append(run)
                run = []
        pending += [run] if run else []
    accepted: list[list[int]] = []
    while pending:
        runs = [Segment(pieces[run[0]].trajectory, pieces[run[0]].first, pieces[run[-1]].last) for run in pending]
        schedule = build_schedule(recordings, runs, initial)
        starts = [run[0] for run in pending]
        theta0 = schedule.start_theta_rad + stage.offsets[starts]
        model = simulate(schedule, params, theta0[None, :], stage.speeds[starts][None, :])[0]
        error = model - schedule.measured_rad
        halves: list[list[int]] = []
        for column, run in enumerate(pending):
            rows = schedule.rows_of(column)
            start = runs[column].first
            whole = all(
                follows(error[rows[pieces[piece].first - start : pieces[piece].last - start + 1]]) for piece in run
            )
            if len(run) == 1 or whole:
                accepted.append(run)
            else:
                halves += [run[: len(run) // 2], run[len(run) // 2 :]]
        pending = halves
    accepted.sort(key=lambda run: (pieces[run[0]].trajectory, pieces[run[0]].first))
    segments = [Segment(pieces[run[0]].trajectory, pieces[run[0]].first, pieces[run[-1]].last) for run in accepted]
    starts = [run[0] for run in accepted]
    return segments, stage.offsets[starts], stage.speeds[starts]


@dataclass(frozen=True)
class Stage:
    """The outcome of one stage: fitted values, per-segment start states, unweighted residuals."""

    schedule: Schedule
    values: dict[str, float]
    offsets: FloatArray
    speeds: FloatArray
    residual: FloatArray
    evaluations: int
    success: bool

    def columns_of(self, recording: int) -> list[int]:
        """The segments of a recording, in time order."""
        return [column for column, segment in enumerate(self.schedule.segments) if segment.trajectory == recording]

    def errors_of(self, recording: int) -> FloatArray:
        """Model minus measured angle at each fitted sample of a recording (shared ones once)."""
        samples, errors = [], []
        for column in self.columns_of(recording):
            segment = self.schedule.segments[column]
            samples.append(np.arange(segment.first, segment.last + 1))
            errors.append(self.residual[self.schedule.rows_of(column)])
        _, first_seen = np.unique(np.concatenate(samples), return_index=True)
        return np.concatenate(errors)[first_seen]


def solve(
    recordings: Sequence[RecordedTrajectory],
    segments: Sequence[Segment],
    initial: PendulumParams,
    fields: tuple[str, ...],
    values: Mapping[str, float],
    offsets: FloatArray,
    speeds: FloatArray,
) -> Stage:
    """Fit `fields` and every segment's start state, starting from the given values."""
    problem = ShootingProblem(build_schedule(recordings, segments, initial), initial, fields)
    start = problem.pack(values, offsets, speeds)
    solution = least_squares(
        problem.residuals,
        start,
        jac=problem.jacobian,
        bounds=(problem.lower, problem.upper),
        loss="soft_l1",
        f_scale=ROBUST_SCALE_COUNTS * initial.encoder_resolution_rad,
        max_nfev=_MAX_EVALUATIONS,
    )
    fitted, fitted_offsets, fitted_speeds = problem.unpack(solution.x)
    log.debug("sysid stage (%d segments): %s", len(segments), solution.message)
    return Stage(
        schedule=problem.schedule,
        values=fitted,
        offsets=fitted_offsets,
        speeds=fitted_speeds,
        residual=problem.residuals(solution.x),
        evaluations=int(solution.nfev),
        success=bool(solution.status > 0),
    )


class ShootingProblem:
    """Residuals and finite-difference Jacobian of one stage, all from one batched simulation.

    Unknowns (scaled to order one): the fitted fields, then per segment its start-angle offset
    (in encoder counts) and start speed. One simulation runs the current point and, as further
    batch rows, one variant per fitted field plus one with every segment's offset and one with
    every segment's speed perturbed: segments are independent, so those two rows give all the
    per-segment Jacobian columns at once.
    """

    def __init__(self, schedule: Schedule, initial: PendulumParams, fields: tuple[str, ...]) -> None:
        self.schedule = schedule
        self.initial = initial
        self.fields = fields
        segments = len(schedule.segments)
        offset_bound = OFFSET_BOUND_RAD / initial.encoder_resolution_rad
        speed_bound = SPEED_BOUND_RAD_PER_S / _SPEED_SCALE_RAD_PER_S
        self.scale = np.array(
            [FITTABLE[name].scale for name in fields]
            + [initial.encoder_resolution_rad, _SPEED_SCALE_RAD_PER_S] * segments
        )
        self.lower = np.array([FITTABLE[name].lower for name in fields] + [-offset_bound, -speed_bound] * segments)
        self.upper = np.array([FITTABLE[name].upper for name in fields] + [offset_bound, speed_bound] * segments)
        self.lower[: len(fields)] /= self.scale[: len(fields)]
        self.upper[: len(fields)] /= self.scale[: len(fields)]
        self._cached_at: bytes | None = None
        self._cached: tuple[FloatArray, FloatArray] = (np.zeros(0), np.zeros((0, 0)))

    def pack(self, values: Mapping[str, float], offsets: FloatArray, speeds: FloatArray) -> FloatArray:
        local = np.column_stack([offsets, speeds]).ravel()
        vector = np.concatenate([[values[name] for name in self.fields], local]) / self.scale
        return np.asarray(np.clip(vector, self.lower, self.upper), dtype=np.float64)

    def unpack(self, vector: FloatArray) -> tuple[dict[str, float], FloatArray, FloatArray]:
        physical = vector * self.scale
        count = len(self.fields)
        values = {name: float(value) for name, value in zip(self.fields, physical[:count], strict=True)}
        return values, physical[count::2], physical[count + 1 :: 2]

    def residuals(self, vector: FloatArray) -> FloatArray:
        return self._evaluate(vector)[0]

    def jacobian(self, vector: FloatArray) -> FloatArray:
        return self._evaluate(vector)[1]

    def _evaluate(self, vector: FloatArray) -> tuple[FloatArray, FloatArray]:
        if vector.tobytes() == self._cached_at:
            return self._cached
        count = len(self.fields)
        step = _DIFFERENCE_STEP * np.maximum(1.0, np.abs(vector))
        step = np.where(vector + step > self.upper, -step, step)  # stay inside the bounds
        rows = [vector]
        for index in range(count):
            row = vector.copy()
            row[index] += step[index]
            rows.append(row)
        for first in (count, count + 1):  # every offset, then every speed
            row = vector.copy()
            row[first::2] += step[first::2]
            rows.append(row)
        unpacked = [self.unpack(row) for row in rows]
        variants = ModelVariants.stack([with_values(self.initial, values) for values, _, _ in unpacked])
        theta0 = self.schedule.start_theta_rad + np.array([offsets for _, offsets, _ in unpacked])
        theta_dot0 = np.array([speeds for _, _, speeds in unpacked])
        model = simulate(self.schedule, variants, theta0, theta_dot0)
        residual = model[0] - self.schedule.measured_rad
        jacobian = np.zeros((len(residual), len(vector)))
        jacobian[:, :count] = (model[1 : count + 1] - model[0]).T / step[:count]
        rows_index = np.arange(len(residual))
        offset_column = count + 2 * self.schedule.sample_segment
        jacobian[rows_index, offset_column] = (model[count + 1] - model[0]) / step[offset_column]
        jacobian[rows_index, offset_column + 1] = (model[count + 2] - model[0]) / step[offset_column + 1]
        self._cached_at = vector.tobytes()
        self._cached = (residual, jacobian)
        return self._cached
