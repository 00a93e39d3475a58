"""A cluster for tests: the real control plane with charts/raas installed, robots, the stand-in
kubelet's nodes and the real kopf operator, shared by the operator's end-to-end tests and the API's
contract tests on the Kubernetes backend.

The control plane is the session's (``raas_chart``: etcd, kube-apiserver with Node,RBAC
authorization and the chart's admission policy, controller manager, scheduler); every component
speaks as the chart's ServiceAccount for it, so the chart's RBAC is enforced by the API server
itself: the operator logs in with the ``raas-operator`` token (`use_kubeconfig`), the robots'
heartbeats with the ``raas-agent`` token. Nodes are `kubelet.kubelet.StandInKubelet`'s: real Node
objects with their own certificates, pods bound by the real scheduler, logs served to the API
server. Jobs live in the chart's job namespace, ``raas-jobs`` (`NAMESPACE`), shared by the whole
session: a `World` deletes what it made there when it ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import kubernetes
import pytest
import yaml
from agent_fixtures import running_agent
from controlplane.chart_install import AGENT, JOBS, OPERATOR, token_for, token_kubeconfig
from controlplane.cluster import ControlPlane
from git_server import GitServer
from kopf.testing import KopfRunner
from kubelet.kubelet import StandInKubelet
from kubelet.node import Egress, Node
from kubelet.runtime import Runtime
from kubernetes import client
from s3_server import S3Server

from gym_raas.params import PendulumParams
from gym_raas.results.store import S3ResultStore
from raas_node.agent.agent import RobotAgent
from raas_node.agent.cluster import RobotHeartbeat
from raas_node.drivers.sim_driver import SimDriver
from raas_operator.pods.builder import EGRESS_LABEL

NAMESPACE = JOBS
"""The chart's job namespace: RaasJobs, their pods and Secrets, the KopfPeering."""
EXAMPLES = Path(__file__).resolve().parents[1] / "manifests" / "examples"
SESSION_KEY = "test-session-key"
JOB_IMAGE = "localhost/raas-job:e2e"
"""The job image the operator is told to use; the stand-in kubelet maps it to the local runtime image."""
AGENT_SOCKET_HOST_DIR = "/run/raas"
"""The robot nodes' hostPath of the agent's socket folder (the operator's default)."""
FINAL = ("Succeeded", "Failed", "TimedOut", "Cancelled")
REFUSALS = ("Forbidden", "forbidden", "HTTP 403")
"""What a request the API server refused (RBAC, the Node authorizer, admission) leaves in a log."""


def use_kubeconfig(
    monkeypatch: pytest.MonkeyPatch, folder: Path, plane: ControlPlane, token: str | None = None
) -> Path:
    """A kubeconfig for `plane` as the bearer of `token` (default: a fresh token of the chart's
    operator ServiceAccount), namespace `NAMESPACE`, made the default of kubectl and of the
    ``kubernetes`` client (the operator's: kopf logs in with it)."""
    token = token if token is not None else token_for(plane, *OPERATOR)
    kubeconfig = token_kubeconfig(plane, folder / "kubeconfig", token, namespace=NAMESPACE)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    return kubeconfig


NODE_NOT_READY_TOLERATION_S = 15.0
"""How long the worlds' operators let a job run on while its robot's Node is NotReady."""


def operator_environment(monkeypatch: pytest.MonkeyPatch, s3: S3Server) -> None:
    for name, value in {
        "NAMESPACE": NAMESPACE,
        "IMAGE": JOB_IMAGE,
        "SESSION_KEY": SESSION_KEY,
        "S3_ENDPOINT": s3.endpoint,
        "S3_ACCESS_KEY": "raas",
        "S3_SECRET_KEY": "raas-secret",
        "S3_SECURE": "false",
        # (The chart's 40 s, shortened as the controller manager's node grace is: still longer than
        # the NotReady moment after an API server restart, before the kubelets' renewals arrive.)
        "NODE_NOT_READY_TOLERATION_S": str(NODE_NOT_READY_TOLERATION_S),
    }.items():
        monkeypatch.setenv(f"RAAS_OPERATOR_{name}", value)


def assert_retried_once_elsewhere(status: dict[str, Any], first: str) -> None:
    """`status` is of a job whose first attempt on robot `first` ended as the robot's fault and
    whose second, on another robot, succeeded."""
    assert status["phase"] == "Succeeded", status
    assert status["robot"] != first
    assert status["attempts"] == 2
    assert status["excluded_robots"] == [first]


