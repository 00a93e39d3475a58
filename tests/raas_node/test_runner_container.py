"""The container launcher with real podman: the subprocess launcher's contract (every way a
program ends gets its verdict), plus what only a container gives strangers' code — no network,
a read-only root, uid 65534 without capabilities — while the robot agent's socket still works.

The runtime image is built once per machine (debootstrap + podman build, a few minutes the first
time, cached in ``~/.cache/raas/images`` and podman's storage); the tests skip only when podman
cannot run containers at all (not root, or podman missing).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_fixtures import running_agent
from podman_checks import podman_unusable, request_for
from polling import wait_until

from gym_raas.params import PendulumParams
from raas_node.drivers.sim_driver import SimDriver
from raas_node.runner.container import (
    CONTAINER_AGENT_SOCKET,
    NAME_PREFIX,
    OWNER_LABEL,
    ContainerShape,
    job_environment,
    plan_container,
    reap_containers,
    run_in_container,
)
from raas_node.runner.container_starter import encode_job
from raas_node.runner.image import IMAGE_PYTHON, ensure_runtime_image
from raas_node.runner.launch import RunLimits, RunOutcome, RunRequest, RunVerdict
from raas_node.runner.warm_pool import ContainerPool

OWNER = f"test-{uuid.uuid4().hex[:12]}"
"""The owner label of this test session's containers."""
FAST = RunLimits(time_limit_s=30, memory_bytes=512 * 1024**2, max_processes=32, max_output_bytes=64 * 1024)


@pytest.fixture(scope="session")
def image() -> str:
    """The runtime image, built once per machine (then found by its content tag)."""
    reason = podman_unusable()
    if reason is not None:
        pytest.skip(reason)
    return ensure_runtime_image()


@pytest.fixture(autouse=True)
def _no_leftover_containers() -> Iterator[None]:
    """Every container these tests start carries `OWNER` (others may be running on the machine)."""
    yield
    if shutil.which("podman") is not None and os.geteuid() == 0:
        leftovers = owned_containers()
        reap_containers(OWNER)
        assert leftovers == [], f"run containers left behind: {leftovers}"


