"""The session protocol: framing, schemas, and an agent that survives hostile clients."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from agent_fixtures import running_agent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gym_raas.backends.robot import RobotBackend
from gym_raas.params import PendulumParams
from gym_raas.protocol import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    decode_message,
    encode_frame,
    encode_message,
)
from raas_node.agent.agent import RobotAgent
from raas_node.drivers.sim_driver import SimDriver


def test_messages_round_trip_and_carry_the_version() -> None:
    message = decode_message(encode_message("step", action=1.5))
    assert message == {"type": "step", "v": PROTOCOL_VERSION, "action": 1.5}


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": "launch", "v": 1}', "unknown message type"),
        (b'{"type": "step", "v": 99, "action": 1}', "version 99"),
        (b'{"type": "step", "v": 1}', "missing field 'action'"),
        (b'{"type": "step", "v": 1, "action": "2"}', "must be int or float"),
        (b'{"type": "step", "v": 1, "action": true}', "must be int or float"),
        (b'{"type": "step", "v": 1, "action": 1, "extra": 1}', "unexpected field"),
        (b"\x80\x04\x95" + b"pickle", "not UTF-8 JSON"),
    ],
)
def test_malformed_messages_get_an_error_saying_what_was_wrong(payload: bytes, complaint: str) -> None:
    with pytest.raises(ProtocolError, match=complaint):
        decode_message(payload)


@pytest.fixture(scope="module")
def agent() -> RobotAgent:
    with running_agent(SimDriver(PendulumParams())) as running:
        yield running  # type: ignore[misc]


def raw_session(agent: RobotAgent, frames: list[bytes]) -> list[bytes]:
    """Send raw bytes as an (authenticated) client; return what came back until the agent closed."""
    token = agent.expect("job-fuzz")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(15)
        connection.connect(str(agent.config.socket_path))
        connection.sendall(encode_frame(encode_message("hello", token=token)))
        for frame in frames:
            try:
                connection.sendall(frame)
            except OSError:
                break
        received = bytearray()
        try:
            connection.shutdown(socket.SHUT_WR)
            while chunk := connection.recv(65536):
                received += chunk
        except OSError:
            pass  # the agent may close on us mid-stream; what matters is that it lives on
    agent.cancel("job-fuzz")
    return [bytes(received)]


def serves_a_normal_session(agent: RobotAgent) -> bool:
    backend = RobotBackend(str(agent.config.socket_path), token=agent.expect("job-after"))
    backend.reset(np.random.default_rng(), None)
    reading = backend.step(0.0)
    backend.close()
    agent.wait_session("job-after", timeout_s=30)
    return np.isfinite(reading.theta_rad)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),  # raw garbage, partial headers
            st.binary(max_size=200).map(encode_frame),  # well-framed garbage
            st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8), st.none())).map(
                lambda value: encode_frame(repr(value).encode())
            ),
            st.just(b"\x7f\xff\xff\xff"),  # a 2 GiB frame announced
        ),
        max_size=5,
    )
)
def test_the_agent_survives_malformed_frames_and_serves_the_next_session(
    agent: RobotAgent, frames: list[bytes]
) -> None:
    raw_session(agent, frames)
    for _ in range(200):  # wait for the agent's between-session reset
        if agent.state.value == "idle":
            break
        time.sleep(0.05)
    assert serves_a_normal_session(agent)


def test_an_oversized_frame_is_refused_without_reading_it(agent: RobotAgent) -> None:
    (received,) = raw_session(agent, [(MAX_FRAME_BYTES + 1).to_bytes(4, "big")])
    replies = []
    while received:
        length = int.from_bytes(received[:4], "big")
        replies.append(decode_message(received[4 : 4 + length]))
        received = received[4 + length :]
    assert [reply["type"] for reply in replies] == ["welcome", "error"]
    reply = replies[-1]
    assert "exceeds" in reply["message"]
    assert serves_a_normal_session(agent)
