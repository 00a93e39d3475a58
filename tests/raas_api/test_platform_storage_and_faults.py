"""The local platform's wiring to the world around it: results in S3 through an outage, users'
requirements.txt, and robots that fail mid-run (pigpio driver on virtual rigs)."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from polling import wait_until
from s3_server import S3Server, running_s3_server
from wheels import make_wheel

from gym_raas.results.layout import ResultFile, result_key
from gym_raas.results.store import S3ResultStore
from raas_api.local.platform import Isolation, LocalPlatform, PlatformConfig
from raas_api.local.results import S3Settings
from raas_api.local.robots import RobotKind
from raas_operator.jobs.model import FailureClass, JobSpec, Phase

SHORT_RUN = """
    import gymnasium as gym
    import numpy as np
    import gym_raas
    env = gym.make("RaasPendulum-v0", max_episode_steps={steps})
    env.reset()
    for step in range({steps}):
        env.step(np.array([0.5], dtype=np.float32))
    env.close()
    print("ran", {steps}, "steps")
"""


def controller(tmp_path: Path, steps: int = 20, *, extra: dict[str, str] | None = None) -> Path:
    folder = tmp_path / f"controller-{steps}"
    folder.mkdir()
    (folder / "run.py").write_text(textwrap.dedent(SHORT_RUN.format(steps=steps)))
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


def job(owner: str, folder: Path) -> JobSpec:
    return JobSpec.model_validate({"owner": owner, "source": {"kind": "local", "path": str(folder)}})


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


def s3_settings(server: S3Server) -> S3Settings:
    return S3Settings(endpoint=server.endpoint, access_key="raas", secret_key="raas-secret", secure=False)


@pytest.mark.slow
def test_results_go_to_s3_and_an_outage_is_spooled_reported_and_uploaded_later(
    s3_server: S3Server, tmp_path: Path
) -> None:
    settings = s3_settings(s3_server)
    config = PlatformConfig(data_dir=tmp_path / "platform", robots=1, s3=settings, spool_flush_interval_s=0.2)
    bucket = S3ResultStore(settings.endpoint, settings.access_key, settings.secret_key, settings.bucket, secure=False)
    with LocalPlatform(config) as platform:
        first = platform.wait(platform.submit(job("ada", controller(tmp_path))).job_id, timeout_s=90)
        assert first.status.phase is Phase.SUCCEEDED, first.status
        assert first.status.results_pending == 0
        assert bucket.exists(result_key(first.job_id, ResultFile.METADATA))
        assert bucket.exists(result_key(first.job_id, ResultFile.CODE))

        s3_server.stop()  # the store goes away before the next job is even fetched
        try:
            second = platform.wait(platform.submit(job("ada", controller(tmp_path, 30))).job_id, timeout_s=90)
            assert second.status.phase is Phase.SUCCEEDED, second.status
            assert second.status.results_pending >= len(ResultFile) - 1
            assert "spool" in second.status.message
            # Readable meanwhile, from the spool.
            assert b"ran 30 steps" in platform.results.get_bytes(result_key(second.job_id, ResultFile.STDOUT))
        finally:
            s3_server.start()
        wait_until(lambda: platform.get(second.job_id).status.results_pending == 0, timeout_s=30)
        uploaded = platform.get(second.job_id).status
        assert "spool" not in uploaded.message
        for result in ResultFile:
            assert bucket.exists(result_key(second.job_id, result)), result
        assert b"ran 30 steps" in bucket.get_bytes(result_key(second.job_id, ResultFile.STDOUT))


@pytest.mark.slow
def test_requirements_are_resolved_while_fetching_installed_offline_and_cached(tmp_path: Path) -> None:
    index = tmp_path / "index"
    make_wheel(index)
    greeting = "import tinypkg\nprint(tinypkg.GREETING)\n"
    folder = controller(tmp_path, 5, extra={"requirements.txt": "tinypkg==1.0\n"})
    (folder / "run.py").write_text(greeting + (folder / "run.py").read_text())
    config = PlatformConfig(
        data_dir=tmp_path / "platform", robots=1, pip_index_arguments=("--no-index", "--find-links", str(index))
    )
    with LocalPlatform(config) as platform:
        first = platform.wait(platform.submit(job("ada", folder)).job_id, timeout_s=90)
        assert first.status.phase is Phase.SUCCEEDED, first.status
        assert first.status.requirements
        assert b"hello from tinypkg 1.0" in platform.results.get_bytes(result_key(first.job_id, ResultFile.STDOUT))
        shutil.rmtree(index)  # a resubmission pays for nothing: the wheelhouse and the install are cached
        second = platform.wait(platform.submit(job("ada", folder)).job_id, timeout_s=90)
        assert second.status.phase is Phase.SUCCEEDED, second.status

        (folder / "requirements.txt").write_text("tinypkg==2.0\n")  # not in any index
        third = platform.wait(platform.submit(job("ada", folder)).job_id, timeout_s=90)
        assert third.status.phase is Phase.FAILED
        assert third.status.failure_class is FailureClass.USER_ERROR
        assert third.status.reason == "RequirementsFailed"
        assert "requirements.txt cannot be resolved" in third.status.message


@pytest.mark.slow
def test_a_robot_that_fails_mid_run_is_excluded_and_the_job_retried_once_on_another(tmp_path: Path) -> None:
    config = PlatformConfig(data_dir=tmp_path / "platform", robots=2, robot_kind=RobotKind.VIRTUAL_RIG)
    with LocalPlatform(config) as platform:
        record = platform.submit(job("ada", controller(tmp_path, 250)))

        def well_under_way() -> bool:
            steps = platform.steps_run(record)
            return platform.get(record.job_id).status.phase is Phase.RUNNING and steps is not None and steps > 20

        assert wait_until(well_under_way, timeout_s=60)
        first_robot = platform.get(record.job_id).status.robot
        assert first_robot is not None
        rig = platform.robot_parts[first_robot].rig
        assert rig is not None
        rig.stop()  # the robot's pigpiod dies mid-run: a robot fault
        done = platform.wait(record.job_id, timeout_s=120)
        assert done.status.phase is Phase.SUCCEEDED, done.status
        assert done.status.robot != first_robot
        assert done.status.attempts == 2
        assert done.status.excluded_robots == (first_robot,)
        retries = [change for change in done.status.history if "retrying once on another robot" in change.message]
        assert len(retries) == 1
        assert retries[0].phase is Phase.QUEUED
        assert done.status.summary is not None
        assert done.status.summary.steps == 250
        faulty = next(robot for robot in platform.robots() if robot.name == first_robot)
        assert not faulty.schedulable  # nothing more is sent to the robot that failed


def _podman_usable() -> bool:
    import os

    return os.geteuid() == 0 and shutil.which("podman") is not None and shutil.which("debootstrap") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _podman_usable(), reason="container isolation needs root, podman and debootstrap")
def test_container_isolation_runs_the_controller_in_podman_against_the_robot(tmp_path: Path) -> None:
    folder = controller(tmp_path, 25)
    (folder / "run.py").write_text(
        "import os, socket\n"
        "print('uid', os.getuid())\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "    print('network: reachable')\n"
        "except OSError:\n"
        "    print('network: none')\n" + (folder / "run.py").read_text()
    )
    config = PlatformConfig(data_dir=tmp_path / "platform", robots=1, isolation=Isolation.CONTAINER)
    with LocalPlatform(config) as platform:
        done = platform.wait(platform.submit(job("ada", folder)).job_id, timeout_s=300)
        assert done.status.phase is Phase.SUCCEEDED, done.status
        assert done.status.summary is not None
        assert done.status.summary.steps == 25  # the robot was driven from inside the container
        stdout = platform.results.get_bytes(result_key(done.job_id, ResultFile.STDOUT)).decode()
        assert "uid 65534" in stdout
        assert "network: none" in stdout


SLOW_TO_CONNECT = """
    import time
    time.sleep({delay})  # thinking before it opens the robot session
    import gymnasium as gym
    import numpy as np
    import gym_raas
    env = gym.make("RaasPendulum-v0", max_episode_steps=10)
    env.reset()
    for step in range(10):
        env.step(np.array([0.5], dtype=np.float32))
    env.close()