def owned_containers(owner: str = OWNER) -> list[str]:
    """Names of the containers labelled with `owner`, running or not (``podman ps --all``)."""
    listing = subprocess.run(
        ["podman", "ps", "--all", "--filter", f"label={OWNER_LABEL}={owner}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listing.stdout.split()


def run(
    tmp_path: Path,
    image: str,
    source: str,
    limits: RunLimits = FAST,
    cancel: threading.Event | None = None,
    **request: object,
) -> RunOutcome:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "run.py").write_text(textwrap.dedent(source))
    return run_in_container(
        RunRequest(
            code_dir=code,
            entrypoint="run.py",
            scratch_dir=tmp_path / "scratch",
            stdout_path=tmp_path / "stdout.txt",
            stderr_path=tmp_path / "stderr.txt",
            limits=limits,
            **request,  # type: ignore[arg-type]
        ),
        cancel,
        image,
        owner=OWNER,
    )


def stdout(tmp_path: Path) -> str:
    return (tmp_path / "stdout.txt").read_text()


def test_a_clean_exit_completes_and_stdout_and_stderr_are_captured_separately(tmp_path: Path, image: str) -> None:
    outcome = run(tmp_path, image, "import sys\nprint('hello')\nprint('warning', file=sys.stderr)\n")
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    assert outcome.exit_code == 0
    assert stdout(tmp_path) == "hello\n"
    assert (tmp_path / "stderr.txt").read_text() == "warning\n"


def test_an_exception_is_a_nonzero_exit_whose_message_names_the_error(tmp_path: Path, image: str) -> None:
    outcome = run(tmp_path, image, "raise ValueError('controller diverged')\n")
    assert outcome.verdict is RunVerdict.NONZERO_EXIT
    assert outcome.exit_code == 1
    assert "ValueError: controller diverged" in outcome.message


def test_an_explicit_exit_status_is_reported(tmp_path: Path, image: str) -> None:
    outcome = run(tmp_path, image, "import sys\nsys.exit(3)\n")
    assert outcome.verdict is RunVerdict.NONZERO_EXIT
    assert outcome.exit_code == 3


def test_an_infinite_loop_is_stopped_at_the_time_limit(tmp_path: Path, image: str) -> None:
    limits = RunLimits(time_limit_s=2, memory_bytes=512 * 1024**2, max_processes=32)
    outcome = run(tmp_path, image, "while True:\n    pass\n", limits)
    assert outcome.verdict is RunVerdict.TIME_LIMIT
    assert "time limit of 2 s" in outcome.message
    assert outcome.duration_s < 15


def test_cancelling_stops_the_run_at_once(tmp_path: Path, image: str) -> None:
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    outcome = run(tmp_path, image, "import time\nprint('started', flush=True)\ntime.sleep(120)\n", cancel=cancel)
    assert outcome.verdict is RunVerdict.CANCELLED
    assert outcome.duration_s < 15


def test_a_memory_hog_is_killed_at_the_memory_limit(tmp_path: Path, image: str) -> None:
    limits = RunLimits(time_limit_s=30, memory_bytes=256 * 1024**2, max_processes=32)
    outcome = run(tmp_path, image, "blocks = []\nwhile True:\n    blocks.append(bytearray(20 * 1024 * 1024))\n", limits)
    assert outcome.verdict is RunVerdict.MEMORY_LIMIT, outcome.message
    assert "256 MiB" in outcome.message


def test_a_program_killing_itself_is_not_mistaken_for_a_memory_kill(tmp_path: Path, image: str) -> None:
    outcome = run(tmp_path, image, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert outcome.verdict is RunVerdict.KILLED_BY_SIGNAL, outcome.message
    assert outcome.exit_code == -9
    assert "SIGKILL" in outcome.message


def test_a_fork_bomb_hits_the_process_limit(tmp_path: Path, image: str) -> None:
    limits = RunLimits(time_limit_s=20, memory_bytes=512 * 1024**2, max_processes=16)
    source = """
        import os, time
        while True:
            if os.fork() == 0:
                time.sleep(120)
                os._exit(0)
    """
    outcome = run(tmp_path, image, source, limits)
    assert outcome.verdict is RunVerdict.PROCESS_LIMIT, outcome.message
    assert "more than 16 processes" in outcome.message


def test_huge_output_is_cut_at_the_limit_and_the_run_stopped(tmp_path: Path, image: str) -> None:
    outcome = run(tmp_path, image, "while True:\n    print('x' * 1000)\n")
    assert outcome.verdict is RunVerdict.OUTPUT_LIMIT
    assert (tmp_path / "stdout.txt").stat().st_size == FAST.max_output_bytes


def test_a_file_cannot_grow_past_the_file_size_limit(tmp_path: Path, image: str) -> None:
    limits = RunLimits(time_limit_s=20, memory_bytes=512 * 1024**2, max_processes=16, max_file_bytes=1024**2)
    source = """
        import os
        try:
            open("big.bin", "wb").write(bytes(2 * 1024**2))
        finally:
            print(os.path.getsize("big.bin"))
    """
    outcome = run(tmp_path, image, source, limits)
    # Python ignores SIGXFSZ, so the write fails with EFBIG (as under the subprocess launcher).
    assert outcome.verdict is RunVerdict.NONZERO_EXIT
    assert "File too large" in outcome.message
    assert int(stdout(tmp_path)) <= 1024**2


def test_the_run_has_no_network_not_even_the_hosts_loopback(tmp_path: Path, image: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        source = f"""
            import socket
            for address in [("1.1.1.1", 53), ("127.0.0.1", {port})]:
                try:
                    socket.create_connection(address, timeout=3).close()
                    print(address, "reached")
                except OSError as error:
                    print(address, "unreachable", type(error).__name__)
        """
        outcome = run(tmp_path, image, source)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    lines = stdout(tmp_path).splitlines()
    assert len(lines) == 2
    assert all("unreachable" in line for line in lines), lines


def test_the_root_file_system_is_read_only_and_the_scratch_folder_writable(tmp_path: Path, image: str) -> None:
    source = """
        import os
        print(bool(os.statvfs("/").f_flag & os.ST_RDONLY))
        try:
            open("/usr/evil.py", "w")
        except OSError as error:
            print(type(error).__name__)
        open("result.csv", "w").write("1,2\\n")
        open("/tmp/t", "w").write("tmp is writable")
        print(os.getcwd(), os.environ["HOME"], open("result.csv").read().strip(), sorted(os.listdir()))
    """
    outcome = run(tmp_path, image, source)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    read_only, error, where = stdout(tmp_path).splitlines()
    assert read_only == "True"
    assert error in ("OSError", "PermissionError")
    assert where == "/scratch/work /scratch 1,2 ['result.csv', 'run.py']"
    assert not (tmp_path / "code" / "result.csv").exists()
    assert not (tmp_path / "scratch").exists()  # the scratch was the container's: nothing stays on the host


def test_the_run_is_uid_65534_without_capabilities_or_new_privileges(tmp_path: Path, image: str) -> None:
    source = """
        import os
        print(os.getuid(), os.getgid(), os.getgroups())
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"):
            print(key, status[key].strip())
    """
    outcome = run(tmp_path, image, source)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    ids, *capabilities = stdout(tmp_path).splitlines()
    uid, gid, groups = ids.split(maxsplit=2)
    assert (uid, gid) == ("65534", "65534")
    assert groups in ("[]", "[65534]")  # at most its own primary group
    values = dict(line.split() for line in capabilities)
    assert values.pop("NoNewPrivs") == "1"
    assert set(values.values()) == {"0000000000000000"}


def test_the_environment_holds_no_host_secrets(tmp_path: Path, image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("RAAS_API_TOKEN", "do-not-leak")
    source = "import os, json\nprint(json.dumps(dict(os.environ)))\n"
    outcome = run(tmp_path, image, source, environment={"RAAS_SESSION_TOKEN": "job-token"})
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    environment = json.loads(stdout(tmp_path))
    assert "do-not-leak" not in json.dumps(environment)
    assert environment["RAAS_SESSION_TOKEN"] == "job-token"
    assert environment["HOME"] == "/scratch"
    assert "AWS_SECRET_ACCESS_KEY" not in environment


def test_the_session_token_is_not_on_podmans_command_line(tmp_path: Path) -> None:
    request = RunRequest(
        tmp_path / "code",
        "run.py",
        tmp_path / "scratch",
        tmp_path / "o.txt",
        tmp_path / "e.txt",
        environment={"RAAS_SESSION_TOKEN": "secret-token", "RAAS_AGENT_SOCKET": "/tmp/a/agent.sock"},
    )
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "run.py").write_text("print('hi')\n")
    arguments = plan_container(ContainerShape.of(request), "localhost/raas-runtime:x", f"{NAME_PREFIX}test")
    assert "secret-token" not in " ".join(arguments)
    assert f"type=bind,source=/tmp/a/agent.sock,target={CONTAINER_AGENT_SOCKET}" in arguments
    for flag in ("--network", "--read-only", "--cap-drop", "--pids-limit", "--memory", "--memory-swap", "--user"):
        assert flag in arguments
    # The token goes to the container's starter through its stdin, with the rewritten socket path.
    job = encode_job(request.entrypoint, job_environment(request), IMAGE_PYTHON, request.code_dir)
    assert b'"RAAS_SESSION_TOKEN": "secret-token"' in job
    assert f'"RAAS_AGENT_SOCKET": "{CONTAINER_AGENT_SOCKET}"'.encode() in job


def test_gym_raas_is_importable_and_simulates_inside(tmp_path: Path, image: str) -> None:
    source = """
        import gymnasium as gym
        import gym_raas
        env = gym.make("RaasPendulum-v0")
        observation, info = env.reset(seed=0)
        for _ in range(20):
            observation, reward, terminated, truncated, info = env.step([0.5])
        print(gym_raas.__name__, observation.shape)
    """
    outcome = run(tmp_path, image, source)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    assert stdout(tmp_path) == "gym_raas (3,)\n"


def test_python_path_folders_are_importable_and_read_only(tmp_path: Path, image: str) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "helper_module.py").write_text("ANSWER = 42\n")
    site.chmod(0o755)
    source = """
        import helper_module
        print(helper_module.ANSWER)
        try:
            open(helper_module.__file__, "a")
        except OSError as error:
            print(type(error).__name__)
    """
    outcome = run(tmp_path, image, source, python_path=[site])
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    answer, error = stdout(tmp_path).splitlines()
    assert answer == "42"
    assert error in ("OSError", "PermissionError")


def test_the_run_talks_to_a_unix_socket_server_on_the_host(tmp_path: Path, image: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="raas-sock-", dir="/tmp"))  # short: socket paths max 107 bytes
    path = folder / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    path.chmod(0o600)  # as an agent running as root would leave it: the launcher must open it to 65534
    server.listen(1)
    server.settimeout(30)

    def echo_once() -> None:
        connection, _ = server.accept()
        with connection:
            connection.sendall(b"echo:" + connection.recv(1024))

    echo = threading.Thread(target=echo_once, daemon=True)
    echo.start()
    source = """
        import os, socket
        path = os.environ["RAAS_AGENT_SOCKET"]
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(path)
        client.sendall(b"hello agent")
        print(path, client.recv(1024).decode())
    """
    try:
        outcome = run(tmp_path, image, source, environment={"RAAS_AGENT_SOCKET": str(path)})
        echo.join(timeout=10)
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    assert stdout(tmp_path) == f"{CONTAINER_AGENT_SOCKET} echo:hello agent\n"


def test_a_controller_in_the_container_drives_the_robot_agent_on_the_host(tmp_path: Path, image: str) -> None:
    """The real agent (simulated robot, real time) behind the mounted socket, gym_raas's robot backend inside."""
    source = """
        import gymnasium as gym
        import gym_raas
        env = gym.make("RaasPendulum-v0")
        observation, info = env.reset(seed=0)
        for _ in range(10):
            observation, reward, terminated, truncated, info = env.step([1.0])
        env.close()
        print(type(env.unwrapped.backend).__name__)
    """
    with running_agent(SimDriver(PendulumParams())) as agent:
        token = agent.expect("job-container")
        environment = {"RAAS_AGENT_SOCKET": str(agent.config.socket_path), "RAAS_SESSION_TOKEN": token}
        outcome = run(tmp_path, image, source, environment=environment)
        session = agent.end_job("job-container")
    assert outcome.verdict is RunVerdict.COMPLETED, (tmp_path / "stderr.txt").read_text()
    assert stdout(tmp_path) == "RobotBackend\n"
    assert session is not None
    assert session.steps == 10
    assert session.outcome == "completed"


def test_a_missing_image_is_a_launch_failure_that_says_so(tmp_path: Path, image: str) -> None:
    outcome = run(tmp_path, "localhost/raas-runtime:does-not-exist", "print('never')\n")
    assert outcome.verdict is RunVerdict.LAUNCH_FAILED
    assert "does not exist" in outcome.message
    assert "ensure_runtime_image" in outcome.message


def test_a_missing_agent_socket_is_a_launch_failure(tmp_path: Path, image: str) -> None:
    outcome = run(tmp_path, image, "print('never')\n", environment={"RAAS_AGENT_SOCKET": str(tmp_path / "none.sock")})
    assert outcome.verdict is RunVerdict.LAUNCH_FAILED
    assert "none.sock" in outcome.message


def test_a_finished_run_leaves_no_container_and_no_process(tmp_path: Path, image: str) -> None:
    limits = RunLimits(time_limit_s=2, memory_bytes=512 * 1024**2, max_processes=32)  # 16 + the init
    source = "import os, time\nfor _ in range(4):\n    os.fork()\ntime.sleep(120)\n"
    mark = uuid.uuid4().hex
    outcome = run(tmp_path, image, source, limits, environment={"RAAS_TEST_MARK": mark})
    assert outcome.verdict is RunVerdict.TIME_LIMIT
    assert owned_containers() == []
    time.sleep(0.2)
    assert processes_marked(mark) == []


def processes_marked(mark: str) -> list[str]:
    """Processes on this machine whose environment holds ``RAAS_TEST_MARK=<mark>`` (a run's, seen from the host)."""
    marked = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"RAAS_TEST_MARK={mark}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                marked.append(pid)
        except OSError:
            continue
    return marked


# -- the warm pool ---------------------------------------------------------------------------

SLOT = "robot-1"


@pytest.fixture
def pool(image: str) -> Iterator[ContainerPool]:
    with ContainerPool(image, owner=OWNER) as containers:
        yield containers


def warm_run(pool: ContainerPool, request: RunRequest, cancel: threading.Event | None = None) -> RunOutcome:
    """Run `request` in the slot's warm container (prepared for its limits), checking that it was warm."""
    pool.prepare(SLOT, limits=request.limits, agent_socket=request.environment.get("RAAS_AGENT_SOCKET"))
    assert pool.wait_ready(SLOT, timeout_s=120), "no warm container came up"
    warm_before = pool.warm_runs
    outcome = pool.run(request, cancel, slot=SLOT)
    assert pool.warm_runs == warm_before + 1, "the job did not run in the warm container"
    return outcome


def cancel_once_started(stdout_path: Path, cancel: threading.Event) -> None:
    """Set `cancel` as soon as the run has printed its first line."""

    def watch() -> None:
        wait_until(lambda: stdout_path.exists() and stdout_path.read_bytes().startswith(b"started"), timeout_s=120)
        cancel.set()

    threading.Thread(target=watch, daemon=True).start()


ENDINGS = {
    "completed": ("import sys\nprint('hello')\nprint('warning', file=sys.stderr)\n", FAST),
    "nonzero": ("raise ValueError('controller diverged')\n", FAST),
    "time-limit": ("while True:\n    pass\n", RunLimits(time_limit_s=2, memory_bytes=512 * 1024**2, max_processes=32)),
    "cancel": ("import time\nprint('started', flush=True)\ntime.sleep(120)\n", FAST),
    "oom": (
        "blocks = []\nwhile True:\n    blocks.append(bytearray(20 * 1024 * 1024))\n",
        RunLimits(time_limit_s=30, memory_bytes=256 * 1024**2, max_processes=32),
    ),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_a_warm_run_ends_exactly_as_a_cold_one(tmp_path: Path, image: str, pool: ContainerPool, ending: str) -> None:
    source, limits = ENDINGS[ending]
    outcomes = []
    for kind in ("cold", "warm"):
        request = request_for(tmp_path / kind, source, limits)
        cancel = threading.Event()
        if ending == "cancel":
            cancel_once_started(request.stdout_path, cancel)
        if kind == "cold":
            outcomes.append(run_in_container(request, cancel, image, owner=OWNER))
        else:
            outcomes.append(warm_run(pool, request, cancel))
    cold, warm = outcomes
    assert (warm.verdict, warm.exit_code, warm.message) == (cold.verdict, cold.exit_code, cold.message)
    assert (warm.stdout_bytes, warm.stderr_bytes) == (cold.stdout_bytes, cold.stderr_bytes)
    assert (tmp_path / "warm" / "stdout.txt").read_bytes() == (tmp_path / "cold" / "stdout.txt").read_bytes()
    assert not (tmp_path / "warm" / "scratch").exists()


def test_a_warm_container_serves_one_job_and_the_pool_refills(tmp_path: Path, pool: ContainerPool) -> None:
    source = """
        import os, socket
        print(socket.gethostname(), sorted(os.listdir("/scratch/work")), sorted(os.listdir("/tmp")))
        open("/scratch/work/left-behind", "w").write("secret of the previous job")
        open("/tmp/left-behind", "w").write("secret of the previous job")
    """
    seen = []
    for index in range(2):
        request = request_for(tmp_path / str(index), source, FAST)
        outcome = warm_run(pool, request)
        assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
        seen.append((tmp_path / str(index) / "stdout.txt").read_text().split(maxsplit=1))
        assert pool.wait_ready(SLOT, timeout_s=120), "the pool did not refill"
    (first_host, first_files), (second_host, second_files) = seen
    assert first_host != second_host  # another container
    assert first_files == second_files == "['run.py'] []\n"  # nothing of the previous job
    # Only the waiting one stays: both used ones are removed (in the background).
    assert wait_until(lambda: len(owned_containers()) == 1, timeout_s=60, interval_s=0.2), owned_containers()


def test_a_job_no_warm_container_fits_runs_cold_with_its_own_limits(tmp_path: Path, pool: ContainerPool) -> None:
    pool.prepare(SLOT, limits=FAST)
    assert pool.wait_ready(SLOT, timeout_s=120)
    bigger = RunLimits(time_limit_s=30, memory_bytes=768 * 1024**2, max_processes=32)
    source = "print(open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip())\n"
    outcome = pool.run(request_for(tmp_path, source, bigger), slot=SLOT)
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    assert (pool.warm_runs, pool.cold_runs) == (0, 1)
    assert stdout(tmp_path) == f"{768 * 1024**2}\n"
    assert pool.ready(SLOT)  # the prepared container still waits for a job of its shape


def test_closing_the_pool_leaves_no_container(tmp_path: Path, image: str) -> None:
    pool = ContainerPool(image, owner=OWNER)
    for slot in ("robot-1", "robot-2"):
        pool.prepare(slot, limits=FAST)
    for slot in ("robot-1", "robot-2"):
        assert pool.wait_ready(slot, timeout_s=120)
    outcome = pool.run(request_for(tmp_path, "print('once')\n", FAST), slot="robot-1")
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    pool.close()
    assert owned_containers() == []


def test_a_controller_in_a_warm_container_drives_the_robot_agent(tmp_path: Path, pool: ContainerPool) -> None:
    source = """
        import gymnasium as gym
        import gym_raas
        env = gym.make("RaasPendulum-v0")
        env.reset(seed=0)
        for _ in range(10):
            env.step([1.0])
        env.close()
        print(type(env.unwrapped.backend).__name__)
    """
    with running_agent(SimDriver(PendulumParams())) as agent:
        token = agent.expect("job-warm")
        environment = {"RAAS_AGENT_SOCKET": str(agent.config.socket_path), "RAAS_SESSION_TOKEN": token}
        outcome = warm_run(pool, request_for(tmp_path, source, FAST, environment=environment))
        session = agent.end_job("job-warm")
    assert outcome.verdict is RunVerdict.COMPLETED, (tmp_path / "stderr.txt").read_text()
    assert stdout(tmp_path) == "RobotBackend\n"
    assert session is not None
    assert session.steps == 10
