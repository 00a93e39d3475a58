"""A job cannot reach a virtual rig's pigpiod port (security issue 12, item 6).

With ``raas serve --robot-kind virtual-rig`` each robot is a pigpiod-compatible `VirtualRig` on
127.0.0.1. A job found the rigs' ports, deleted the dead-man scripts and set full PWM: both
robots faulted. pigpiod's protocol has no authentication, so the rig must be out of a job's
reach altogether; the job sandboxes give every run a network namespace of its own (the process
launcher) or none at all (``--network none`` containers).

The tests are a job's-eye view: a hostile program, run the way the platform runs jobs, tries to
connect to a running rig and command full PWM on its bridge pin. The same program run directly
on the host does reach the rig (the control test), so a pass means the launcher kept it out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from podman_checks import podman_unusable

from raas_node.runner.container import run_in_container
from raas_node.runner.image import IMAGE_PYTHON, ensure_runtime_image
from raas_node.runner.launch import RunLimits, RunOutcome, RunRequest, RunVerdict, run_entrypoint
from raas_node.virtual_rig import VirtualRig

LIMITS = RunLimits(time_limit_s=60, memory_bytes=1024**3, max_processes=32, max_output_bytes=64 * 1024)

HOSTILE = """\
import json, socket, struct

report = {{"connected": False, "replies": 0, "error": ""}}
try:
    with socket.create_connection(("127.0.0.1", {port}), timeout=3) as rig:
        report["connected"] = True
        rig.settimeout(3)
        # pigpiod requests: MODES(pin, output), then PWM(pin, 255 = full duty)
        for command in ((0, {pin}, 1, 0), (5, {pin}, 255, 0)):
            rig.sendall(struct.pack("<IIII", *command))
            if len(rig.recv(16)) != 16:
                break
            report["replies"] += 1
except OSError as error:
    report["error"] = type(error).__name__ + ": " + str(error)
print(json.dumps(report))
"""


@pytest.fixture
def rig() -> Iterator[VirtualRig]:
    rig = VirtualRig(host="127.0.0.1", port=0).start()
    yield rig
    rig.stop()


def write_hostile_program(folder: Path, rig: VirtualRig) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.py").write_text(HOSTILE.format(port=rig.port, pin=rig.wiring.forward_pwm_pin))
    return folder


def request(tmp_path: Path, rig: VirtualRig, python: str) -> RunRequest:
    return RunRequest(
        code_dir=write_hostile_program(tmp_path / "code", rig),
        entrypoint="run.py",
        scratch_dir=tmp_path / "scratch",
        stdout_path=tmp_path / "stdout.txt",
        stderr_path=tmp_path / "stderr.txt",
        limits=LIMITS,
        python_executable=python,
    )


def report_of(tmp_path: Path, outcome: RunOutcome) -> dict[str, object]:
    """The hostile program's report (it must have run to the end for the test to mean anything)."""
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    report: dict[str, object] = json.loads((tmp_path / "stdout.txt").read_text())
    return report


def assert_rig_untouched(rig: VirtualRig, report: dict[str, object]) -> None:
    assert report["replies"] == 0, f"the job talked to the rig: {report}"
    state = rig.state()
    assert state.motor_duty == 0.0
    assert not state.pin_duty.get(rig.wiring.forward_pwm_pin)


def test_the_hostile_program_reaches_a_rig_when_run_on_the_host(tmp_path: Path, rig: VirtualRig) -> None:
    """The control: outside a sandbox the program connects and sets full duty."""
    folder = write_hostile_program(tmp_path / "code", rig)
    ran = subprocess.run([sys.executable, "run.py"], cwd=folder, capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(ran.stdout)
    assert report["replies"] == 2, report
    assert rig.state().pin_duty.get(rig.wiring.forward_pwm_pin) == pytest.approx(1.0)


def test_a_job_run_by_the_process_launcher_cannot_reach_the_rig(tmp_path: Path, rig: VirtualRig) -> None:
    """As root (how a platform serving others runs), the job runs under its own uid."""
    outcome = run_entrypoint(request(tmp_path, rig, sys.executable))
    assert_rig_untouched(rig, report_of(tmp_path, outcome))


def test_a_job_run_in_a_container_cannot_reach_the_rig(tmp_path: Path, rig: VirtualRig) -> None:
    reason = podman_unusable()
    if reason is not None:
        pytest.skip(reason)  # the container isolation level does not exist on this machine
    outcome = run_in_container(request(tmp_path, rig, IMAGE_PYTHON), None, ensure_runtime_image())
    assert_rig_untouched(rig, report_of(tmp_path, outcome))
