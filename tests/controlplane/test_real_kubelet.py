"""The real kubelet (``tests/controlplane/real_kubelet.py``) as a node of the session's control plane.

The upstream kubelet of the control plane's release, on Debian's containerd and runc, registered as
a robot node (label and taint ``raas.dev/robot=<robot>``) and used the way a lab would notice:

- it registers a Ready Node with its InternalIP, version, runtime and taint;
- a pod is bound to it by the real scheduler, runs, waits for ``kubectl exec``, succeeds, and
  its log is read through the API server (``kubectl logs``) and from the kubelet's own API;
- a graceful delete sends SIGTERM: a container that traps it exits 0 before the pod is removed;
- the run pod exactly as the operator builds it (``raas_operator.pods.job_pod``) runs there on the
  project's runtime image: its init container downloads the code over the pod network, the
  controller runs it as uid 65534 with a read-only root and its session token, and it succeeds;
- `RealKubelet.stop` with a pod still running leaves no process, mount namespace, cgroup, bridge,
  temp folder or Node behind; and what a test run killed outright leaves (its pod and shims live
  on in their cgroups) is removed by `remove_leftovers`, which every start runs first.

Needs root, containerd and runc (``scripts/install-system-deps``) and the kubelet
(``tests/controlplane/build.sh``); without them the tests fail with what to run, they do not skip.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import kubernetes
import pytest
from controlplane.cluster import ControlPlane
from controlplane.real_kubelet import (
    TOOLBOX_IMAGE,
    RealKubelet,
    cgroup_hierarchies,
    cgroup_processes,
    process_cgroup_hierarchy,
    processes_in_mount_namespace,
    remove_leftovers,
)

from raas_node.runner.image import IMAGE_PYTHON, ensure_runtime_image
from raas_operator.jobs.model import JobSpec
from raas_operator.pods import PodSettings, job_pod, session_secret

pytestmark = pytest.mark.slow

ROBOT_LABEL = "raas.dev/robot"
ROBOT = "real-pi-1"
WAIT = "120s"
CRDS = Path(__file__).resolve().parents[2] / "manifests" / "crds"
JOB_PROGRAM = """\
import errno, hashlib, os

def refused(path):
    try:
        open(path, "w").close()
    except OSError as error:
        return error.errno
    return 0

token = hashlib.sha256(os.environ["RAAS_SESSION_TOKEN"].encode()).hexdigest()[:12]
print("job", os.environ["RAAS_JOB"], "at", os.environ["RAAS_COMMIT"][:7], "as", os.getuid(), os.getgid())
print("token", token, "agent folder", os.path.isdir("/run/raas"))
print("root", errno.errorcode[refused("/probe")], "code", errno.errorcode[refused("/code/probe")])
"""


@pytest.fixture(scope="module")
def real_node(control_plane: ControlPlane) -> Iterator[RealKubelet]:
    """One real kubelet for the module, labelled and tainted as a robot node."""
    with RealKubelet(
        control_plane, ROBOT, labels={ROBOT_LABEL: ROBOT}, taints=[f"{ROBOT_LABEL}={ROBOT}:NoSchedule"]
    ) as node:
        yield node


def toolbox_pod(name: str, script: str, robot: str = ROBOT) -> dict[str, Any]:
    """A busybox pod pinned to robot node `robot` (selector and toleration), running `script`."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "nodeSelector": {ROBOT_LABEL: robot},
            "tolerations": [{"key": ROBOT_LABEL, "operator": "Equal", "value": robot, "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "main",
                    "image": TOOLBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", script],
                }
            ],
        },
    }


def create(plane: ControlPlane, namespace: str, pod: dict[str, Any]) -> None:
    plane.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(pod))


def wait_phase(plane: ControlPlane, namespace: str, name: str, phase: str) -> None:
    plane.kubectl("-n", namespace, "wait", f"--for=jsonpath={{.status.phase}}={phase}", f"--timeout={WAIT}",
                  f"pod/{name}")  # fmt: skip


def wait_log(plane: ControlPlane, namespace: str, name: str, line: str) -> None:
    """Until pod `name`'s log has `line` (within two minutes)."""
    deadline = time.monotonic() + 120
    while line not in plane.kubectl("-n", namespace, "logs", name, check=False).stdout.splitlines():
        assert time.monotonic() < deadline, f"pod {name} never logged {line!r}"
        time.sleep(0.2)


