"""The local platform's metrics: its fleet state and its agents, served through the API's /metrics."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from api_fixtures import api_harness
from polling import wait_until
from prometheus_client.parser import text_string_to_metric_families

from gym_raas.results.layout import ResultFile, result_key
from gym_raas.results.spool import SpoolingResultStore
from gym_raas.results.store import FilesystemResultStore, S3ResultStore
from raas_api.local.fleet import fleet_state
from raas_api.local.platform import LocalPlatform, PlatformConfig
from raas_operator.jobs.model import JobSpec, Phase

AGENT_FAMILIES = ("raas_robot_state", "raas_control_step_latency_seconds", "raas_motor_temperature_celsius")


def sample(platform: LocalPlatform, name: str, labels: dict[str, str] | None = None) -> float | None:
    return platform.fleet.registry.get_sample_value(name, labels or {})


def test_metrics_serve_every_agent_once_per_family_with_a_robot_label(tmp_path: Path) -> None:
    with api_harness(tmp_path, robots=2) as api:
        text = api.client.get("/metrics").text
    families = list(text_string_to_metric_families(text))
    names = [family.name for family in families]
    assert len(names) == len(set(names)), "a family appears more than once"
    by_name = {family.name: family for family in families}
    for name in AGENT_FAMILIES:
        robots = {sample.labels["robot"] for sample in by_name[name].samples if "robot" in sample.labels}
        assert robots == {"sim-1", "sim-2"}, name
    agent_samples = [
        sample for name in AGENT_FAMILIES for sample in by_name[name].samples if not sample.name.endswith("_created")
    ]
    assert all("robot" in sample.labels for sample in agent_samples)
    assert "raas_queue_length" in by_name
    assert "raas_jobs_finished" in by_name  # the counter's family (samples are raas_jobs_finished_total)


def test_the_queue_and_robot_phases_follow_the_platform(tmp_path: Path) -> None:
    folder = tmp_path / "controller"
    folder.mkdir()
    (folder / "run.py").write_text(
        textwrap.dedent("""
        import gymnasium as gym, numpy as np, gym_raas
        env = gym.make("RaasPendulum-v0", max_episode_steps=5)
        env.reset()
        for _ in range(5):
            env.step(np.array([0.5], dtype=np.float32))
        env.close()
    """)
    )
    with LocalPlatform(PlatformConfig(data_dir=tmp_path / "data", robots=2)) as platform:
        assert wait_until(lambda: sample(platform, "raas_robots", {"phase": "Ready"}) == 2.0, timeout_s=30)
        for robot in platform.agents:
            platform.set_maintenance(robot, True)
        assert sample(platform, "raas_robots", {"phase": "Maintenance"}) == 2.0
        spec = JobSpec.model_validate({"owner": "ada", "source": {"kind": "local", "path": str(folder)}})
        record = platform.submit(spec)
        assert wait_until(lambda: platform.get(record.job_id).status.phase is Phase.QUEUED, timeout_s=60)
        assert sample(platform, "raas_queue_length") == 1.0
        assert wait_until(lambda: (sample(platform, "raas_queue_oldest_wait_seconds") or 0.0) > 0.2, timeout_s=5)
        platform.set_maintenance("sim-2", False)
        finished = platform.wait(record.job_id, timeout_s=120)
        assert finished.status.phase is Phase.SUCCEEDED, finished.status
        assert sample(platform, "raas_queue_length") == 0.0
        assert (sample(platform, "raas_queue_wait_seconds_sum") or 0.0) > 0.2
        assert sample(platform, "raas_jobs_finished_total", {"phase": "Succeeded", "failure_class": "none"}) == 1.0
        assert sample(platform, "raas_robots", {"phase": "Maintenance"}) == 1.0
        assert sample(platform, "raas_robot_heartbeat_age_seconds", {"robot": "sim-2"}) is not None


def test_a_robot_whose_control_loop_stopped_is_offline_after_the_heartbeat_timeout(tmp_path: Path) -> None:
    with LocalPlatform(PlatformConfig(data_dir=tmp_path, robots=1)) as platform:
        agent = platform.agents["sim-1"]
        assert wait_until(lambda: agent.metrics.last_boundary_s is not None, timeout_s=5)
        agent.stop()  # the control loop ends: no more boundaries
        last = agent.metrics.last_boundary_s
        assert last is not None
        soon = fleet_state(platform.store, platform.agents, [], platform.results, last + 5)
        later = fleet_state(platform.store, platform.agents, [], platform.results, last + 31)
    assert soon.robots[0].phase.value != "Offline"
    assert later.robots[0].phase.value == "Offline"
    assert later.robots[0].last_heartbeat_s == last


@pytest.mark.parametrize("reachable", [False, True])
def test_results_waiting_in_the_spool_are_counted(tmp_path: Path, reachable: bool) -> None:
    primary = (
        FilesystemResultStore(tmp_path / "bucket")
        if reachable
        else S3ResultStore("127.0.0.1:1", "raas", "raas-secret", "raas-results", secure=False, retries=0)
    )
    store = SpoolingResultStore(primary, tmp_path / "spool")
    for name in (ResultFile.STDOUT, ResultFile.STDERR):
        store.put_bytes(result_key("job-1", name), b"output", name.content_type)
    with LocalPlatform(PlatformConfig(data_dir=tmp_path / "data", robots=1)) as platform:
        state = fleet_state(platform.store, platform.agents, [], store, 0.0)
    assert state.results_pending_files == (0 if reachable else 2)
