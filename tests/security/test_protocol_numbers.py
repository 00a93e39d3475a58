"""Hostile numbers and shapes in session frames (security issue 12, item 14).

A step whose action was a 5000-digit integer made the agent log a traceback and drop the
connection without an error frame (Python's JSON parser raises a bare ValueError past 4300
digits; a 400-digit one overflowed `float()` inside the agent). Every hostile frame must get an
error frame saying what was wrong, no traceback in the agent's log, and the robot must serve the
next session. NaN and ±Infinity stay what the safety layer refuses (motor off, a ``nan`` event,
the session goes on).
"""

from __future__ import annotations

import json
import logging
import math
import socket
from collections.abc import Iterator

import numpy as np
import pytest
from agent_fixtures import running_agent, wait_for_state
from hypothesis import given, settings
from hypothesis import strategies as st

from gym_raas.backends.robot import RobotBackend
from gym_raas.params import PendulumParams
from gym_raas.protocol import FrameReader, ProtocolError, decode_message, encode_frame, encode_message
from gym_raas.protocol.messages import MAX_ABS_ACTION, SUPPORTED_VERSIONS
from raas_node.agent.agent import AgentState, RobotAgent
from raas_node.drivers.sim_driver import SimDriver


def step_frame(action_json: str) -> bytes:
    return encode_frame(b'{"type":"step","v":1,"action":' + action_json.encode() + b"}")


HOSTILE_STEPS = {
    "5000-digit integer": (step_frame("9" * 5000), "5000 digits"),
    "400-digit integer": (step_frame("-" + "9" * 400), "400 digits"),
    "huge float": (step_frame("1e300"), "outside"),
    "large integer": (step_frame("123456789012"), "outside"),
    "deeply nested action": (step_frame("[" * 20_000 + "]" * 20_000), "nested too deeply"),
    "deeply nested frame": (encode_frame(b"[" * 60_000), "nested too deeply"),
    "huge string action": (step_frame(json.dumps("9" * 60_000)), "must be int or float"),
    "list action": (step_frame("[1.0]"), "must be int or float"),
    "object action": (step_frame('{"torque": 1}'), "must be int or float"),
    "null action": (step_frame("null"), "must be int or float"),
    "boolean action": (step_frame("true"), "must be int or float"),
}


@pytest.fixture(scope="module")
def agent() -> Iterator[RobotAgent]:
    with running_agent(SimDriver(PendulumParams())) as running:
        yield running


def replies_to(agent: RobotAgent, job_id: str, frame: bytes) -> list[dict[str, object]]:
    """Open a session with the job's token, reset, send `frame`; the agent's replies until it hangs up."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(30)
        connection.connect(str(agent.config.socket_path))
        connection.sendall(encode_frame(encode_message("hello", token=agent.expect(job_id))))
        connection.sendall(encode_frame(encode_message("reset")))
        connection.sendall(frame)
        reader = FrameReader(connection)
        replies = []
        try:
            while (payload := reader.read()) is not None:
                replies.append(decode_message(payload))
        except OSError:
            pass  # reset by the agent after its error frame: what it sent is what counts
    return replies


def serves_a_normal_session(agent: RobotAgent) -> bool:
    wait_for_state(agent, AgentState.IDLE, 30)
    backend = RobotBackend(str(agent.config.socket_path), token=agent.expect("job-next"), wait_s=30)
    backend.reset(np.random.default_rng(0), None)
    reading = backend.step(0.5)
    backend.close()
    result = agent.wait_session("job-next", timeout_s=30)
    return result is not None and result.outcome == "completed" and np.isfinite(reading.theta_rad)


@pytest.mark.parametrize("name", list(HOSTILE_STEPS))
def test_a_hostile_step_gets_an_error_frame_and_no_traceback(
    agent: RobotAgent, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    frame, complaint = HOSTILE_STEPS[name]
    job_id = f"job-{name.replace(' ', '-')}"
    with caplog.at_level(logging.INFO):
        replies = replies_to(agent, job_id, frame)
        result = agent.wait_session(job_id, timeout_s=30)
    assert [reply["type"] for reply in replies] == ["welcome", "observation", "error"]
    assert complaint in str(replies[-1]["message"])
    assert result is not None
    assert result.outcome == "protocol_error"
    assert complaint in result.message
    tracebacks = [record for record in caplog.records if record.exc_info is not None]
    assert not tracebacks, f"the agent logged a traceback for bad input: {tracebacks[0].getMessage()}"
    assert serves_a_normal_session(agent)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_actions_still_reach_the_safety_layers_refusal(agent: RobotAgent, literal: str) -> None:
    backend = RobotBackend(str(agent.config.socket_path), token=agent.expect(f"job-{literal}"), wait_s=30)
    backend.reset(np.random.default_rng(0), None)
    backend._socket.sendall(step_frame(literal))  # the env refuses these itself: as hostile code would
    payload = backend._reader.read()
    assert payload is not None
    reply = decode_message(payload)
    assert reply["type"] == "observation"
    assert reply["safety"] == ["nan"]
    assert reply["applied"] == 0.0
    info = backend.step(0.5).info
    assert info is not None
    assert info["step"] == 1  # the session goes on
    backend.close()
    result = agent.wait_session(f"job-{literal}", timeout_s=30)
    assert result is not None
    assert result.outcome == "completed"
    assert result.safety_events == {"nan": 1}
    wait_for_state(agent, AgentState.IDLE, 30)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6000), max_value=10**6000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=64),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def as_json(value: object) -> str:
    """JSON text of `value`, with integers beyond Python's str() limit written out digit by digit."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**4000:
        return ("-" if value < 0 else "") + "9" * 4500
    if isinstance(value, list):
        return "[" + ",".join(as_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(key)}:{as_json(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)


def decoded_or_refused(payload: bytes) -> dict[str, object] | ProtocolError:
    """The checked message, or the `ProtocolError` that says what was wrong (any other exception
    propagates and fails the test)."""
    try:
        return decode_message(payload)
    except ProtocolError as error:
        return error


FIELD_NAMES = ["token", "client", "action", "theta", "step", "params", "message", "x"]


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["hello", "reset", "step", "close", "welcome", "observation", "error", "bye", "launch"]),
    fields=st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=3),
    version=st.sampled_from(["1", "2", "3", "1.0", "true", "null", "9" * 5000]),
)
def test_the_decoder_answers_any_message_with_a_protocol_error_or_a_checked_message(
    kind: str, fields: dict[str, object], version: str
) -> None:
    members = [f'"type":"{kind}"', f'"v":{version}'] + [f'"{name}":{as_json(value)}' for name, value in fields.items()]
    outcome = decoded_or_refused(("{" + ",".join(members) + "}").encode())
    if isinstance(outcome, ProtocolError):
        assert str(outcome)
        return
    assert outcome["v"] in SUPPORTED_VERSIONS  # 1.0 and true are not versions: only 1 and 2 decode
    if outcome["type"] == "step":
        action = outcome["action"]
        assert isinstance(action, (int, float))
        assert not isinstance(action, bool)
        assert not math.isfinite(float(action)) or abs(action) <= MAX_ABS_ACTION  # float() cannot overflow


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_the_decoder_answers_any_bytes_with_a_protocol_error_or_a_checked_message(payload: bytes) -> None:
    outcome = decoded_or_refused(payload)
    assert str(outcome) if isinstance(outcome, ProtocolError) else outcome["v"] == 1
