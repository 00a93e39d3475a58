"""The real kopf operator on the real control plane, end to end.

Parts: the session's control plane with charts/raas installed (``raas_chart``: the API server
enforces the chart's RBAC and admission policy on every component); the operator run by kopf's own
`KopfRunner`, logged in with the chart's operator ServiceAccount token; a real robot agent on a
simulated robot keeping its Robot object (`RobotHeartbeat`, with the agent ServiceAccount's token)
and expecting the job booked on it; the stand-in kubelet (tests/kubelet/) playing real Nodes — the
real scheduler binds each pod, and the kubelet runs its init and main containers for real with
podman, translated from the pod spec the operator created, and serves their logs to the API
server (the operator reads the job's log through ``pods/log``) — so the job's code runs as uid
65534 with no network, a read-only root, no capabilities and the pod's limits, and reaches the
agent through the hostPath socket folder; a git daemon; S3 through moto's server. The
operator's job image (`JOB_IMAGE`) is mapped to the project's runtime image
(`ensure_runtime_image`, built once per machine). A RaasJob applied from manifests/examples
goes all the way to Succeeded with its log and metadata in S3, and `kubectl get rj`'s columns read
correctly from its status.

Podman is a test dependency (scripts/install-system-deps, as root): without it these tests fail
with a message saying so; they do not skip.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_world import (
    EXAMPLES,
    FINAL,
    NAMESPACE,
    assert_retried_once_elsewhere,
    wait_for,
)
from git_server import GitServer
from kubelet.podman import PodmanRuntime
from s3_server import S3Server
from wheels import make_wheel

from gym_raas.results.store import S3ResultStore

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


@pytest.mark.slow
def test_a_raasjob_from_the_examples_runs_on_a_robot_and_succeeds(
    world_factory: Any, s3: S3Server, git_server: GitServer, podman: PodmanRuntime
) -> None:
    commit = git_server.publish("controllers", {"swingup/run.py": CONTROLLER})
    world = world_factory(["pendulum-1"], podman)
    with world.operator():
        world.submit("swingup", git_server.url("controllers"))
        status = world.wait_phase("swingup", FINAL)
    world.check_clean()
    assert status["phase"] == "Succeeded", status
    assert status["commit"] == commit
    assert status["robot"] == "pendulum-1"
    phases = [change["phase"] for change in status["history"]]
    assert phases == ["Pending", "Fetching", "Queued", "Starting", "Running", "Uploading", "Succeeded"]
    conditions = {condition["type"]: condition["status"] for condition in status["conditions"]}
    assert conditions == {"Fetched": "True", "Scheduled": "True", "Finished": "True", "Succeeded": "True"}
    store = S3ResultStore(s3.endpoint, "raas", "raas-secret", "raas-results", secure=False)
    assert b"done after 20 steps on the robot" in store.get_bytes("results/v1/swingup/stdout.txt")
    metadata = json.loads(store.get_bytes("results/v1/swingup/metadata.json"))
    assert metadata["commit"] == commit
    assert store.exists("results/v1/swingup/code.tar.gz")
    events = world.core.list_namespaced_event(NAMESPACE).items
    assert {"Fetching", "Queued", "Scheduled", "Running", "Completed"} <= {event.reason for event in events}
    robot = world.custom.get_cluster_custom_object("raas.dev", "v1alpha1", "robots", "pendulum-1")
    assert not (robot["metadata"].get("annotations") or {}).get("raas.dev/booked-job")  # freed
    # The agent's own record made the summary; kubectl get rj shows it.
    assert status["summary"]["steps"] == 20
    assert store.exists("results/v1/swingup/trajectory.parquet")
    assert store.exists("results/v1/swingup/plot.png")
    assert store.exists("results/v1/swingup/animation.gif")
    metadata = json.loads(store.get_bytes("results/v1/swingup/metadata.json"))
    assert metadata["session"]["steps"] == 20  # what the agent recorded, for the replay's calibration too
    assert metadata["calibration"]["control_period_s"] == pytest.approx(0.05)
    document = world.custom.get_namespaced_custom_object("raas.dev", "v1alpha1", NAMESPACE, "raasjobs", "swingup")
    columns = printer_columns(document)
    assert columns["Phase"] == "Succeeded"
    assert columns["Robot"] == "pendulum-1"
    assert columns["Reward"] == pytest.approx(status["summary"]["total_reward"])
    assert columns["Reward"] < 0


WITH_REQUIREMENTS = f"import tinypkg\n{CONTROLLER}print(tinypkg.GREETING, 'on the robot')\n"
"""The controller, importing a package that only its requirements.txt brings."""


@contextlib.contextmanager
def package_index(folder: Path) -> Iterator[int]:
    """The folder served over HTTP: pip's --find-links reads its listing (a lab's mirror stand-in)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.mark.slow
