"""The local platform end to end: real agents on simulated robots in real time, the real
runner launching users' programs, results in the store."""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gym_raas.results.layout import ResultFile, result_key
from raas_api.local.platform import LocalPlatform, PlatformConfig, SubmissionRefusedError
from raas_operator.jobs.model import FailureClass, JobSpec, Phase
from raas_operator.scheduling.core import Quotas

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def job(owner: str, folder: Path, **changes: object) -> JobSpec:
    return JobSpec.model_validate({"owner": owner, "source": {"kind": "local", "path": str(folder)}, **changes})


def controller(tmp_path: Path, name: str, source: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "run.py").write_text(textwrap.dedent(source))
    return folder


SHORT_RUN = """
    import gymnasium as gym
    import numpy as np
    import gym_raas
    env = gym.make("RaasPendulum-v0", max_episode_steps=20)
    observation, info = env.reset()
    total = 0.0
    for _ in range(20):
        observation, reward, terminated, truncated, info = env.step(np.array([1.0], dtype=np.float32))
        total += float(reward)
    env.close()
    print("total reward", round(total, 2))
"""


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    config = PlatformConfig(data_dir=tmp_path / "platform", robots=3, quotas=Quotas(max_running_per_owner=2))
    with LocalPlatform(config) as running:
        yield running


@pytest.mark.slow
def test_the_example_controller_runs_on_a_simulated_robot_and_leaves_a_complete_bundle(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    folder = tmp_path / "swingup"
    shutil.copytree(EXAMPLES / "swingup", folder)
    record = platform.submit(job("ada", folder))
    done = platform.wait(record.job_id, timeout_s=120)
    assert done.status.phase is Phase.SUCCEEDED, done.status
    assert done.status.summary is not None
    assert done.status.summary.steps == 200
    assert done.status.summary.swing_up_time_s is not None
    assert done.status.summary.sim_to_real_rmse_rad is not None
    for result in ResultFile:
        assert platform.results.exists(result_key(record.job_id, result)), result
    metadata = json.loads(platform.results.get_bytes(result_key(record.job_id, ResultFile.METADATA)))
    assert metadata["robot"] == done.status.robot
    assert metadata["summary"]["steps"] == 200
    assert b"upright" in platform.results.get_bytes(result_key(record.job_id, ResultFile.STDOUT))


@pytest.mark.slow
def test_ten_jobs_from_three_owners_over_three_robots_all_finish(platform: LocalPlatform, tmp_path: Path) -> None:
    folder = controller(tmp_path, "short", SHORT_RUN)
    records = [platform.submit(job(owner, folder)) for owner in ["ada"] * 5 + ["bob"] * 3 + ["cy"] * 2]
    finished = [platform.wait(record.job_id, timeout_s=240) for record in records]
    assert [record.status.phase for record in finished] == [Phase.SUCCEEDED] * 10
    assert {record.status.robot for record in finished} <= {"sim-1", "sim-2", "sim-3"}
    for record in finished:
        assert record.status.summary is not None
        assert record.status.summary.steps == 20
        stdout = platform.results.get_bytes(result_key(record.job_id, ResultFile.STDOUT))
        assert stdout.startswith(b"total reward")


def test_user_errors_are_classified_and_never_retried(platform: LocalPlatform, tmp_path: Path) -> None:
    crashing = controller(tmp_path, "crash", "raise RuntimeError('my controller is broken')\n")
    record = platform.wait(platform.submit(job("ada", crashing)).job_id, timeout_s=60)
    assert record.status.phase is Phase.FAILED
    assert record.status.failure_class is FailureClass.USER_ERROR
    assert "my controller is broken" in record.status.message
    assert record.status.attempts == 1
    missing = controller(tmp_path, "nothing", "print('hi')\n")
    (missing / "run.py").rename(missing / "main.py")
    fetched = platform.wait(platform.submit(job("ada", missing)).job_id, timeout_s=60)
    assert fetched.status.phase is Phase.FAILED
    assert fetched.status.reason == "EntrypointNotFound"


def test_a_job_over_its_time_limit_times_out(platform: LocalPlatform, tmp_path: Path) -> None:
    looping = controller(tmp_path, "loop", "while True:\n    pass\n")
    record = platform.wait(platform.submit(job("ada", looping, time_limit_s=2)).job_id, timeout_s=60)
    assert record.status.phase is Phase.TIMED_OUT
    assert record.status.failure_class is FailureClass.TIME_LIMIT


def test_cancelling_a_running_job_stops_it(platform: LocalPlatform, tmp_path: Path) -> None:
    slow = controller(tmp_path, "slow", SHORT_RUN.replace("max_episode_steps=20", "max_episode_steps=2000")
                      .replace("range(20)", "range(2000)"))  # fmt: skip
    record = platform.submit(job("ada", slow))
    for _ in range(200):
        if platform.get(record.job_id).status.phase is Phase.RUNNING:
            break
        time.sleep(0.05)
    cancelled = platform.cancel(record.job_id)
    assert cancelled.status.phase is Phase.CANCELLED


def test_requests_no_robot_can_serve_and_over_quota_submissions_are_refused(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    folder = controller(tmp_path, "short", SHORT_RUN)
    record = platform.wait(platform.submit(job("ada", folder, robot={"name": "sim-99"})).job_id, timeout_s=30)
    assert record.status.phase is Phase.FAILED
    assert record.status.reason == "NoMatchingRobot"
    with pytest.raises(SubmissionRefusedError, match="maximum"):
        platform.submit(job("ada", folder, time_limit_s=3600))


@pytest.mark.slow
def test_cancelling_a_job_before_it_opens_its_robot_session_ends_it_at_once(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    folder = controller(tmp_path, "sleeper", "import time\ntime.sleep(60)\n")
    record = platform.submit(job("ada", folder))
    deadline = time.monotonic() + 60
    while platform.get(record.job_id).status.phase is not Phase.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    done = platform.cancel(record.job_id)
    assert done.status.phase is Phase.CANCELLED, done.status
    assert time.monotonic() - started < 10
    robot = next(view for view in platform.robots() if view.name == done.status.robot)
    assert robot.schedulable