"""


@pytest.mark.slow
def test_a_job_its_robot_turns_away_is_the_robots_fault_and_is_retried_elsewhere(tmp_path: Path) -> None:
    """A lab puts a robot into maintenance after a job was given it but before the job opened its
    session: the agent refuses the session, the controller exits with an error, and that is the
    robot's doing, not the user's."""
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "run.py").write_text(textwrap.dedent(SLOW_TO_CONNECT.format(delay=3)))
    with LocalPlatform(PlatformConfig(data_dir=tmp_path / "platform", robots=2)) as platform:
        record = platform.submit(job("ada", folder))
        assert wait_until(lambda: platform.get(record.job_id).status.phase is Phase.RUNNING, timeout_s=60)
        first_robot = platform.get(record.job_id).status.robot
        assert first_robot is not None
        platform.set_maintenance(first_robot, True)
        done = platform.wait(record.job_id, timeout_s=120)
        assert done.status.phase is Phase.SUCCEEDED, done.status
        assert done.status.attempts == 2
        assert done.status.robot != first_robot
        retries = [change for change in done.status.history if "retrying once on another robot" in change.message]
        assert len(retries) == 1, done.status.history
        retry = retries[0]
        assert retry.reason == "RobotFault"
        assert f"robot {first_robot} refused the session" in retry.message
        assert "maintenance" in retry.message
