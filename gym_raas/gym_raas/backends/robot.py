"""The ``robot`` backend: a real robot through the robot agent's session socket.

Inside a RaaS job the platform mounts the agent's Unix socket and sets ``RAAS_AGENT_SOCKET``
and ``RAAS_SESSION_TOKEN``. The backend opens the session (the agent answers with the robot's
calibration, so the env's spaces are the robot's), and each `step` sends the command and
returns the reading of the control boundary at which the agent applied it.

A robot that is not ready for the session yet is waited for, up to ``RAAS_SESSION_WAIT_S``
seconds (default 30): on a cluster the job's pod can start before the agent's next heartbeat has
read the booking ("unexpected-session"), or while the pendulum still settles after the previous
job ("resetting", "busy"). Any other refusal (maintenance, a fault) ends the wait at once.
"""

from __future__ import annotations

import math
import os
import socket
import time
from typing import Any

import numpy as np

from gym_raas.backends.base import AGENT_SOCKET_ENV, Reading, job_control_hz
from gym_raas.params import PendulumParams
from gym_raas.protocol import FrameReader, ProtocolError, decode_message, encode_frame, encode_message
from gym_raas.protocol.framing import FrameError

SESSION_TOKEN_ENV = "RAAS_SESSION_TOKEN"
"""Environment variable holding the session token of the job."""

SESSION_WAIT_ENV = "RAAS_SESSION_WAIT_S"
"""Environment variable: how long to wait for a robot not yet ready to open the session."""
DEFAULT_SESSION_WAIT_S = 30.0

TRANSIENT_REFUSALS = frozenset({"unexpected-session", "resetting", "busy"})
"""Refusal codes that a later attempt can overcome (the agent's `_refusal`)."""


class RobotSessionError(RuntimeError):
    """The robot agent refused or ended the session; the message says why.

    `code` is the agent's refusal code when it refused (``None`` otherwise)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def session_wait_s(environ: dict[str, str] | None = None) -> float:
    """The wait for a robot not yet ready (`SESSION_WAIT_ENV`; bad values mean the default)."""
    raw = (os.environ if environ is None else environ).get(SESSION_WAIT_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_SESSION_WAIT_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_SESSION_WAIT_S


class RobotBackend:
    """One session with a robot agent (`PendulumBackend`)."""

    def __init__(
        self,
        socket_path: str | None = None,
        token: str | None = None,
        *,
        connect_timeout_s: float = 10.0,
        wait_s: float | None = None,
        control_hz: float | None = None,
    ) -> None:
        """Open the session (at `control_hz`, one the robot supports; None: the job's, from
        `CONTROL_HZ_ENV`, else the robot's default); a transient refusal is retried for `wait_s`
        seconds (None: from `SESSION_WAIT_ENV`), then raised as `RobotSessionError` saying how long
        it waited."""
        self._control_hz = job_control_hz() if control_hz is None else control_hz
        path = socket_path or os.environ.get(AGENT_SOCKET_ENV)
        if not path:
            raise RobotSessionError(f"no robot agent socket: set {AGENT_SOCKET_ENV} (the platform does, inside a job)")
        token = token or os.environ.get(SESSION_TOKEN_ENV, "")
        budget_s = session_wait_s() if wait_s is None else wait_s
        started_s = time.monotonic()
        pause_s = 0.05
        while True:
            try:
                welcome = self._open(path, token, connect_timeout_s)
                break
            except RobotSessionError as error:
                if error.code not in TRANSIENT_REFUSALS:
                    raise
                left_s = started_s + budget_s - time.monotonic()
                if left_s <= 0:
                    if budget_s > 0:
                        raise RobotSessionError(f"{error}; waited {budget_s:g} s", error.code) from None
                    raise
                time.sleep(min(pause_s, left_s))
                pause_s = min(pause_s * 2, 0.5)
        self.params = PendulumParams.from_dict(welcome["params"])
        self.robot = welcome["robot"]
        self.supported_control_hz: tuple[float, ...] = tuple(welcome.get("supported_control_hz", ()))
        self.session = welcome["session"]

    def _open(self, path: str, token: str, connect_timeout_s: float) -> dict[str, Any]:
        """Connect and say hello; the agent's welcome (the socket is closed again on a refusal)."""
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.settimeout(connect_timeout_s)
        try:
            self._socket.connect(path)
        except OSError as error:
            self._socket.close()
            raise RobotSessionError(f"cannot reach the robot agent at {path}: {error}") from None
        self._socket.settimeout(None)
        self._reader = FrameReader(self._socket)
        self._closed = False
        try:
            rate = {} if self._control_hz is None else {"control_hz": float(self._control_hz)}
            return self._request("hello", "welcome", token=token, client="gym_raas", **rate)
        except RobotSessionError:
            self._closed = True
            self._socket.close()
            raise

    def reset(self, rng: np.random.Generator, options: dict[str, Any] | None) -> Reading:
        if options and {"theta", "theta_dot", "initial_state"} & set(options):
            raise ValueError("a robot always starts hanging at rest: reset options are for the simulator")
        return self._reading(self._request("reset", "observation"))

    def step(self, command: float) -> Reading:
        if not math.isfinite(command):
            raise ValueError(f"action must be a finite number, got {command}")
        return self._reading(self._request("step", "observation", action=command))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._socket.sendall(encode_frame(encode_message("close")))
            self._reader.read()
        except OSError:
            pass
        finally:
            self._socket.close()

    def _request(self, kind: str, expected: str, **fields: Any) -> dict[str, Any]:
        if self._closed:
            raise RobotSessionError("the robot session is closed")
        try:
            self._socket.sendall(encode_frame(encode_message(kind, **fields)))
            payload = self._reader.read()
        except (OSError, FrameError) as error:
            raise RobotSessionError(f"lost the robot agent: {error}") from None
        if payload is None:
            raise RobotSessionError("the robot agent ended the session")
        try:
            reply = decode_message(payload)
        except ProtocolError as error:
            raise RobotSessionError(f"the robot agent sent an invalid message: {error}") from None
        if reply["type"] == "error":
            raise RobotSessionError(f"the robot refused: {reply['message']} ({reply['code']})", str(reply["code"]))
        if reply["type"] == "bye":
            self._closed = True
            raise RobotSessionError(f"the robot ended the session: {reply['reason']}")
        if reply["type"] != expected:
            raise RobotSessionError(f"expected {expected} from the robot agent, got {reply['type']}")
        return reply

    @staticmethod
    def _reading(observation: dict[str, Any]) -> Reading:
        info = {
            "step": observation["step"],
            "boundary_time": observation["boundary_time"],
            "late_by": observation["late_by"],
            "deadline_misses": observation["deadline_misses"],
            "applied_command": observation["applied"],
            "safety": observation["safety"],
        }
        if "actuation_latency" in observation:  # protocol 2: when the command reached the motor
            info["actuation_latency_s"] = observation["actuation_latency"]
        return Reading(float(observation["theta"]), float(observation["theta_dot"]), info)
