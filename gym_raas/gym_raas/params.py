"""The physics parameters of a pendulum rig, and the calibration file that stores them.

The model is written per unit of pendulum inertia, because that is what can be identified from
a trajectory of angles and commands alone (inertia, motor resistance and torque constant are not
separately observable; their ratios are). Every field carries its unit in its name.

Equation of motion, with θ the angle from upright (rad) and d the effective PWM duty in [-1, 1]::

    θ̈ = ω₀² sin θ − (c_visc + c_emf) θ̇ − f_c sign(θ̇) + a_stall d

where ω₀ is ``natural_frequency_rad_per_s``, c_visc ``viscous_damping_per_s``, c_emf
``motor_back_emf_damping_per_s``, f_c ``coulomb_friction_rad_per_s2`` and a_stall
``motor_stall_acceleration_rad_per_s2``. The command u ∈ [-max_command, max_command] becomes the
duty u / max_command, quantised to ``pwm_duty_steps`` and passed through the motor's deadband
(``motor_deadband_duty``) before it reaches the equation, ``actuation_latency_s`` after the
observation it answers (up to two control periods; on a robot a few milliseconds, because the
agent applies a command as soon as it arrives).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CALIBRATION_FORMAT = "raas-calibration/v1"


class CalibrationError(ValueError):
    """A calibration file or parameter set is malformed or physically impossible."""


@dataclass(frozen=True)
class PendulumParams:
    """Physical parameters of one pendulum rig; defaults describe the reference rig.

    Reference rig: a 12 V gear motor with a 480-count encoder on the output shaft, driven by an
    L298N-style H-bridge at 8-bit duty resolution, swinging a pendulum whose small oscillations
    have an angular frequency of 5.3 rad/s and whose free swing decays at about 0.4 /s. Full
    command holds the pendulum about 35° from hanging, so the upright needs a swing-up.
    """

    natural_frequency_rad_per_s: float = 5.3
    """ω₀ = sqrt(m·g·l / J): angular frequency of small oscillations about hanging."""
    viscous_damping_per_s: float = 0.2
    """Viscous friction of pivot and gearbox divided by inertia (b / J)."""
    coulomb_friction_rad_per_s2: float = 0.08
    """Dry (Coulomb) friction torque of pivot and gearbox divided by inertia."""
    motor_stall_acceleration_rad_per_s2: float = 16.1
    """Angular acceleration the motor gives at full duty and zero speed (k_t·V / (R·J))."""
    motor_back_emf_damping_per_s: float = 0.45
    """Damping from the motor's back-EMF through the H-bridge (k_t·k_e / (R·J))."""
    motor_deadband_duty: float = 0.04
    """Duty below which the motor's static friction absorbs all torque (fraction of full)."""
    pwm_duty_steps: int = 255
    """Distinct non-zero duty levels of the PWM driver (pigpio's default range is 255)."""
    actuation_latency_s: float = 0.003
    """Delay from the observation a command answers to the torque change: the typical actuation
    latency the robot agent measures (reading sent, controller computes, command applied on
    arrival: about 1–3 ms, see ``benchmarks/latency_bench.py``) plus the driver's. A robot's
    calibration stores its own measured figure. (Before protocol 2 the agent waited for the
    next boundary: 0.052 s at 20 Hz.)"""
    encoder_counts_per_rev: int = 480
    """Quadrature counts per revolution of the pendulum shaft (all four edges counted)."""
    encoder_edge_jitter_s: float = 5e-6
    """Standard deviation of the timestamp error of one encoder edge (pigpio samples at 5 µs)."""
    control_period_s: float = 0.05
    """Time between two control steps (the env's dt)."""
    physics_substeps: int = 10
    """Integrator steps inside one control period."""
    max_command: float = 2.0
    """Command that gives full duty; the action space is [-max_command, max_command]."""
    velocity_limit_rad_per_s: float = 30.0
    """Largest speed the velocity estimate reports (the observation bound)."""

    def __post_init__(self) -> None:
        problems = list(_physical_problems(self))
        if problems:
            raise CalibrationError("; ".join(problems))

    @property
    def substep_s(self) -> float:
        """Integrator step in seconds."""
        return self.control_period_s / self.physics_substeps

    @property
    def encoder_resolution_rad(self) -> float:
        """Angle of one encoder count."""
        return 2.0 * math.pi / self.encoder_counts_per_rev

    @property
    def latency_substeps(self) -> int:
        """Actuation latency rounded to whole integrator steps."""
        return round(self.actuation_latency_s / self.substep_s)

    @property
    def max_acceleration_rad_per_s2(self) -> float:
        """Largest angular acceleration gravity, motor and friction can produce together."""
        return (
            self.natural_frequency_rad_per_s**2
            + self.motor_stall_acceleration_rad_per_s2
            + self.coulomb_friction_rad_per_s2
            + (self.viscous_damping_per_s + self.motor_back_emf_damping_per_s) * self.velocity_limit_rad_per_s
        )

    @property
    def free_swing_decay_per_s(self) -> float:
        """Decay rate of small free swings from the linear damping terms (σ = c / 2)."""
        return (self.viscous_damping_per_s + self.motor_back_emf_damping_per_s) / 2.0

    def holding_angle_from_hanging_rad(self, duty: float = 1.0) -> float:
        """Equilibrium angle from hanging under a constant duty, ignoring Coulomb friction.

        Returns π/2 or more when the motor could hold the pendulum past horizontal.
        """
        effective = max(abs(duty) - self.motor_deadband_duty, 0.0) / (1.0 - self.motor_deadband_duty)
        ratio = self.motor_stall_acceleration_rad_per_s2 * effective / self.natural_frequency_rad_per_s**2
        return math.asin(ratio) if ratio < 1.0 else math.pi / 2

    def with_control_period(self, control_period_s: float) -> PendulumParams:
        """The same rig run at another control period (a job's chosen rate). The integrator step
        stays at most that of the calibration, and a latency of a period or more (the earlier
        boundary rule's) is capped below two periods of the new rate."""
        if math.isclose(control_period_s, self.control_period_s, rel_tol=1e-12):
            return self
        substeps = max(1, math.ceil(control_period_s / self.substep_s - 1e-9))
        latency = min(self.actuation_latency_s, 1.5 * control_period_s)
        return self.replace(control_period_s=control_period_s, physics_substeps=substeps, actuation_latency_s=latency)

    def replace(self, **changes: Any) -> PendulumParams:
        """A copy with some fields changed (validated like a new instance)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, float | int]:
        """Plain field → value mapping, as stored in a calibration file."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PendulumParams:
        """Build from a mapping; unknown names are an error, missing ones take defaults."""
        known = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise CalibrationError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            wanted = int if known[name].type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CalibrationError(f"parameter {name} must be a number, got {value!r}")
            if wanted is int and float(value) != int(value):
                raise CalibrationError(f"parameter {name} must be a whole number, got {value!r}")
            converted[name] = wanted(value)
        return cls(**converted)


