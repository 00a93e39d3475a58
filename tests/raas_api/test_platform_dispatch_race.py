"""The dispatcher's bookkeeping under races: a job's fetch worker still finishing while its run
has already started, and a stress of many short jobs with cancels (security issue 12, item 12:
the fetch thread's clean-up dropped the run's cancel event and robot booking, once in ~30 jobs)."""

from __future__ import annotations

import random
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from polling import wait_until

from raas_api.local.platform import LocalPlatform, PlatformConfig
from raas_operator.jobs.model import FailureClass, JobSpec, Phase, transition
from raas_operator.scheduling.core import Quotas


def _job(owner: str, folder: Path, **changes: object) -> JobSpec:
    return JobSpec.model_validate({"owner": owner, "source": {"kind": "local", "path": str(folder)}, **changes})


def _controller(tmp_path: Path, name: str, source: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "run.py").write_text(textwrap.dedent(source))
    return folder


ENDLESS = """
    import gymnasium as gym
    import numpy as np
    import gym_raas
    env = gym.make("RaasPendulum-v0")
    env.reset()
    print("session open", flush=True)
    while True:
        env.step(np.array([0.0], dtype=np.float32))
"""


@pytest.fixture
def one_robot(tmp_path: Path) -> Iterator[LocalPlatform]:
    config = PlatformConfig(data_dir=tmp_path / "platform", robots=1)
    with LocalPlatform(config) as running:
        yield running


@pytest.mark.slow
def test_a_fetch_worker_finishing_after_its_job_started_leaves_the_run_cancellable(
    one_robot: LocalPlatform, tmp_path: Path
) -> None:
    platform = one_robot
    fetch = platform._fetch
    fetch_threads: list[threading.Thread] = []

    def fetch_that_exits_late(job_id: str) -> None:
        fetch(job_id)
        fetch_threads.append(threading.current_thread())
        # The dispatcher starts the run before this fetch worker has cleaned up after itself.
        assert wait_until(lambda: platform.get(job_id).status.phase is Phase.RUNNING, 60, 0.05)

    platform._fetch = fetch_that_exits_late  # type: ignore[method-assign]
    record = platform.submit(_job("ada", _controller(tmp_path, "endless", ENDLESS), time_limit_s=120))
    assert wait_until(lambda: len(fetch_threads) == 1, 60, 0.05)
    fetch_threads[0].join(timeout=30)
    robot = platform.get(record.job_id).status.robot
    assert robot is not None
    session_started = wait_until(lambda: bool(platform.agents[robot].session_steps(record.job_id)), 60, 0.05)
    assert session_started, "the session never started"

    cancelled = platform.cancel(record.job_id)

    assert cancelled.status.phase is Phase.CANCELLED, cancelled.status
    assert wait_until(lambda: platform.agents[robot].current_job() is None, 30, 0.05), "the controller kept the robot"
    assert platform.robot_details()[0].current_job is None


@pytest.mark.slow
def test_hundreds_of_short_jobs_with_cancels_never_meet_a_platform_fault(tmp_path: Path) -> None:
    quick = _controller(tmp_path, "quick", "print('done')\n")
    config = PlatformConfig(
        data_dir=tmp_path / "platform", robots=3, quotas=Quotas(max_running_per_owner=3, max_queued_per_owner=500)
    )
    chance = random.Random(12)
    with LocalPlatform(config) as platform:
        jobs = [platform.submit(_job(f"owner-{index % 4}", quick)).job_id for index in range(150)]
        for job_id in chance.sample(jobs, 30):
            time.sleep(chance.uniform(0.0, 0.05))
            platform.cancel(job_id)
        finished = [platform.wait(job_id, timeout_s=300) for job_id in jobs]
    unfinished = [record.job_id for record in finished if not record.status.phase.is_terminal]
    assert not unfinished
    faults = [
        (record.job_id, record.status.reason, record.status.message)
        for record in finished
        if record.status.failure_class is FailureClass.PLATFORM_FAULT or record.status.attempts > 1
    ]
    assert not faults
    assert {record.status.phase for record in finished} <= {Phase.SUCCEEDED, Phase.CANCELLED, Phase.FAILED}


@pytest.mark.parametrize("ended_first", [False, True], ids=["breaking-before-the-end", "breaking-after-the-end"])
def test_a_run_that_breaks_after_its_job_was_cancelled_leaves_it_cancelled_without_a_crash(
    one_robot: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ended_first: bool
) -> None:
    # (CI once met the second: the job already Cancelled, the platform fault's retry raised.)
    platform = one_robot
    crashes: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", crashes.append)
    ran = threading.Event()

    def run_that_breaks_when_cancelled(job_id: str, robot: str, cancel: threading.Event) -> None:
        ran.set()
        assert cancel.wait(60), "never cancelled"
        if ended_first:
            platform._update(job_id, lambda status: transition(status, Phase.CANCELLED, reason="Cancelled"))
        raise ConnectionResetError("the robot's connection broke as the job was cancelled")

    platform._run = run_that_breaks_when_cancelled  # type: ignore[method-assign]
    record = platform.submit(_job("ada", _controller(tmp_path, "endless", ENDLESS), time_limit_s=120))
    assert ran.wait(60), "the run never started"

    cancelled = platform.cancel(record.job_id)

    assert cancelled.status.phase is Phase.CANCELLED, cancelled.status
    assert wait_until(lambda: platform.robot_details()[0].current_job is None, 30, 0.05)
    assert wait_until(lambda: not platform._workers, 30, 0.05), "the worker never ended"
    final = platform.get(record.job_id).status
    assert final.phase is Phase.CANCELLED, final
    assert final.attempts == 1  # not retried
    assert crashes == []
