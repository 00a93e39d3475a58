"""The virtual rig speaks pigpiod's protocol to the real pigpio client and behaves like the rig."""

from __future__ import annotations

import itertools
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pigpio
import pytest
from polling import wait_until

from gym_raas.params import PendulumParams
from gym_raas.simulator import HANGING_RAD
from raas_node.drivers.config import PwmResolution
from raas_node.drivers.pigpio_driver import deadman_script
from raas_node.virtual_rig import VirtualRig
from raas_node.virtual_rig.scripts import ScriptError, parse_script

RESOLUTION_RAD = PendulumParams().encoder_resolution_rad
FORWARD_PIN, ENCODER_A, ENCODER_B = 12, 17, 27


@pytest.fixture
def pi(virtual_rig: VirtualRig) -> Iterator[pigpio.pi]:
    client = pigpio.pi(virtual_rig.host, virtual_rig.port, show_errors=False)
    assert client.connected
    yield client
    client.stop()


def raw_command(connection: socket.socket, command: int, p1: int = 0, p2: int = 0, extension: bytes = b"") -> int:
    connection.sendall(struct.pack("<IIII", command, p1, p2, len(extension)) + extension)
    reply = b""
    while len(reply) < 16:
        chunk = connection.recv(16 - len(reply))
        assert chunk, "the rig closed the connection"
        reply += chunk
    result: int = struct.unpack("<IIIi", reply)[3]
    return result


def test_pigpio_client_reads_a_running_tick_and_the_encoder_levels(pi: pigpio.pi) -> None:
    first = pi.get_current_tick()
    time.sleep(0.01)
    elapsed_us = pigpio.tickDiff(first, pi.get_current_tick())
    assert 9_000 <= elapsed_us <= 200_000
    pi.set_mode(ENCODER_A, pigpio.INPUT)
    assert (pi.read(ENCODER_A), pi.read(ENCODER_B)) == (0, 0)  # count 0 hanging: phase 0
    assert pi.read_bank_1() & ((1 << ENCODER_A) | (1 << ENCODER_B)) == 0


def test_pwm_frequencies_and_real_ranges_follow_pigpios_table(pi: pigpio.pi) -> None:
    expectations = {8000: (8000, 25), 1000: (1000, 200), 800: (800, 250), 100_000: (8000, 25), 0: (10, 20000)}
    for requested, (frequency, real_range) in expectations.items():
        assert pi.set_PWM_frequency(FORWARD_PIN, requested) == frequency
        assert pi.get_PWM_frequency(FORWARD_PIN) == frequency
        assert pi.get_PWM_real_range(FORWARD_PIN) == real_range
    assert pi.set_PWM_range(FORWARD_PIN, 1000) == 20000  # returns the real range
    assert pi.get_PWM_range(FORWARD_PIN) == 1000


def test_duty_reaching_the_motor_is_quantised_as_pigpio_does(pi: pigpio.pi, virtual_rig: VirtualRig) -> None:
    pi.set_PWM_frequency(FORWARD_PIN, 8000)  # real range 25: only 25 duty levels
    pi.set_PWM_range(FORWARD_PIN, 255)
    pi.set_PWM_dutycycle(FORWARD_PIN, 128)
    expected = PwmResolution(8000, 255, 25).effective_duty(128)
    assert expected == pytest.approx(12 / 25)
    state = virtual_rig.state()
    assert state.pin_duty[FORWARD_PIN] == pytest.approx(expected)
    assert state.motor_duty == pytest.approx(expected)
    assert pi.get_PWM_dutycycle(FORWARD_PIN) == 128


def test_bad_arguments_are_refused_with_pigpio_errors(pi: pigpio.pi) -> None:
    with pytest.raises(pigpio.error, match="dutycycle not 0-range"):
        pi.set_PWM_dutycycle(FORWARD_PIN, 300)
    with pytest.raises(pigpio.error, match=r"(?i)gpio not 0-53"):
        pi.set_mode(60, pigpio.OUTPUT)
    with pytest.raises(pigpio.error, match="dutycycle range not 25-40000"):
        pi.set_PWM_range(FORWARD_PIN, 10)
    with pytest.raises(pigpio.error, match="not in use for PWM"):
        pi.get_PWM_dutycycle(4)


