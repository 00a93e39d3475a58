"""Attacks on the container isolation level (security issue 12, items 9 and 10), with real podman.

* Disk: a job wrote 2 GB of scratch, which stayed on the host after it ended. A container's job
  now writes only to size-limited tmpfs (scratch, /tmp, /dev/shm), and its host scratch folder
  is removed when it ends.
* Orphans: a job outlived ``kill -9`` of its server (47 s past its 20 s limit) and its retry ran
  beside it. Every container is labelled with its platform instance, `reap_containers` removes a
  dead instance's containers, and a container is killed shortly after its time limit even when
  nothing supervises it any more.

Each test's own containers carry a label of this test session; they are all removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from podman_checks import podman_unusable, request_for

from raas_node.runner.container import OWNER_LABEL, reap_containers, run_in_container
from raas_node.runner.image import ensure_runtime_image
from raas_node.runner.launch import RunLimits, RunVerdict

OWNER = f"test-sandbox-{uuid.uuid4().hex[:12]}"
MiB = 1024**2


@pytest.fixture(scope="session")
def image() -> str:
    """The runtime image, built once per machine (then found by its content tag)."""
    reason = podman_unusable()
    if reason is not None:
        pytest.skip(reason)
    return ensure_runtime_image()


@pytest.fixture(autouse=True)
def _no_leftover_containers() -> Iterator[None]:
    yield
    if shutil.which("podman") is not None and os.geteuid() == 0:
        leftovers = containers(OWNER)
        reap_containers(OWNER)
        assert leftovers == [], f"containers left behind: {leftovers}"


def containers(owner: str, *, running_only: bool = False) -> list[str]:
    """Names of the containers labelled with `owner`."""
    command = ["podman", "ps", "--filter", f"label={OWNER_LABEL}={owner}", "--format", "{{.Names}}"]
    if not running_only:
        command.insert(2, "--all")
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()


# -- item 9: disk --------------------------------------------------------------------------------


def test_a_job_cannot_fill_the_disk_past_its_scratch_space(tmp_path: Path, image: str) -> None:
    """Files each under the file-size limit, 640 MiB in all: the default scratch space is 512 MiB."""
    source = """
        import os
        written = 0
        try:
            for index in range(10):
                with open(f"part-{index}.bin", "wb") as part:
                    for _ in range(64):
                        part.write(bytes(1024**2))
                        written += 1024**2
        finally:
            print(written // 1024**2, flush=True)
    """
    request = request_for(tmp_path, source, RunLimits(time_limit_s=120))
    outcome = run_in_container(request, None, image, owner=OWNER)
    written_mib = int((tmp_path / "stdout.txt").read_text())
    assert written_mib <= 512
    assert outcome.verdict is RunVerdict.OUTPUT_LIMIT, outcome.message
    assert "ran out of disk space" in outcome.message
    assert not request.scratch_dir.exists()


def test_the_host_keeps_nothing_of_a_jobs_scratch(tmp_path: Path, image: str) -> None:
    source = """
        import os
        open("results.bin", "wb").write(bytes(4 * 1024**2))
        open(os.path.join(os.environ["HOME"], "cache.bin"), "wb").write(bytes(1024**2))
    """
    request = request_for(tmp_path, source, RunLimits(time_limit_s=60))
    outcome = run_in_container(request, None, image, owner=OWNER)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    assert not request.scratch_dir.exists()


def test_every_writable_place_is_a_bounded_tmpfs(tmp_path: Path, image: str) -> None:
    source = """
        import json, os
        places = {}
        for folder in ["/scratch", "/scratch/work", "/tmp", "/dev/shm", "/var/tmp", "/run", "/run/raas", "/", "/opt"]:
            try:
                with open(os.path.join(folder, "probe"), "w"):
                    pass
            except OSError:
                continue
            status = os.statvfs(folder)
            places[folder] = status.f_blocks * status.f_frsize
        print(json.dumps(places))
    """
    limits = RunLimits(time_limit_s=60, memory_bytes=512 * MiB)
    request = request_for(tmp_path, source, limits)
    outcome = run_in_container(request, None, image, owner=OWNER, scratch_bytes=8 * MiB)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    places = json.loads((tmp_path / "stdout.txt").read_text())
    assert sorted(places) == ["/dev/shm", "/scratch", "/scratch/work", "/tmp"]
    assert places["/scratch"] == places["/scratch/work"] == 8 * MiB
    assert places["/tmp"] == 128 * MiB  # a quarter of the memory limit
    assert places["/dev/shm"] <= 64 * MiB


# -- item 10: containers that outlive their server ------------------------------------------------

SERVER = """
import json, sys
from pathlib import Path
from raas_node.runner.container import run_in_container
from raas_node.runner.launch import RunLimits, RunRequest
from raas_node.runner.warm_pool import ContainerPool

settings = json.loads(sys.argv[1])
folder = Path(settings["folder"])
request = RunRequest(
    code_dir=folder / "code", entrypoint="run.py", scratch_dir=folder / "scratch",
    stdout_path=folder / "stdout.txt", stderr_path=folder / "stderr.txt",
    limits=RunLimits(time_limit_s=settings["time_limit_s"], memory_bytes=512 * 1024**2),
)
if settings["warm"]:
    pool = ContainerPool(settings["image"], owner=settings["owner"])
    pool.prepare("robot-1", limits=request.limits)
    assert pool.wait_ready("robot-1", timeout_s=120)
    pool.run(request, slot="robot-1")
else:
    run_in_container(request, None, settings["image"], owner=settings["owner"])
"""


def start_server_running_a_job(folder: Path, image: str, *, warm: bool, time_limit_s: float) -> subprocess.Popen[bytes]:
    """A child process that runs a job (printing ``started``, then spinning) in a container and
    is SIGKILLed once the job runs, as a server killed with ``kill -9``; returns the dead child."""
    request_for(folder, "print('started', flush=True)\nwhile True:\n    pass\n", RunLimits())
    settings = {"folder": str(folder), "image": image, "owner": OWNER, "warm": warm, "time_limit_s": time_limit_s}
    server = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(settings)])
    stdout = folder / "stdout.txt"
    deadline = time.monotonic() + 180
    while not (stdout.exists() and stdout.read_text().startswith("started")):
        assert server.poll() is None, "the server ended before its job started"
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    return server


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_reaping_removes_the_containers_of_a_killed_server(tmp_path: Path, image: str, warm: bool) -> None:
    start_server_running_a_job(tmp_path, image, warm=warm, time_limit_s=600)
    orphans = containers(OWNER, running_only=True)
    assert orphans, "the job should still be running: its server died, not it"
    reaped = reap_containers(OWNER)
    assert reaped >= 1
    assert containers(OWNER) == []
    assert not [pid for pid, command in processes() if any(name in command for name in orphans)]


def processes() -> list[tuple[int, str]]:
    """(pid, command line) of the processes on this machine."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found.append((int(pid), Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_container_dies_after_its_time_limit_with_no_server(tmp_path: Path, image: str, warm: bool) -> None:
    time_limit_s = 3.0
    start_server_running_a_job(tmp_path, image, warm=warm, time_limit_s=time_limit_s)
    job = containers(OWNER, running_only=True)
    assert job, "the job should be running when its server dies"
    deadline = time.monotonic() + 90  # far beyond the 3 s limit, the grace and the hard stop's margin
    while set(job) & set(containers(OWNER, running_only=True)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not set(job) & set(containers(OWNER, running_only=True)), "the job outlived its limit with no server"
    reap_containers(OWNER)  # what the restarted server does with what is left (exited containers)