def test_a_requirements_txt_is_resolved_by_the_fetch_pod_and_installed_offline_in_the_job_pod(
    world_factory: Any, s3: S3Server, git_server: GitServer, podman: PodmanRuntime, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Only the fetch pod may reach a package index: it resolves the wheels, the job pod's init
    container installs them with no network, and the controller imports them."""
    make_wheel(tmp_path / "index", "tinypkg")
    git_server.publish("deps", {"swingup/run.py": WITH_REQUIREMENTS, "requirements.txt": "tinypkg==1.0\n"})
    with package_index(tmp_path / "index") as port:
        pip = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": f"http://127.0.0.1:{port}/"}
        monkeypatch.setenv("RAAS_OPERATOR_FETCH_PIP_ENVIRONMENT", json.dumps(pip))
        world = world_factory(["pendulum-1"], podman, fetch_endpoints=(("127.0.0.1", port),))
        with world.operator():
            world.submit("with-deps", git_server.url("deps"))
            status = world.wait_phase("with-deps", FINAL)
    world.check_clean()
    store = S3ResultStore(s3.endpoint, "raas", "raas-secret", "raas-results", secure=False)
    stdout = store.get_bytes("results/v1/with-deps/stdout.txt").decode()
    assert status["phase"] == "Succeeded", (status, stdout)
    assert "hello from tinypkg 1.0 on the robot" in stdout
    assert status["requirements"] is True
    assert store.exists("results/v1/with-deps/wheels.tar.gz")
    started = [name for name in world.kubelet.started if not name.endswith("-fetch")]
    assert started == ["with-deps-1"]


PROBE = """\
import os, socket
print("uid", os.getuid(), "gid", os.getgid())
for host, port in (("{s3_host}", {s3_port}), ("10.88.0.1", 80), ("1.1.1.1", 53)):
    try:
        socket.create_connection((host, port), timeout=3).close()
        print("network", host, "reached")
    except OSError as error:
        print("network", host, "blocked", error.errno)
for path in ("/escape.txt", "/code/escape.txt", "/tmp/scratch.txt"):
    try:
        with open(path, "w") as sink:
            sink.write("x")
        print("write", path, "allowed")
    except OSError as error:
        print("write", path, "refused", error.errno)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print("capabilities", status["CapEff"].strip(), "no_new_privs", status["NoNewPrivs"].strip())
for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    if os.path.exists(limit):
        print("memory", open(limit).read().strip())
"""


@pytest.mark.slow
def test_the_job_container_has_no_network_a_read_only_root_and_no_privileges(
    world_factory: Any, s3: S3Server, git_server: GitServer, podman: PodmanRuntime
) -> None:
    """The job's own code probes its container; the operator stores what it printed (the pod's log).
    Its init container reached S3 a moment before (it downloaded the code); the job cannot."""
    probe = PROBE.format(s3_host=s3.host, s3_port=s3.port)
    git_server.publish("probe", {"swingup/run.py": probe + CONTROLLER})
    world = world_factory(["pendulum-1"], podman)
    with world.operator():
        world.submit("probe", git_server.url("probe"))
        status = world.wait_phase("probe", FINAL)
    world.check_clean()
    assert status["phase"] == "Succeeded", status
    assert world.kubelet.started["probe-1"] == "pi-1"
    log = world.store.get_bytes("results/v1/probe/stdout.txt").decode().splitlines()
    assert "uid 65534 gid 65534" in log
    refused, unreachable = 111, 101  # ECONNREFUSED: nothing on its own loopback; ENETUNREACH: no route
    assert f"network {s3.host} blocked {refused}" in log
    assert f"network 10.88.0.1 blocked {unreachable}" in log
    assert f"network 1.1.1.1 blocked {unreachable}" in log
    read_only = 30  # EROFS
    assert f"write /escape.txt refused {read_only}" in log
    assert f"write /code/escape.txt refused {read_only}" in log
    assert "write /tmp/scratch.txt allowed" in log
    assert "capabilities 0000000000000000 no_new_privs 1" in log
    assert f"memory {512 * 1024**2}" in log  # the pod builder's default memory limit, 512Mi
    assert "done after 20 steps on the robot" in log  # and the robot still answered through the socket


def printer_columns(document: dict[str, Any]) -> dict[str, Any]:
    """What `kubectl get rj` prints, read with the CRD's own column paths (simple dotted JSONPaths)."""
    crd = yaml.safe_load((EXAMPLES.parent / "crds" / "raasjobs.raas.dev.yaml").read_text())
    values = {}
    for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
        value: Any = document
        for part in column["jsonPath"].lstrip(".").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        values[column["name"]] = value
    return values