def get_pod(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(plane.kubectl("-n", namespace, "get", "pod", name, "-o", "json").stdout)
    return found


def test_the_kubelet_registers_a_ready_robot_node(control_plane: ControlPlane, real_node: RealKubelet) -> None:
    node = json.loads(control_plane.kubectl("get", "node", ROBOT, "-o", "json").stdout)
    conditions = {condition["type"]: condition["status"] for condition in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    server = json.loads(control_plane.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == server
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert {"type": "InternalIP", "address": real_node.address} in node["status"]["addresses"]
    assert node["metadata"]["labels"][ROBOT_LABEL] == ROBOT
    assert {"key": ROBOT_LABEL, "value": ROBOT, "effect": "NoSchedule"} in node["spec"]["taints"]


def test_a_pod_is_scheduled_runs_succeeds_and_its_log_is_read(
    control_plane: ControlPlane, real_node: RealKubelet, namespace: str
) -> None:
    script = 'echo "hello from $(hostname)"; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo released'
    create(control_plane, namespace, toolbox_pod("gate", script))
    wait_phase(control_plane, namespace, "gate", "Running")
    running = get_pod(control_plane, namespace, "gate")
    assert running["spec"]["nodeName"] == ROBOT
    events = json.loads(
        control_plane.kubectl(
            "-n", namespace, "get", "events", "--field-selector=reason=Scheduled", "-o", "json"
        ).stdout
    )["items"]
    assert [event["source"].get("component") or event.get("reportingComponent") for event in events] == [
        "default-scheduler"
    ]
    assert real_node.subnet is not None
    assert ipaddress.ip_address(running["status"]["podIP"]) in real_node.subnet

    control_plane.kubectl("-n", namespace, "exec", "gate", "--", "touch", "/tmp/go")
    wait_phase(control_plane, namespace, "gate", "Succeeded")
    done = get_pod(control_plane, namespace, "gate")
    (status,) = done["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 0
    expected = "hello from gate\nreleased\n"
    assert control_plane.kubectl("-n", namespace, "logs", "gate").stdout == expected
    url = f"{real_node.url}/containerLogs/{namespace}/gate/main"
    with urllib.request.urlopen(url, timeout=30, context=real_node.kubelet_tls()) as response:
        assert response.read().decode() == expected


def test_a_graceful_delete_sends_sigterm_before_the_pod_goes(
    control_plane: ControlPlane, real_node: RealKubelet, namespace: str
) -> None:
    script = 'trap "echo got TERM; exit 0" TERM; echo ready; while true; do sleep 1 & wait $!; done'
    create(control_plane, namespace, toolbox_pod("graceful", script))
    wait_log(control_plane, namespace, "graceful", "ready")  # its trap is set
    with control_plane.api_client() as client:
        core = kubernetes.client.CoreV1Api(client)
        version = get_pod(control_plane, namespace, "graceful")["metadata"]["resourceVersion"]
        watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        core.delete_namespaced_pod("graceful", namespace, grace_period_seconds=30)
        last: dict[str, Any] = {}
        for event in watch.stream(  # type: ignore[no-untyped-call]
            core.list_namespaced_pod,
            namespace,
            field_selector="metadata.name=graceful",
            resource_version=version,
            timeout_seconds=120,
        ):
            if event["type"] == "DELETED":
                break
            last = cast(dict[str, Any], client.sanitize_for_serialization(event["object"]))
        watch.stop()  # type: ignore[no-untyped-call]
    (status,) = last["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 0  # 143 had the trap not run, 137 for SIGKILL


@pytest.fixture
def code_server(real_node: RealKubelet) -> Iterator[str]:
    """An HTTP server on the node's bridge address (the only address its pods reach) serving
    ``code.tar.gz`` with ``run.py`` = `JOB_PROGRAM`; yields the URL."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as bundle:
        info = tarfile.TarInfo("run.py")
        info.size = len(JOB_PROGRAM.encode())
        bundle.addfile(info, io.BytesIO(JOB_PROGRAM.encode()))
    folder = real_node.folder / "code-server"
    folder.mkdir()
    (folder / "code.tar.gz").write_bytes(gzip.compress(archive.getvalue()))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((real_node.address, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{real_node.address}:{server.server_address[1]}/code.tar.gz"
    finally:
        server.shutdown()
        server.server_close()


def test_the_operators_job_pod_runs_on_the_real_kubelet(
    control_plane: ControlPlane, real_node: RealKubelet, namespace: str, code_server: str
) -> None:
    image = ensure_runtime_image()
    real_node.import_podman_image(image)
    control_plane.kubectl("apply", "-f", str(CRDS))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
    spec = JobSpec.model_validate(
        {"owner": "ada", "source": {"kind": "git", "url": "https://git.example.org/ada/c.git"}, "entrypoint": "run.py",
         "robot": {"name": ROBOT}}
    )  # fmt: skip
    raasjob = {"apiVersion": "raas.dev/v1alpha1", "kind": "RaasJob", "metadata": {"name": "swingup"},
               "spec": spec.model_dump(mode="json", exclude_none=True)}  # fmt: skip
    create(control_plane, namespace, raasjob)
    uid = control_plane.kubectl("-n", namespace, "get", "rj", "swingup", "-o", "jsonpath={.metadata.uid}").stdout
    token = secrets.token_urlsafe(24)
    create(control_plane, namespace, session_secret("swingup", namespace, uid, token))
    agent = real_node.folder / "agent"
    agent.mkdir()
    settings = PodSettings(image=image, python=IMAGE_PYTHON, agent_socket_host_dir=str(agent))
    pod = job_pod(job_name="swingup", namespace=namespace, job_uid=uid, spec=spec, robot=ROBOT, commit="c" * 40,
                  code_url=code_server, settings=settings)  # fmt: skip
    create(control_plane, namespace, pod)
    name = pod["metadata"]["name"]
    wait_phase(control_plane, namespace, name, "Succeeded")
    digest = hashlib.sha256(token.encode()).hexdigest()[:12]
    assert control_plane.kubectl("-n", namespace, "logs", name, "-c", "controller").stdout.splitlines() == [
        "job swingup at ccccccc as 65534 65534",
        f"token {digest} agent folder True",
        "root EROFS code EROFS",
    ]


def assert_nothing_left(folder: Path, namespace_id: str, bridge: str, cgroup: str) -> None:
    """No process in the node's mount namespace (so no mount of it either), no temp folder, no
    cgroup in any hierarchy, no bridge."""
    assert processes_in_mount_namespace(namespace_id) == []
    assert not folder.exists()
    assert [hierarchy for hierarchy in cgroup_hierarchies() if (hierarchy / cgroup).exists()] == []
    links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True, check=True).stdout)
    assert bridge not in {link["ifname"] for link in links}


def test_stop_leaves_nothing_behind(control_plane: ControlPlane, namespace: str) -> None:
    robot = f"real-pi-{secrets.token_hex(2)}"
    node = RealKubelet(control_plane, robot, labels={ROBOT_LABEL: robot}, taints=[f"{ROBOT_LABEL}={robot}:NoSchedule"])
    with node:
        create(control_plane, namespace, toolbox_pod("left-running", "while true; do sleep 1; done", robot))
        wait_phase(control_plane, namespace, "left-running", "Running")
        folder, namespace_id, bridge, cgroup = node.folder, node.namespace, node.bridge, node.cgroup_name
        assert len(processes_in_mount_namespace(namespace_id)) >= 4  # holder, containerd, kubelet, shim...
    assert_nothing_left(folder, namespace_id, bridge, cgroup)
    deadline = time.monotonic() + 60
    while control_plane.kubectl("get", "node", robot, check=False).returncode == 0:
        assert time.monotonic() < deadline, "the Node object was not deleted"
        time.sleep(0.5)


KILLED_RUN = """\
import json, sys, time
from controlplane.cluster import ControlPlane
from controlplane.real_kubelet import RealKubelet
plane = ControlPlane()
plane.start()
robot = sys.argv[1]
node = RealKubelet(plane, robot, labels={"raas.dev/robot": robot}, taints=[f"raas.dev/robot={robot}:NoSchedule"])
node.start()
plane.kubectl("wait", "--for=create", "--timeout=60s", "serviceaccount/default")  # admission needs it
plane.kubectl("create", "-f", "-", input=sys.argv[2])
plane.kubectl("wait", "--for=jsonpath={.status.phase}=Running", "--timeout=120s", "pod/left-running")
facts = {"plane": str(plane.folder), "folder": str(node.folder), "namespace": node.namespace,
         "bridge": node.bridge, "cgroup": node.cgroup_name}
print(json.dumps(facts), flush=True)
time.sleep(600)
"""


def test_what_a_killed_test_run_left_is_removed_by_remove_leftovers() -> None:
    robot = f"real-pi-{secrets.token_hex(2)}"
    pod = json.dumps({**toolbox_pod("left-running", "while true; do sleep 1; done", robot),
                      "metadata": {"name": "left-running", "namespace": "default"}})  # fmt: skip
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, robot, pod],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert run.stdout is not None
    assert run.stderr is not None
    line = run.stdout.readline()
    run.send_signal(signal.SIGKILL)  # no stop(), no atexit: only the parent-death signals
    run.wait()
    assert line, f"the run did not get its pod running: {run.stderr.read()[-3000:]}"
    facts = json.loads(line)
    folder = Path(facts["folder"])
    try:
        assert cgroup_processes(process_cgroup_hierarchy() / facts["cgroup"] / "kubepods")  # the pod lives on
        assert folder in remove_leftovers()
        assert_nothing_left(folder, facts["namespace"], facts["bridge"], facts["cgroup"])
    finally:
        subprocess.run(["rm", "-rf", facts["plane"]], check=False)
