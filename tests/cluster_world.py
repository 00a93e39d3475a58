"""A cluster for tests: the Kubernetes emulator, robots, a stand-in kubelet with real containers
and the real kopf operator, shared by the operator's end-to-end tests and the API's contract
tests on the Kubernetes backend.

No real API server can run here (../shared/TESTING.md): the emulator (tests/k8s_emulator.py)
stands in for it, over real HTTP, and `kubelet.node.StandInKubelet` plays the nodes (the
emulator has neither scheduler nor kubelet).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import kubernetes
import pytest
import yaml
from agent_fixtures import running_agent
from git_server import GitServer
from k8s_fixtures import Emulator, write_kubeconfig
from kopf.testing import KopfRunner
from kubelet.node import Egress, Node, StandInKubelet
from kubelet.runtime import Runtime
from kubernetes import client
from rbac_audit import COMPONENT_TOKENS, refused
from s3_server import S3Server

from gym_raas.params import PendulumParams
from gym_raas.results.store import S3ResultStore
from raas_node.agent.agent import RobotAgent
from raas_node.agent.cluster import RobotHeartbeat
from raas_node.drivers.sim_driver import SimDriver
from raas_operator.pods.builder import EGRESS_LABEL

NAMESPACE = "raas"
EXAMPLES = Path(__file__).resolve().parents[1] / "manifests" / "examples"
SESSION_KEY = "test-session-key"
JOB_IMAGE = "ghcr.io/raas-dev/raas-job:e2e"
"""The job image the operator is told to use; the stand-in kubelet maps it to the local runtime image."""
AGENT_SOCKET_HOST_DIR = "/run/raas"
"""The robot nodes' hostPath of the agent's socket folder (the operator's default)."""
FINAL = ("Succeeded", "Failed", "TimedOut", "Cancelled")


def use_kubeconfig(
    monkeypatch: pytest.MonkeyPatch, folder: Path, emulator: Emulator, token: str = COMPONENT_TOKENS["operator"]
) -> Path:
    """A kubeconfig for `emulator`, made the default of kubectl and of the ``kubernetes`` client
    (the operator's: it logs in with it)."""
    kubeconfig = write_kubeconfig(folder / "kubeconfig", emulator.url, token=token, namespace=NAMESPACE)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    return kubeconfig


def operator_environment(monkeypatch: pytest.MonkeyPatch, s3: S3Server) -> None:
    for name, value in {
        "NAMESPACE": NAMESPACE,
        "IMAGE": JOB_IMAGE,
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


class World:
    """Robots (real agents on simulated pendulums, each keeping its Robot object), a stand-in
    kubelet playing one node per robot plus a worker node, and the operator, which can be
    stopped and started again.

    Every node runs its pods with `runtime` (podman: real containers). Robot nodes are labelled
    and tainted ``raas.dev/robot=<robot>`` and offer the hostPath ``/run/raas`` (their agent's
    socket folder); the worker node gets the rest (fetch pods). Network, as the chart's
    NetworkPolicies allow it but narrower: a job pod's init container reaches the S3 server only,
    its controller nothing; a fetch pod (``raas.dev/egress=git``) reaches the git server and S3.
    """

    def __init__(
        self,
        cluster: Emulator,
        s3: S3Server,
        git_server: GitServer,
        robots: list[str],
        stack: contextlib.ExitStack,
        runtime: Runtime,
        fetch_endpoints: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.store = S3ResultStore(s3.endpoint, "raas", "raas-secret", "raas-results", secure=False)
        self.api = cluster.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.access_log = cluster.emulator.access_log
        agents_api = client.CustomObjectsApi(cluster.api_client(COMPONENT_TOKENS["agent"]))
        self.agents: dict[str, RobotAgent] = {}
        self.heartbeats: dict[str, RobotHeartbeat] = {}
        for index, robot in enumerate(robots, start=1):
            agent = stack.enter_context(running_agent(SimDriver(PendulumParams()), robot=robot))
            self.agents[robot] = agent
            self.heartbeats[robot] = RobotHeartbeat(
                agent, agents_api, robot=robot, node=f"pi-{index}", interval_s=0.2,
                session_key=SESSION_KEY.encode(), labels={"raas.dev/lab": "north"}, results=self.store,
            ).start()  # fmt: skip
            stack.callback(self.heartbeats[robot].stop)
        nodes = []
        for index, (robot, agent) in enumerate(self.agents.items(), start=1):
            socket_folder = agent.config.socket_path.parent
            # The test's agent folder comes from mkdtemp (0700); on a robot node the chart's hostPath
            # (DirectoryOrCreate) makes /run/raas 0755 and the agent its socket 0666, which lets uid
            # 65534 in the job container connect: the same modes here.
            socket_folder.chmod(0o755)
            nodes.append(
                Node(
                    f"pi-{index}",
                    runtime,
                    labels={"raas.dev/robot": robot},
                    taints=[{"key": "raas.dev/robot", "value": robot, "effect": "NoSchedule"}],
                    host_paths={AGENT_SOCKET_HOST_DIR: socket_folder},
                    egress=[Egress([(s3.host, s3.port)], init_containers_only=True)],
                )
            )
        fetch_egress = Egress(
            [("127.0.0.1", git_server.port), (s3.host, s3.port), *fetch_endpoints], pod_labels={EGRESS_LABEL: "git"}
        )  # (fetch_endpoints: e.g. a package index)
        nodes.append(Node("worker", runtime, egress=[fetch_egress]))
        self.kubelet = StandInKubelet(cluster.api_client("kubelet"), cluster.emulator, NAMESPACE, nodes).start()
        stack.callback(self.kubelet.stop)
        self.outputs: list[str] = []

    @contextlib.contextmanager
    def operator(self, priority: int | None = None) -> Iterator[KopfRunner]:
        """An operator; with a `priority` it joins the namespace's peering instead of standing alone."""
        peering = ["--standalone"] if priority is None else ["--peering", "raas-operator", "--priority", str(priority)]
        args = ["run", *peering, "--namespace", NAMESPACE, "-m", "raas_operator.runtime.handlers"]
        with KopfRunner(args, timeout=180) as runner:
            yield runner
        self.outputs.append(runner.output)
        assert runner.exception is None, runner.output

    def submit(self, name: str, url: str, **spec: object) -> None:
        job = yaml.safe_load((EXAMPLES / "raasjob-swingup.yaml").read_text())
        job["metadata"].update(name=name, namespace=NAMESPACE)
        job["spec"]["source"]["url"] = url
        job["spec"].update(spec)
        self.custom.create_namespaced_custom_object("raas.dev", "v1alpha1", NAMESPACE, "raasjobs", job)

    def status(self, name: str) -> dict[str, Any]:
        document = self.custom.get_namespaced_custom_object("raas.dev", "v1alpha1", NAMESPACE, "raasjobs", name)
        return dict(cast(dict[str, Any], document).get("status") or {})

    def wait_phase(self, name: str, phases: tuple[str, ...], timeout_s: float = 120) -> dict[str, Any]:
        try:
            return dict(
                wait_for(lambda: (status := self.status(name)).get("phase") in phases and status, timeout_s, name)
            )
        except AssertionError:
            raise AssertionError(
                f"{name} never reached {phases}: {self.status(name)}\nkubelet: {self.kubelet.errors}"
            ) from None

    def check_clean(self) -> None:
        """No failure of the stand-in kubelet, no traceback of an operator, and no request of the
        operator, the agents or the API that the chart's RBAC would refuse."""
        assert self.kubelet.errors == []
        for output in self.outputs:
            assert "Traceback" not in output, output
        assert refused(self.access_log, NAMESPACE) == []