@pytest.mark.slow
def test_a_job_past_its_time_limit_times_out_and_finished_jobs_expire(
    world_factory: Any, git_server: GitServer, monkeypatch: pytest.MonkeyPatch, podman: PodmanRuntime
) -> None:
    monkeypatch.setenv("RAAS_OPERATOR_START_MARGIN_S", "1")
    monkeypatch.setenv("RAAS_OPERATOR_FINISHED_TTL_S", "4")
    monkeypatch.setenv("RAAS_OPERATOR_SESSION_UPLOAD_WAIT_S", "1")
    git_server.publish("forever", {"swingup/run.py": CONTROLLER.replace("20", "100000")})
    world = world_factory(["pendulum-1"], podman)
    with world.operator():
        world.submit("forever", git_server.url("forever"), time_limit_s=3)
        status = world.wait_phase("forever", FINAL)
        assert status["phase"] == "TimedOut", status
        assert status["failure_class"] == "TimeLimit"

        def deleted() -> bool:
            items = world.custom.list_namespaced_custom_object("raas.dev", "v1alpha1", NAMESPACE, "raasjobs")["items"]
            return not items

        wait_for(deleted, 30, "the finished RaasJob to expire")
    world.check_clean()
    assert world.store.exists("results/v1/forever/metadata.json")  # results outlive the RaasJob


@pytest.mark.slow
def test_deleting_a_running_raasjob_cancels_it_and_frees_the_robot(
    world_factory: Any, git_server: GitServer, podman: PodmanRuntime
) -> None:
    git_server.publish("long", {"swingup/run.py": CONTROLLER.replace("20", "2000")})
    world = world_factory(["pendulum-1"], podman)
    with world.operator():
        world.submit("long", git_server.url("long"))
        world.wait_phase("long", ("Running",))
        wait_for(lambda: world.agents["pendulum-1"].session_steps("long"), 30, "the session to step")
        world.custom.delete_namespaced_custom_object("raas.dev", "v1alpha1", NAMESPACE, "raasjobs", "long")

        def gone() -> bool:
            names = [item["metadata"]["name"] for item in world.custom.list_namespaced_custom_object(
                "raas.dev", "v1alpha1", NAMESPACE, "raasjobs")["items"]]  # fmt: skip
            return "long" not in names

        wait_for(gone, 60, "the RaasJob to be deleted")
        wait_for(lambda: world.agents["pendulum-1"].current_job() is None, 30, "the session to end")
        pods = world.core.list_namespaced_pod(NAMESPACE, label_selector="raas.dev/job=long").items
        assert pods == []
        # The pod's deletion stopped its container (podman stop), not the end of the program.
        wait_for(lambda: "long-1" in world.kubelet.finished, 30, "the job's container to be stopped")
    world.check_clean()
    result = world.agents["pendulum-1"].session_result("long")
    assert result is not None  # the agent ended the session, and with it stopped the motor
    assert result.outcome != "completed"
    assert result.steps < 2000


