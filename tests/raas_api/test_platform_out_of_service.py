"""A job waiting while no robot that could run it is in service says so (issue 12, item 6: a
job sat Queued with no message while both robots had faulted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from polling import wait_until

from raas_api.local.platform import WAITING_FOR_SERVICE, LocalPlatform, PlatformConfig
from raas_operator.jobs.model import JobSpec, Phase


@pytest.mark.slow
def test_a_job_waiting_for_robots_that_are_all_out_of_service_says_so_until_one_is_back(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "run.py").write_text("print('ran')\n")
    with LocalPlatform(PlatformConfig(data_dir=tmp_path / "data", robots=2)) as platform:
        for robot in platform.agents:
            platform.set_maintenance(robot, True)
        spec = JobSpec.model_validate({"owner": "ada", "source": {"kind": "local", "path": str(code)}})
        job_id = platform.submit(spec).job_id

        assert wait_until(lambda: platform.get(job_id).status.message.startswith(WAITING_FOR_SERVICE), 60, 0.05)
        waiting = platform.get(job_id).status
        assert waiting.phase is Phase.QUEUED
        assert "sim-1 maintenance" in waiting.message
        assert "sim-2 maintenance" in waiting.message

        platform.set_maintenance("sim-2", False)
        done = platform.wait(job_id, timeout_s=120)

    assert done.status.phase is Phase.SUCCEEDED, done.status
    assert done.status.robot == "sim-2"
    assert WAITING_FOR_SERVICE not in done.status.message