def test_unknown_commands_answer_pigpios_error_code_and_the_connection_stays_usable(virtual_rig: VirtualRig) -> None:
    with socket.create_connection((virtual_rig.host, virtual_rig.port), timeout=2) as connection:
        assert raw_command(connection, 200, 1, 2) == pigpio.PI_UNKNOWN_COMMAND
        assert raw_command(connection, 57, 1, 2, b"\x01\x02") == pigpio.PI_UNKNOWN_COMMAND  # I2CWD, with extension
        assert raw_command(connection, 16) != 0  # TICK still answers


def test_encoder_edges_reach_pigpio_callbacks_as_quadrature_with_rising_ticks(
    pi: pigpio.pi, virtual_rig: VirtualRig
) -> None:
    events: list[tuple[int, int, int]] = []
    callbacks = [
        pi.callback(pin, pigpio.EITHER_EDGE, lambda g, level, t: events.append((g, level, t)))
        for pin in (ENCODER_A, ENCODER_B)
    ]
    virtual_rig.place(HANGING_RAD + 8 * RESOLUTION_RAD)  # moved by hand: +8 counts
    assert wait_until(lambda: len(events) >= 8)
    for callback in callbacks:
        callback.cancel()
    assert [(gpio, level) for gpio, level, _ in events] == [
        (ENCODER_A, 1),
        (ENCODER_B, 1),
        (ENCODER_A, 0),
        (ENCODER_B, 0),
    ] * 2  # A leads B when θ increases
    ticks = [tick for _, _, tick in events]
    assert all(pigpio.tickDiff(earlier, later) > 0 for earlier, later in itertools.pairwise(ticks))


def test_a_swinging_pendulum_streams_every_edge_it_crosses(pi: pigpio.pi, virtual_rig: VirtualRig) -> None:
    edges = [0]

    def count(_gpio: int, _level: int, _tick: int) -> None:
        edges[0] += 1

    callbacks = [pi.callback(pin, pigpio.EITHER_EDGE, count) for pin in (ENCODER_A, ENCODER_B)]
    virtual_rig.place(HANGING_RAD + 1.0)
    start = virtual_rig.state()
    time.sleep(0.6)  # through the bottom and up the other side
    end_time = virtual_rig.state().time_s
    counts = [virtual_rig.encoder_count_at(start.time_s + index * 0.0001) for index in range(6001)]
    crossed = sum(abs(later - earlier) for earlier, later in itertools.pairwise(counts))
    assert end_time - start.time_s >= 0.6
    burst = abs(start.encoder_count)  # the move by hand, from count 0
    assert wait_until(lambda: edges[0] >= burst + crossed)
    for callback in callbacks:
        callback.cancel()
    assert crossed > 100


def test_many_clients_and_abrupt_disconnects_leave_the_rig_serving(virtual_rig: VirtualRig) -> None:
    virtual_rig.place(HANGING_RAD + 1.5)  # streaming edges meanwhile
    connections = []
    for index in range(12):
        connection = socket.create_connection((virtual_rig.host, virtual_rig.port), timeout=2)
        if index % 2:
            handle = raw_command(connection, 99)  # NOIB: this socket becomes a notification stream
            with socket.create_connection((virtual_rig.host, virtual_rig.port), timeout=2) as control:
                assert raw_command(control, 19, handle, (1 << ENCODER_A) | (1 << ENCODER_B)) == 0  # NB
        connections.append(connection)
    time.sleep(0.1)
    for connection in connections:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, no goodbye
        connection.close()
    client = pigpio.pi(virtual_rig.host, virtual_rig.port, show_errors=False)
    try:
        assert client.connected
        assert client.get_current_tick() > 0
        assert wait_until(lambda: virtual_rig.state().clients == 2)  # only the new client's two sockets
    finally:
        client.stop()


def test_outputs_keep_their_duty_after_the_client_disconnects_like_pigpiod(virtual_rig: VirtualRig) -> None:
    client = pigpio.pi(virtual_rig.host, virtual_rig.port, show_errors=False)
    client.set_PWM_dutycycle(FORWARD_PIN, 255)
    client.stop()
    assert wait_until(lambda: virtual_rig.state().clients == 0)
    assert virtual_rig.state().motor_duty == 1.0  # hence the dead-man script