@pytest.mark.slow
def test_a_robot_that_goes_offline_mid_run_fails_over_to_another_robot(
    world_factory: Any, git_server: GitServer, monkeypatch: pytest.MonkeyPatch, podman: PodmanRuntime
) -> None:
    monkeypatch.setenv("RAAS_OPERATOR_HEARTBEAT_TIMEOUT_S", "2")
    git_server.publish("steady", {"swingup/run.py": CONTROLLER.replace("20", "200")})
    world = world_factory(["pendulum-1", "pendulum-2"], podman)
    with world.operator():
        world.submit("steady", git_server.url("steady"))
        first = world.wait_phase("steady", ("Running",))["robot"]
        world.heartbeats[first].stop()  # the Pi drops off the network: no more heartbeats
        status = world.wait_phase("steady", FINAL, timeout_s=120)
    world.check_clean()
    assert_retried_once_elsewhere(status, first)


@pytest.mark.slow
def test_an_operator_killed_mid_run_is_restarted_without_losing_or_repeating_the_job(
    world_factory: Any, git_server: GitServer, podman: PodmanRuntime
) -> None:
    git_server.publish("survivor", {"swingup/run.py": CONTROLLER.replace("20", "100")})
    world = world_factory(["pendulum-1"], podman)
    with world.operator():
        world.submit("survivor", git_server.url("survivor"))
        world.wait_phase("survivor", ("Running",))
    # The operator is gone while the job runs; a new one takes over from the cluster's state.
    with world.operator():
        status = world.wait_phase("survivor", FINAL)
    world.check_clean()
    assert status["phase"] == "Succeeded", status
    assert status["attempts"] == 1
    run_pods = [name for name in world.kubelet.started if name.startswith("survivor-") and name != "survivor-fetch"]
    assert run_pods == ["survivor-1"]  # run once


@pytest.mark.slow
def test_two_peered_operators_run_every_job_exactly_once(
    world_factory: Any, git_server: GitServer, monkeypatch: pytest.MonkeyPatch, podman: PodmanRuntime
) -> None:
    """Two operators on one KopfPeering. Whichever acts, bookings and status patches carry
    resourceVersions, so no job is lost, started twice, or given a robot another job holds.
    (The standby pauses once it sees the higher priority in the KopfPeering; until then both may
    act, which is the harder case for the guards.)"""
    git_server.publish("shared", {"swingup/run.py": CONTROLLER})
    world = world_factory(["pendulum-1", "pendulum-2"], podman)
    with contextlib.ExitStack() as operators:
        for priority in (100, 50):  # two pods: each has its own POD_ID (the chart sets it), read at start
            monkeypatch.setenv("POD_ID", f"raas-operator-{priority}")
            operators.enter_context(world.operator(priority=priority))
            time.sleep(2)
        for index in range(4):
            world.submit(f"peer-{index}", git_server.url("shared"))
        statuses = [world.wait_phase(f"peer-{index}", FINAL) for index in range(4)]
    world.check_clean()
    outcomes = [(status["phase"], status.get("reason"), status.get("message")) for status in statuses]
    assert [phase for phase, _, _ in outcomes] == ["Succeeded"] * 4, outcomes
    assert all(status["attempts"] == 1 for status in statuses)
    run_pods = sorted(name for name in world.kubelet.started if not name.endswith("-fetch"))
    assert run_pods == [f"peer-{index}-1" for index in range(4)]  # each run once, never twice
