"""The Robot model: one pendulum rig, its node, its limits, and the health its agent reports.

A Robot is cluster-scoped and named like the robot (the value of the ``raas.dev/robot`` label on
its node). The lab operator writes the spec (maintenance flag, limits, calibration); the robot
agent on that node writes the status and heartbeats it; the operator marks a robot whose
heartbeat is stale Offline. The CRD's ``openAPIV3Schema`` is derived from these classes
(`raas_operator.crds`).

Phases::

    Offline → Resetting → Ready ⇄ Busy → Resetting → Ready
                        ↘ Unhealthy            Maintenance (set by the lab, any time)

Only a Ready robot that is not in maintenance gets new jobs (`Robot.accepts_jobs`).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from raas_operator.jobs.model import DEFAULT_CONTROL_HZ, MAX_CONTROL_HZ, MIN_CONTROL_HZ, NAME_PATTERN

NODE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""Kubernetes node names are DNS subdomains (at most 253 characters)."""
JOB_REF_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$"
"""A RaasJob seen from a cluster-scoped Robot: ``<namespace>/<name>``."""
DEFAULT_HEARTBEAT_TIMEOUT = timedelta(seconds=30)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RobotPhase(str, Enum):
    """What a robot is doing, as its agent (or the operator, for Offline) reports it."""

    READY = "Ready"
    BUSY = "Busy"
    RESETTING = "Resetting"
    UNHEALTHY = "Unhealthy"
    MAINTENANCE = "Maintenance"
    OFFLINE = "Offline"


class SafetyLimits(_Model):
    """The envelope the agent's safety layer enforces, whatever the user's code commands.

    The agent writes its node's own envelope when it creates the Robot; the lab may tighten it here
    (taken at the next heartbeat), never loosen it beyond the node's.
    Defaults match the agent's built-in limits (``raas_node.agent.safety.SafetyLimits``) and the
    environment's action bound (``gym_raas.params.PendulumParams.max_command``).
    """

    max_command: Annotated[
        float, Field(gt=0, le=10, description="Largest accepted |command|; it maps to full motor duty.")
    ] = 2.0
    max_speed_rad_per_s: Annotated[
        float, Field(gt=0, le=200, description="Angular speed above which the motor is cut (rad/s).")
    ] = 25.0
    watchdog_ms: Annotated[
        int, Field(ge=10, le=5000, description="The motor stops when no command came for this long (ms).")
    ] = 200
    thermal_limit_celsius: Annotated[
        float, Field(ge=30, le=150, description="Modelled winding temperature that stops the motor (°C).")
    ] = 85.0


class RobotSpec(_Model):
    """What the lab declares about a robot."""

    node_name: Annotated[
        str, Field(min_length=1, max_length=253, pattern=NODE_NAME_PATTERN, description="Kubernetes node of the rig.")
    ]
    robot_type: Annotated[str, Field(pattern=NAME_PATTERN, description="Kind of rig; jobs ask for a type.")] = (
        "pendulum"
    )
    maintenance: Annotated[bool, Field(description="True takes the robot out of scheduling.")] = False
    limits: SafetyLimits = Field(
        default_factory=SafetyLimits, description="Safety envelope; the lab may tighten it, never loosen it."
    )
    calibration: Annotated[
        dict[str, float] | None,
        Field(
            max_length=64,
            description="Fitted physics parameters (gym_raas.params.PendulumParams fields); null until calibrated.",
        ),
    ] = None


class RobotHealth(_Model):
    """The health summary the agent reports with each heartbeat."""

    reasons: Annotated[
        tuple[str, ...], Field(max_length=32, description="Why the robot is not Ready; empty when healthy.")
    ] = ()
    encoder_ok: Annotated[bool | None, Field(description="False when the encoder is stuck.")] = None
    motor_temperature_celsius: Annotated[
        float | None, Field(ge=-50, le=300, description="Modelled winding temperature (°C).")
    ] = None
    last_reset_ok: Annotated[bool | None, Field(description="Whether the last reset brought the rig to rest.")] = None
    last_reset_duration_s: Annotated[float | None, Field(ge=0, description="How long the last reset took.")] = None


class LiveSession(_Model):
    """The running session's latest boundary, as of the heartbeat (for live views)."""

    steps: Annotated[int, Field(ge=0, description="Control steps so far.")] = 0
    time_s: Annotated[float, Field(ge=0, description="Seconds since the session opened.")] = 0.0
    theta_rad: Annotated[float, Field(description="Pendulum angle from upright.")] = 0.0
    theta_dot_rad_per_s: Annotated[float, Field(description="Angular speed.")] = 0.0
    command: Annotated[float, Field(description="The command in force.")] = 0.0


class RobotStatus(_Model):
    """What the agent (and, for Offline, the operator) reports."""

    phase: RobotPhase = RobotPhase.OFFLINE
    current_job: Annotated[
        str | None, Field(pattern=JOB_REF_PATTERN, description="RaasJob running now, as namespace/name.")
    ] = None
    last_heartbeat: Annotated[datetime | None, Field(description="When the agent last reported (UTC).")] = None
    health: RobotHealth = Field(default_factory=RobotHealth)
    jobs_completed: Annotated[int, Field(ge=0, description="Jobs this robot has finished since it joined.")] = 0
    live: Annotated[LiveSession | None, Field(description="The current job's session as of the heartbeat.")] = None
    supported_control_hz: Annotated[
        tuple[Annotated[float, Field(ge=MIN_CONTROL_HZ, le=MAX_CONTROL_HZ, allow_inf_nan=False)], ...],
        Field(
            min_length=1,
            max_length=16,
            description="Control rates (Hz) the robot runs jobs at; an agent that reports none runs 20 Hz only.",
        ),
    ] = (DEFAULT_CONTROL_HZ,)


class Robot(_Model):
    """A Robot object's spec and status (metadata stays with the Kubernetes object)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    spec: RobotSpec
    status: RobotStatus = Field(default_factory=RobotStatus)

    def heartbeat_is_stale(
        self, now: datetime, timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT, heard_at: datetime | None = None
    ) -> bool:
        """True when the agent has not reported within `timeout` (or never has). `heard_at`: when
        the judge saw its last heartbeat, on the judge's own clock (the operator's: a Pi without a
        real-time clock may stamp its heartbeats minutes off); else the agent's own stamp counts."""
        beat = heard_at if heard_at is not None else self.status.last_heartbeat
        return beat is None or now - beat > timeout

    def supports_control_hz(self, control_hz: float) -> bool:
        """Whether the robot runs jobs at `control_hz` (as its agent advertises)."""
        return any(math.isclose(control_hz, offered, rel_tol=1e-9) for offered in self.status.supported_control_hz)

    def accepts_jobs(
        self, now: datetime, timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT, heard_at: datetime | None = None
    ) -> bool:
        """Ready, not in maintenance, and heard from recently (`heartbeat_is_stale`): the
        scheduler may give it a job."""
        return (
            self.status.phase is RobotPhase.READY
            and not self.spec.maintenance
            and not self.heartbeat_is_stale(now, timeout, heard_at)
        )