def test_a_stored_script_computes_with_pigpios_semantics(pi: pigpio.pi) -> None:
    script_id = pi.store_script(b"lda p0 add 5 sta p1 cmp 12 jz 1 ld p2 1 halt tag 1 ld p2 2 pwm 12 64 ld p3 v0")
    assert wait_until(lambda: pi.script_status(script_id)[0] == pigpio.PI_SCRIPT_HALTED)
    pi.run_script(script_id, [7])
    assert wait_until(lambda: pi.script_status(script_id)[0] == pigpio.PI_SCRIPT_HALTED)
    _status, parameters = pi.script_status(script_id)
    assert parameters[:4] == (7, 12, 2, 0)
    assert pi.get_PWM_dutycycle(FORWARD_PIN) == 64
    pi.delete_script(script_id)
    assert pi.script_status(script_id)[0] == pigpio.PI_BAD_SCRIPT_ID


def test_a_running_script_sees_parameter_updates_and_outlives_its_client(virtual_rig: VirtualRig) -> None:
    client = pigpio.pi(virtual_rig.host, virtual_rig.port, show_errors=False)
    script_id = client.store_script(b"tag 0 mils 5 lda p0 sta p1 jmp 0")
    assert wait_until(lambda: client.script_status(script_id)[0] == pigpio.PI_SCRIPT_HALTED)
    client.run_script(script_id, [3])
    client.update_script(script_id, [41])
    assert wait_until(lambda: client.script_status(script_id)[1][1] == 41)
    with pytest.raises(pigpio.error, match="script initialising"):  # pigpiod's text for "not halted"
        client.run_script(script_id)
    client.stop()
    observer = pigpio.pi(virtual_rig.host, virtual_rig.port, show_errors=False)
    try:
        assert observer.script_status(script_id)[0] == pigpio.PI_SCRIPT_RUNNING
        assert virtual_rig.state().running_scripts == 1
        observer.stop_script(script_id)
        assert observer.script_status(script_id)[0] == pigpio.PI_SCRIPT_HALTED
    finally:
        observer.stop()


def test_scripts_pigpiod_would_refuse_are_refused(pi: pigpio.pi) -> None:
    with pytest.raises(pigpio.error, match="illegal script command"):
        pi.store_script(b"tag 1 frobnicate 3")
    with pytest.raises(pigpio.error, match="unresolved tag"):
        pi.store_script(b"jmp 4")
    with pytest.raises(pigpio.error, match="duplicate tag"):
        pi.store_script(b"tag 1 tag 1")
    with pytest.raises(pigpio.error, match="unknown script id"):
        pi.run_script(31)


def test_the_deadman_script_parses_in_both_bridge_modes() -> None:
    from raas_node.drivers.config import BridgeMode, RigWiring

    for wiring in (RigWiring(), RigWiring(bridge_mode=BridgeMode.PWM_DIRECTION)):
        program = parse_script(deadman_script(wiring, missed_checks=7, check_interval_ms=20))
        pwm_pins = [instruction.operands[0].value for instruction in program.instructions if instruction.name == "PWM"]
        assert pwm_pins == list(wiring.pwm_pins)
    with pytest.raises(ScriptError):
        parse_script("ld 3 4")  # a register is needed


def wait_for_line(process: subprocess.Popen[str], pattern: str, timeout_s: float = 10.0) -> re.Match[str]:
    assert process.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        if selector.select(timeout=deadline - time.monotonic()):
            line = process.stderr.readline()
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
    raise AssertionError(f"no line matching {pattern!r} in {seen}")


def test_command_line_rig_serves_a_pigpio_client_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "raas_node.virtual_rig", "--port", "0", "--initial-angle-rad", "2.0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(wait_for_line(process, r"listening on 127\.0\.0\.1:(\d+)").group(1))
        client = pigpio.pi("127.0.0.1", port, show_errors=False)
        try:
            assert client.connected
            first = client.get_current_tick()
            assert pigpio.tickDiff(first, client.get_current_tick()) >= 0
        finally:
            client.stop()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
