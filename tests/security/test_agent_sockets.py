"""Attacks on a robot's session socket by another job (security issue 12, item 5).

The agent's socket is world-writable (jobs run as other users; the session token guards it), so
any job can connect to any robot's socket. Before the session gate, the agent read one
connection's hello at a time with a 10 s timeout per read: a job dripping a byte every few
seconds into another robot's socket, or holding idle connections open, made that robot's real
client wait until it gave up, with 0 steps, blamed on the user.

Each test runs the attack for as long as the real client needs (at most `ATTACK_S`) and asserts
that the real client, with the robot's current token, completed its whole session while the
attack was still going on.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from agent_fixtures import running_agent

from gym_raas.backends.robot import RobotBackend
from gym_raas.params import PendulumParams
from gym_raas.protocol import FrameReader, decode_message, encode_frame, encode_message
from raas_node.agent.agent import RobotAgent
from raas_node.drivers.sim_driver import SimDriver

ATTACK_S = 60.0
"""How long an attacker keeps going at most (the old agent let the client through only after)."""
STEPS = 25
DRIP_INTERVAL_S = 0.5
IDLE_CONNECTIONS = 100


def hostile_hello(token_length: int = 200) -> bytes:
    """A hello with a wrong token; dripped at `DRIP_INTERVAL_S`, the default one takes ≈2 minutes."""
    return encode_frame(encode_message("hello", token="x" * token_length))


def connect(path: str) -> socket.socket | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(1.0)
    try:
        connection.connect(path)
    except OSError:
        connection.close()
        return None
    return connection


def drip(path: str, done: threading.Event, started: threading.Event) -> None:
    """Connect and send a hello a byte at a time; come back whenever the agent hangs up."""
    frame = hostile_hello()
    while not done.is_set():
        connection = connect(path)
        if connection is None:
            done.wait(0.1)
            continue
        with connection:
            for index in range(len(frame)):
                try:
                    connection.sendall(frame[index : index + 1])
                except OSError:
                    break  # dropped: reconnect
                if index == 1:
                    started.set()
                if done.wait(DRIP_INTERVAL_S):
                    return


def hold_idle_connections(path: str, done: threading.Event, started: threading.Event) -> None:
    """Keep `IDLE_CONNECTIONS` connections open that never say a word, reopening dropped ones."""
    held: list[socket.socket] = []
    try:
        while not done.is_set():
            alive = []
            for connection in held:
                connection.setblocking(False)
                try:
                    gone = connection.recv(1, socket.MSG_PEEK) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone or _has_reply(connection):
                    connection.close()
                else:
                    alive.append(connection)
            held = alive
            while len(held) < IDLE_CONNECTIONS and not done.is_set():
                fresh = connect(path)
                if fresh is None:
                    break
                held.append(fresh)
            if held:
                started.set()
            done.wait(0.2)
    finally:
        for connection in held:
            connection.close()


def _has_reply(connection: socket.socket) -> bool:
    """The agent answered (an error frame before hanging up): the connection is spent."""
    try:
        return bool(connection.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


@contextmanager
def attack(
    target: Callable[[str, threading.Event, threading.Event], None], agent: RobotAgent
) -> Iterator[threading.Event]:
    """Run `target` against the agent's socket until the block ends (or `ATTACK_S`); yields an
    event that is set when the attacker gave up before the block ended."""
    done, started, gave_up = threading.Event(), threading.Event(), threading.Event()

    def run() -> None:
        target(str(agent.config.socket_path), done, started)

    def give_up() -> None:
        gave_up.set()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    timer = threading.Timer(ATTACK_S, give_up)
    timer.start()
    assert started.wait(30), "the attacker never got a connection in"
    done.wait(1.0)  # let the agent take the attacker's connection(s) first, as on a busy robot
    try:
        yield gave_up
    finally:
        timer.cancel()
        done.set()
        thread.join(timeout=30)


def real_session(agent: RobotAgent, job_id: str) -> int:
    """The robot's real client: open with the current token, reset, `STEPS` steps, close."""
    backend = RobotBackend(str(agent.config.socket_path), token=agent.expect(job_id), wait_s=5)
    backend.reset(np.random.default_rng(0), None)
    for _ in range(STEPS):
        backend.step(0.2)
    backend.close()
    result = agent.wait_session(job_id, timeout_s=30)
    assert result is not None
    assert result.outcome == "completed", result
    return result.steps


def test_a_connection_dripping_bytes_does_not_stall_the_robots_real_client() -> None:
    with running_agent(SimDriver(PendulumParams())) as agent, attack(drip, agent) as gave_up:
        steps = real_session(agent, "job-real")
        assert not gave_up.is_set(), "the real client got its session only after the attacker stopped"
    assert steps == STEPS


def test_many_idle_connections_do_not_stall_the_robots_real_client() -> None:
    with running_agent(SimDriver(PendulumParams())) as agent, attack(hold_idle_connections, agent) as gave_up:
        steps = real_session(agent, "job-real")
        assert not gave_up.is_set(), "the real client got its session only after the attacker stopped"
    assert steps == STEPS


def test_the_hello_has_a_total_deadline_however_the_bytes_trickle_in() -> None:
    """A drip of one byte every half second resets no timer: the agent hangs up long before the
    hello is complete, with an error frame saying why."""
    frame = hostile_hello(token_length=40)  # ≈30 s of dripping: what the agent before the gate waited for
    with running_agent(SimDriver(PendulumParams())) as agent:
        connection = connect(str(agent.config.socket_path))
        assert connection is not None
        sent = 0
        reply = None
        with connection:
            connection.settimeout(DRIP_INTERVAL_S)
            while sent < len(frame):
                try:
                    connection.sendall(frame[sent : sent + 1])
                    sent += 1
                    payload = FrameReader(connection).read()
                except TimeoutError:
                    continue  # nothing yet: drip on
                except OSError:
                    break
                reply = None if payload is None else decode_message(payload)
                break
        assert sent < len(frame), "the agent waited for the whole dripped hello"
        assert reply is not None, "the agent hung up without an error frame"
        assert reply["type"] == "error"
        assert "no complete hello within" in reply["message"]
        steps = real_session(agent, "job-after")
    assert steps == STEPS