def wait_for(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


RBAC_WARMING_S = 20.0
"""How long after an API server restart its refusals are forgiven (`World.check_clean`)."""


def _tracebacks(output: str) -> list[tuple[float, str]]:
    """Each traceback in a kopf log `output`, with the time of the log line it follows."""
    found: list[tuple[float, str]] = []
    when = 0.0
    for line in output.split("\n["):
        stamp = line[: len("2026-12-08 01:05:50,169")]
        with contextlib.suppress(ValueError):
            when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if "Traceback (most recent call last):" in line:
            found.append((when, line))
    return found


REFUSAL_LOGGERS = ("kopf", "raas_operator", "raas_node.agent.cluster")
"""Where the operator (kopf's API clients, the operator's own) and the robots' heartbeats log failures."""


class _Refusals(logging.Handler):
    """Warnings and errors of the operator and the heartbeats that say the API server refused them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[tuple[float, str]] = []
        """(when, message) of each refusal."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(refusal in message for refusal in REFUSALS):
            self.messages.append((record.created, message))


class World:
    """Robots (real agents on simulated pendulums, each keeping its Robot object), a stand-in
    kubelet playing one node per robot plus a worker node, and the operator, which can be
    stopped and started again, on `plane` (charts/raas installed).

    Every node runs its pods with `runtime` (podman: real containers). Robot nodes ``pi-<n>`` are
    labelled and tainted ``raas.dev/robot=<robot>`` and offer the hostPath ``/run/raas`` (their
    agent's socket folder); the worker node gets the rest (fetch pods). Network, as the chart's
    NetworkPolicies allow it but narrower: a job pod's init container reaches the S3 server only,
    its controller nothing; a fetch pod (``raas.dev/egress=git``) reaches the git server and S3.
    The operator needs `use_kubeconfig` and `operator_environment` done first.
    """

    def __init__(
        self,
        plane: ControlPlane,
        s3: S3Server,
        git_server: GitServer,
        robots: list[str],
        stack: contextlib.ExitStack,
        runtime: Runtime,
        fetch_endpoints: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.plane = plane
        self.store = S3ResultStore(s3.endpoint, "raas", "raas-secret", "raas-results", secure=False)
        self.api = stack.enter_context(plane.api_client())
        """The admin's client (the tests' eyes and hands; no component uses it)."""
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        stack.callback(self._clean_up, list(robots))
        self.refusals = _Refusals()
        self.warming: list[tuple[float, float]] = []
        """(start, end) of each API server restart and its warm-up (`restart_api_server`)."""
        for name in REFUSAL_LOGGERS:
            logging.getLogger(name).addHandler(self.refusals)
            stack.callback(logging.getLogger(name).removeHandler, self.refusals)
        agents_client = stack.enter_context(plane.api_client(token_for(plane, *AGENT)))
        agents_api = client.CustomObjectsApi(agents_client)
        self.agents: dict[str, RobotAgent] = {}
        self.heartbeats: dict[str, RobotHeartbeat] = {}
        for index, robot in enumerate(robots, start=1):
            agent = stack.enter_context(running_agent(SimDriver(PendulumParams()), robot=robot))
            self.agents[robot] = agent
            self.heartbeats[robot] = RobotHeartbeat(
                agent, agents_api, robot=robot, node=f"pi-{index}", interval_s=0.2, job_namespace=NAMESPACE,
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
        self.kubelet = StandInKubelet(plane, nodes, namespaces=[NAMESPACE]).start()
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

    def events(self, name: str) -> list[str]:
        """The Events about RaasJob `name`, oldest first, as "reason: message" (for failure messages)."""
        listing = self.core.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={name}")
        ordered = sorted(listing.items, key=lambda event: event.metadata.creation_timestamp)
        return [f"{event.reason}: {event.message}" for event in ordered]

    def restart_api_server(self) -> None:
        """Restart the control plane's API server (`ControlPlane.restart_apiserver`), noting when:
        `check_clean` forgives refusals of the `RBAC_WARMING_S` after it."""
        started = time.time()
        self.plane.restart_apiserver()
        self.warming.append((started, time.time() + RBAC_WARMING_S))

    def _warming(self, when: float) -> bool:
        return any(start <= when <= end for start, end in self.warming)

    def check_clean(self) -> None:
        """No failure of the stand-in kubelet, no traceback of an operator, and no request of the
        operator or the agents that the API server refused (the chart's RBAC is enforced there).

        Refusals (and the tracebacks of the retries they caused) while a restarted API server
        warms up are forgiven: it serves before its RBAC informers have synced, and refuses what
        the chart grants for a moment. Clients behind a load balancer never meet a server that is
        not ready; ours reconnect to it directly."""
        assert self.kubelet.errors == [], "\n".join(self.kubelet.errors)
        for output in self.outputs:
            unexplained = [block for when, block in _tracebacks(output) if not self._warming(when)]
            assert unexplained == [], output
        # (The operators' loggers, not their whole output: a test's own client may be refused on purpose.)
        refused = [message for when, message in self.refusals.messages if not self._warming(when)]
        assert refused == [], "\n".join(refused)

    def _clean_up(self, robots: list[str]) -> None:
        """Leave the session's job namespace as found: no RaasJob (finalizers dropped: the operator is
        gone), pod, Secret or event of this world, no Robot of its robots."""
        group, version = "raas.dev", "v1alpha1"
        listing = cast(dict[str, Any], self.custom.list_namespaced_custom_object(group, version, NAMESPACE, "raasjobs"))
        jobs = listing["items"]
        for job in jobs:
            name = job["metadata"]["name"]
            with contextlib.suppress(client.exceptions.ApiException):
                self.custom.patch_namespaced_custom_object(
                    group, version, NAMESPACE, "raasjobs", name, {"metadata": {"finalizers": None}},
                    _content_type="application/merge-patch+json",
                )  # fmt: skip
            with contextlib.suppress(client.exceptions.ApiException):
                self.custom.delete_namespaced_custom_object(group, version, NAMESPACE, "raasjobs", name)
        self.core.delete_collection_namespaced_pod(NAMESPACE, grace_period_seconds=0)
        secrets = json.loads(cast(Any, self.core.list_namespaced_secret(NAMESPACE, _preload_content=False)).data)
        for secret in secrets["items"]:
            name = secret["metadata"]["name"]
            if secret.get("type") != "kubernetes.io/service-account-token" and not name.startswith("sh.helm"):
                with contextlib.suppress(client.exceptions.ApiException):
                    self.core.delete_namespaced_secret(name, NAMESPACE)
        self.core.delete_collection_namespaced_event(NAMESPACE)
        for robot in robots:
            with contextlib.suppress(client.exceptions.ApiException):
                self.custom.patch_cluster_custom_object(
                    group, version, "robots", robot, {"metadata": {"finalizers": None}},
                    _content_type="application/merge-patch+json",
                )  # fmt: skip
                self.custom.delete_cluster_custom_object(group, version, "robots", robot)