def _physical_problems(params: PendulumParams) -> list[str]:
    problems: list[str] = []
    for field in dataclasses.fields(params):
        value = getattr(params, field.name)
        if not math.isfinite(value):
            problems.append(f"{field.name} must be finite, got {value}")
    positive = (
        "natural_frequency_rad_per_s",
        "motor_stall_acceleration_rad_per_s2",
        "control_period_s",
        "max_command",
        "velocity_limit_rad_per_s",
        "pwm_duty_steps",
        "encoder_counts_per_rev",
        "physics_substeps",
    )
    problems += [f"{name} must be > 0" for name in positive if not getattr(params, name) > 0]
    non_negative = (
        "viscous_damping_per_s",
        "coulomb_friction_rad_per_s2",
        "motor_back_emf_damping_per_s",
        "actuation_latency_s",
        "encoder_edge_jitter_s",
    )
    problems += [f"{name} must be ≥ 0" for name in non_negative if not getattr(params, name) >= 0]
    if not 0.0 <= params.motor_deadband_duty < 1.0:
        problems.append("motor_deadband_duty must be in [0, 1)")
    if params.actuation_latency_s >= 2.0 * params.control_period_s:
        problems.append("actuation_latency_s must be shorter than two control periods")
    return problems


def save_calibration(
    path: str | Path,
    params: PendulumParams,
    *,
    robot: str | None = None,
    fit_report: dict[str, Any] | None = None,
) -> Path:
    """Write a calibration file (JSON) that `load_calibration` and the simulator read back."""
    document: dict[str, Any] = {"format": CALIBRATION_FORMAT, "robot": robot, "params": params.to_dict()}
    if fit_report is not None:
        document["fit"] = fit_report
    target = Path(path)
    target.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def load_calibration(path: str | Path) -> PendulumParams:
    """Read the parameters of a calibration file written by `save_calibration`."""
    source = Path(path)
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"calibration file {source} does not exist") from None
    except json.JSONDecodeError as error:
        raise CalibrationError(f"calibration file {source} is not valid JSON: {error}") from None
    return calibration_from_document(document, origin=str(source))


def calibration_from_document(document: Any, *, origin: str = "calibration") -> PendulumParams:
    """Parameters from an already-parsed calibration document (as served by the API)."""
    if not isinstance(document, dict) or document.get("format") != CALIBRATION_FORMAT:
        raise CalibrationError(f"{origin} is not a {CALIBRATION_FORMAT} document")
    params = document.get("params")
    if not isinstance(params, dict):
        raise CalibrationError(f"{origin} has no 'params' mapping")
    return PendulumParams.from_dict(params)
