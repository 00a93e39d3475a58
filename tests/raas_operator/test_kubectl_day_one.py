"""A lab's day one with the real kubectl, as users type it, on the end-to-end world (the chart
installed, the operator as its ServiceAccount, a real agent, the stand-in kubelet's Nodes):
``kubectl apply -f`` the example RaasJob, ``kubectl wait`` on its phase and its Finished
condition, ``kubectl logs`` of its job pod while it runs, ``kubectl get rj`` and ``kubectl describe
rj`` after, the results in the store; and ``kubectl delete rj`` of a running job (the finalizer:
the session ends, so the agent stops the motor; the pods go; the RaasJob disappears). Only an
active job carries the operator's finalizer: a finished one is deleted at once, with the operator
gone (as after ``helm uninstall``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from cluster_world import EXAMPLES, NAMESPACE, wait_for
from controlplane.cluster import ControlPlane
from git_server import GitServer
from kubelet.podman import PodmanRuntime
from s3_server import S3Server

from gym_raas.results.store import S3ResultStore

pytestmark = pytest.mark.slow

TALKATIVE = """\
import gymnasium as gym
import numpy as np
import gym_raas
print("controller up", flush=True)
env = gym.make("RaasPendulum-v0", max_episode_steps={steps})
env.reset()
for step in range({steps}):
    env.step(np.array([0.5], dtype=np.float32))
    if step == 10:
        print("ten steps in", flush=True)
env.close()
print("done after {steps} steps", flush=True)
"""


def example(name: str, url: str) -> str:
    """manifests/examples/raasjob-swingup.yaml with its name and repository changed, as a user edits it."""
    job = yaml.safe_load((EXAMPLES / "raasjob-swingup.yaml").read_text())
    job["metadata"]["name"] = name
    job["spec"]["source"]["url"] = url
    return yaml.safe_dump(job)


KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def finalizers(plane: ControlPlane, job: str) -> list[str]:
    """RaasJob `job`'s finalizers, as kubectl prints them."""
    printed = plane.kubectl("-n", NAMESPACE, "get", "rj", job, "-o", "jsonpath={.metadata.finalizers}").stdout
    return list(json.loads(printed)) if printed.strip() else []


def test_a_lab_runs_its_first_job_with_kubectl_and_reads_it_back(
    world_factory: Any, world_plane: ControlPlane, s3: S3Server, git_server: GitServer, podman: PodmanRuntime
) -> None:
    git_server.publish("first", {"swingup/run.py": TALKATIVE.format(steps=120)})
    kubectl = world_plane.kubectl
    world = world_factory(["pendulum-1"], podman)
    with world.operator():
        applied = kubectl("apply", "-f", "-", input=example("first", git_server.url("first")))
        assert applied.stdout.strip() == "raasjob.raas.dev/first created"
        kubectl("-n", NAMESPACE, "wait", "--for=jsonpath={.status.phase}=Running", "rj/first", "--timeout=120s")
        assert finalizers(world_plane, "first") == [KOPF_FINALIZER]  # a running job's deletion waits for the operator
        wait_for(
            lambda: (
                "ten steps in" in kubectl("-n", NAMESPACE, "logs", "first-1", "-c", "controller", check=False).stdout
            ),
            60,
            "the controller's output through kubectl logs",
        )
        kubectl("-n", NAMESPACE, "wait", "--for=condition=Finished", "rj/first", "--timeout=180s")
        table = kubectl("-n", NAMESPACE, "get", "rj", "first").stdout.splitlines()
        described = kubectl("-n", NAMESPACE, "describe", "rj", "first").stdout
        wait_for(lambda: finalizers(world_plane, "first") == [], 30, "the finished job's finalizer to be released")
    # The operator is gone (as after `helm uninstall`): a finished job still deletes at once.
    kubectl("-n", NAMESPACE, "delete", "rj", "first", "--wait=true", "--timeout=30s")
    world.check_clean()
    header, row = table
    assert header.split()[:3] == ["NAME", "PHASE", "ROBOT"], header
    assert row.split()[:3] == ["first", "Succeeded", "pendulum-1"], row
    assert "Events:" in described
    for reason in ("Fetching", "Scheduled", "Running", "Completed"):
        assert reason in described, described
    store = S3ResultStore(s3.endpoint, "raas", "raas-secret", "raas-results", secure=False)
    stdout = store.get_bytes("results/v1/first/stdout.txt")
    assert b"controller up" in stdout
    assert b"done after 120 steps" in stdout
    assert store.exists("results/v1/first/plot.png")


def test_kubectl_delete_of_a_running_job_stops_it_and_removes_everything_of_it(
    world_factory: Any, world_plane: ControlPlane, git_server: GitServer, podman: PodmanRuntime
) -> None:
    git_server.publish("endless", {"swingup/run.py": TALKATIVE.format(steps=2000)})
    kubectl = world_plane.kubectl
    world = world_factory(["pendulum-1"], podman)
    with world.operator():
        kubectl("apply", "-f", "-", input=example("endless", git_server.url("endless")))
        kubectl("-n", NAMESPACE, "wait", "--for=jsonpath={.status.phase}=Running", "rj/endless", "--timeout=120s")
        wait_for(lambda: world.agents["pendulum-1"].session_steps("endless"), 30, "the session to step")
        deleted = kubectl("-n", NAMESPACE, "delete", "rj", "endless", "--wait=true", "--timeout=90s")
        assert deleted.stdout.strip() == 'raasjob.raas.dev "endless" deleted from raas-jobs namespace'
        gone = kubectl("-n", NAMESPACE, "get", "rj", "endless", check=False)
        assert gone.returncode != 0
        assert 'raasjobs.raas.dev "endless" not found' in gone.stderr
        pods = kubectl("-n", NAMESPACE, "get", "pods", "-l", "raas.dev/job=endless", "-o", "name").stdout
        assert pods.strip() == ""
        wait_for(lambda: world.agents["pendulum-1"].current_job() is None, 30, "the session to end")
    world.check_clean()
    result = world.agents["pendulum-1"].session_result("endless")
    assert result is not None  # the agent ended the session, and with it stopped the motor
    assert result.outcome != "completed"
    assert result.steps < 2000
