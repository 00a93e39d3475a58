"""The real kopf operator against the Kubernetes emulator over real HTTP, end to end.

Parts: the emulator (kmock, hardened: tests/k8s_emulator.py) in a thread; the operator run by
kopf's own `KopfRunner`; a real robot agent on a simulated robot keeping its Robot object
(`RobotHeartbeat`) and expecting the job booked on it; a stand-in kubelet
(tests/stand_in_kubelet.py: the emulator has none) running the fetch and run pods' programs as
local processes; a git daemon; S3 through moto's server. A RaasJob applied from
manifests/examples goes all the way to Succeeded with its log and metadata in S3.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from agent_fixtures import running_agent
from git_server import GitServer, running_git_server
from k8s_fixtures import Emulator, running_emulator
from kopf.testing import KopfRunner
from kubernetes import client
from s3_server import S3Server, running_s3_server
from stand_in_kubelet import StandInKubelet

from gym_raas.params import PendulumParams
from gym_raas.results.store import S3ResultStore
from raas_node.agent.cluster import RobotHeartbeat
from raas_node.drivers.sim_driver import SimDriver

NAMESPACE = "raas"
EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
CONTROLLER = """\
import gymnasium as gym
import numpy as np
import gym_raas
env = gym.make("RaasPendulum-v0", max_episode_steps=20)
env.reset()
for _ in range(20):
    env.step(np.array([1.0], dtype=np.float32))
env.close()
print("done after 20 steps on the robot")
"""
SESSION_KEY = "test-session-key"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with running_emulator(NAMESPACE) as emulator:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emulator",
                    "clusters": [{"name": "emulator", "cluster": {"server": emulator.url}}],
                    "users": [{"name": "emulator", "user": {"token": "test"}}],
                    "contexts": [
                        {
                            "name": "emulator",
                            "context": {"cluster": "emulator", "user": "emulator", "namespace": NAMESPACE},
                        }
                    ],
                }
            )
        )
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        yield emulator


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitServer]:
    with running_git_server(tmp_path / "git") as server:
        yield server


def operator_environment(monkeypatch: pytest.MonkeyPatch, s3: S3Server) -> None:
    for name, value in {
        "NAMESPACE": NAMESPACE,
        "SESSION_KEY": SESSION_KEY,
        "S3_ENDPOINT": s3.endpoint,
        "S3_ACCESS_KEY": "raas",
        "S3_SECRET_KEY": "raas-secret",
        "S3_SECURE": "false",
    }.items():
        monkeypatch.setenv(f"RAAS_OPERATOR_{name}", value)


def wait_for(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_raasjob_from_the_examples_runs_on_a_robot_and_succeeds(
    cluster: Emulator, s3: S3Server, git_server: GitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = git_server.publish("controllers", {"swingup/run.py": CONTROLLER})
    operator_environment(monkeypatch, s3)
    api = cluster.api_client()
    custom = client.CustomObjectsApi(api)
    with running_agent(SimDriver(PendulumParams()), robot="pendulum-1") as agent:
        socket_dir = agent.config.socket_path.parent
        heartbeat = RobotHeartbeat(
            agent, custom, robot="pendulum-1", node="pi-1", interval_s=0.2, session_key=SESSION_KEY.encode(),
            labels={"raas.dev/lab": "north"},
        ).start()  # fmt: skip
        kubelet = StandInKubelet(api, cluster.emulator, NAMESPACE, {"pendulum-1": socket_dir}).start()
        args = ["run", "--standalone", "--namespace", NAMESPACE, "-m", "raas_operator.runtime.handlers"]
        try:
            with KopfRunner(args, timeout=180) as runner:
                job = yaml.safe_load((EXAMPLES / "raasjob-swingup.yaml").read_text())
                job["metadata"]["namespace"] = NAMESPACE
                job["spec"]["source"]["url"] = git_server.url("controllers")
                custom.create_namespaced_custom_object("raas.dev", "v1alpha1", NAMESPACE, "raasjobs", job)

                def finished() -> dict[str, Any] | None:
                    document = custom.get_namespaced_custom_object(
                        "raas.dev", "v1alpha1", NAMESPACE, "raasjobs", "swingup"
                    )
                    status = document.get("status") or {}
                    return status if status.get("phase") in ("Succeeded", "Failed", "TimedOut", "Cancelled") else None

                try:
                    status = wait_for(finished, 120, "the RaasJob to finish")
                except AssertionError:
                    document = custom.get_namespaced_custom_object(
                        "raas.dev", "v1alpha1", NAMESPACE, "raasjobs", "swingup"
                    )
                    raise AssertionError(
                        f"unfinished: {document.get('status')}\nkubelet ran {kubelet.finished}, failed {kubelet.errors}"
                    ) from None
        finally:
            kubelet.stop()
            heartbeat.stop()
    assert runner.exception is None, runner.output
    assert kubelet.errors == []
    assert "Traceback" not in runner.output, runner.output
    assert status["phase"] == "Succeeded", status
    assert status["commit"] == commit
    assert status["robot"] == "pendulum-1"
    phases = [change["phase"] for change in status["history"]]
    assert phases == ["Pending", "Fetching", "Queued", "Starting", "Running", "Uploading", "Succeeded"]
    store = S3ResultStore(s3.endpoint, "raas", "raas-secret", "raas-results", secure=False)
    assert b"done after 20 steps on the robot" in store.get_bytes("results/v1/swingup/stdout.txt")
    metadata = json.loads(store.get_bytes("results/v1/swingup/metadata.json"))
    assert metadata["commit"] == commit
    assert store.exists("results/v1/swingup/code.tar.gz")
    events = client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
    assert {"Fetching", "Queued", "Scheduled", "Running", "Completed"} <= {event.reason for event in events}
    robot = custom.get_cluster_custom_object("raas.dev", "v1alpha1", "robots", "pendulum-1")
    assert not (robot["metadata"].get("annotations") or {}).get("raas.dev/booked-job")  # freed
