"""Crash safety of the local platform: killed mid-queue and started again, it loses nothing.

The first platform runs in its own process and is SIGKILLed while a job runs on its only robot;
a second platform then starts on the same data folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from raas_api.local.platform import LocalPlatform, PlatformConfig
from raas_api.stores.sqlite import SqliteJobStore
from raas_operator.jobs.model import Phase

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FIRST_PLATFORM = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from raas_api.local.platform import LocalPlatform, PlatformConfig
    from raas_operator.jobs.model import JobSpec
    platform = LocalPlatform(PlatformConfig(data_dir=Path(sys.argv[1]), robots=1)).start()
    for owner in ("ada", "bob", "cy"):
        spec = JobSpec.model_validate({"owner": owner, "source": {"kind": "local", "path": sys.argv[2]}})
        print(platform.submit(spec).job_id, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow
def test_a_platform_killed_mid_run_loses_no_job_and_retries_the_interrupted_one(tmp_path: Path) -> None:
    data = tmp_path / "platform"
    controller = tmp_path / "legacy"
    shutil.copytree(EXAMPLES / "legacy_gym", controller)
    first = subprocess.Popen([sys.executable, "-c", FIRST_PLATFORM, str(data), str(controller)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert first.stdout is not None
    jobs = [first.stdout.readline().strip() for _ in range(3)]
    store = SqliteJobStore(data / "jobs.db")
    try:
        deadline = time.monotonic() + 60
        while not any(store.get(job).status.phase is Phase.RUNNING for job in jobs):
            assert time.monotonic() < deadline, "no job started"
            time.sleep(0.05)
        time.sleep(1.0)  # in the middle of the run
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        interrupted = next(job for job in jobs if store.get(job).status.phase is Phase.RUNNING)
        assert sum(store.get(job).status.phase is Phase.QUEUED for job in jobs) == 2
    finally:
        store.close()
        first.stdout.close()

    with LocalPlatform(PlatformConfig(data_dir=data, robots=1)) as second:
        finished = {job: second.wait(job, timeout_s=240) for job in jobs}
    outcome = {job: (record.status.phase, record.status.message) for job, record in finished.items()}
    assert {job: phase for job, (phase, _) in outcome.items()} == dict.fromkeys(jobs, Phase.SUCCEEDED), outcome
    retried = finished[interrupted].status
    assert retried.attempts == 2
    assert "PlatformRestarted" in [change.reason for change in retried.history]
    for job, record in finished.items():
        if job != interrupted:
            assert record.status.attempts == 1  # ran once: nothing duplicated


@pytest.mark.slow
def test_a_controller_written_for_the_original_service_runs_on_the_platform(tmp_path: Path) -> None:
    controller = tmp_path / "legacy"
    shutil.copytree(EXAMPLES / "legacy_gym", controller)
    with LocalPlatform(PlatformConfig(data_dir=tmp_path / "platform", robots=1)) as platform:
        from raas_operator.jobs.model import JobSpec

        spec = JobSpec.model_validate({"owner": "ada", "source": {"kind": "local", "path": str(controller)}})
        record = platform.wait(platform.submit(spec).job_id, timeout_s=120)
        stdout = platform.results.get_bytes(f"results/v1/{record.job_id}/stdout.txt")
    assert record.status.phase is Phase.SUCCEEDED, record.status
    assert stdout.startswith(b"steps: 200 total reward:")
    assert record.status.summary is not None
    assert record.status.summary.steps == 200
