"""The container images (images/<name>/Containerfile): lint-clean, built for real, and the job image
running a job exactly as the operator's pods run it.

* Every Containerfile passes hadolint with no finding, and each inline ignore is needed and has a
  comment above it saying why.
* The job image is the one `ensure_runtime_image` builds (the same recipe folder; cached per
  machine). Its fetch pod and job pod are the operator's own pod objects (`raas_operator.pods.builder`)
  run container by container with podman, as a kubelet would: every restriction the pod spec states
  becomes the matching ``podman run`` flag (uid/gid 65534, read-only root, all capabilities dropped,
  no privilege escalation, memory and CPU limits, emptyDirs owned by the fsGroup, the code mounted
  read-only at /code). Networks: the fetch pod and the init container reach git and S3 on
  127.0.0.1 (host network: the chart's NetworkPolicies are not under test here); the controller
  container has no network at all. The kubelet's pid limit (a node setting) is ``--pids-limit``.
* The other images (api, operator, agent) are built with ``images/build.py`` from the same
  debootstrapped base, and their entry commands start.

Needs root and podman (``scripts/install-system-deps``), the Debian mirror and PyPI for the first
build; skipped only when podman cannot run containers at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from agent_fixtures import running_agent
from git_server import GitServer, running_git_server
from minio import Minio
from podman_checks import podman_unusable
from s3_server import S3Server, running_s3_server

from gym_raas.params import PendulumParams
from raas_node.agent.agent import SessionResult
from raas_node.drivers.sim_driver import SimDriver
from raas_node.runner.image import IMAGE_PYTHON, JOB_IMAGE_FOLDER, ensure_runtime_image
from raas_node.runner.image_build import BASE_IMAGE, base_image_tag, debian_architecture, host_machine
from raas_operator.jobs.model import GitSource, JobSpec
from raas_operator.pods.builder import PodSettings, fetch_pod, job_pod

REPOSITORY = Path(__file__).resolve().parents[2]
IMAGES = REPOSITORY / "images"
IMAGE_NAMES = ("api", "operator", "agent", "job")
HADOLINT = Path(sys.executable).with_name("hadolint")
SWINGUP = REPOSITORY / "examples" / "swingup" / "run.py"
NOBODY = 65534
KUBELET_PIDS_LIMIT = 256
"""The kubelet's podPidsLimit on the robot nodes (a node setting, not part of the pod spec)."""
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
"""Hard rlimits cannot be raised on these machines (TESTING.md); nproc capped at pid_max."""
BUCKET = "raas-results"


# --- lint -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_every_containerfile_is_hadolint_clean(name: str) -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(IMAGES / name / "Containerfile")], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_every_hadolint_ignore_is_needed_and_explained(name: str) -> None:
    lines = (IMAGES / name / "Containerfile").read_text().splitlines()
    stripped = "\n".join(line for line in lines if not line.startswith("# hadolint ignore="))
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--format", "json", "-"],
        input=stripped,
        capture_output=True,
        text=True,
        check=False,
    )
    reported = {finding["code"] for finding in json.loads(result.stdout)}
    for number, line in enumerate(lines):
        match = re.match(r"# hadolint ignore=(\S+)$", line)
        if match is None:
            continue
        rules = set(match.group(1).split(","))
        assert rules <= reported, f"{name}: ignoring {rules - reported}, which hadolint does not report"
        explanation = lines[number - 1] if number else ""
        assert explanation.startswith("# "), f"{name}: {line} has no comment above it saying why"
        assert "hadolint" not in explanation, f"{name}: {line} has no comment above it saying why"


# --- what the deployment contract needs of the images (docs/contracts) ---------------------------


def _instructions(name: str) -> list[tuple[str, str]]:
    text = (IMAGES / name / "Containerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1] if " " in line else "")
        for line in logical.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_each_image_has_a_base_argument_labels_and_the_contract_interpreter(name: str) -> None:
    instructions = _instructions(name)
    assert instructions[0] == ("ARG", "BASE_IMAGE=docker.io/library/debian:12.12-slim")
    assert instructions[1] == ("FROM", "${BASE_IMAGE}")
    labels = " ".join(argument for keyword, argument in instructions if keyword == "LABEL")
    assert f'org.opencontainers.image.title="raas-{name}"' in labels
    for label in ("description", "source", "licenses", "version", "revision"):
        assert f"org.opencontainers.image.{label}=" in labels
    runs = " ".join(argument for keyword, argument in instructions if keyword == "RUN")
    assert "--no-install-recommends" in runs
    assert "python3 -m venv /opt/raas" in runs
    assert "--no-index" in runs
    assert not re.search(r"\b(gcc|g\+\+|build-essential|python3-dev|make)\b", runs), "no build tools in the image"
    assert not any(keyword == "ENTRYPOINT" for keyword, _ in instructions), "pods give the command"
    users = [argument for keyword, argument in instructions if keyword == "USER"]
    # The agent runs as root by contract (it creates its socket folder on the host); the rest never.
    assert users[-1] == ("0:0" if name == "agent" else f"{NOBODY}:{NOBODY}")


def test_the_job_image_recipe_is_one_file_shared_with_ensure_runtime_image() -> None:
    assert (IMAGES / "job" / "Containerfile").resolve() == (JOB_IMAGE_FOLDER / "Containerfile").resolve()
    assert (IMAGES / "job" / "requirements.txt").resolve() == (JOB_IMAGE_FOLDER / "requirements.txt").resolve()


# --- the job image, running the operator's pods --------------------------------------------------


@pytest.fixture(scope="module")
def job_image() -> str:
    """The job image (`ensure_runtime_image` builds images/job's recipe; once per machine)."""
    reason = podman_unusable()
    if reason is not None:
        pytest.skip(reason)
    return ensure_runtime_image()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with running_git_server(tmp_path_factory.mktemp("git")) as server:
        yield server


def _minio(s3: S3Server) -> Minio:
    client = Minio(s3.endpoint, access_key="raas", secret_key="raas-secret", secure=False, region="us-east-1")
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    return client


def _quantity_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def _cpus(quantity: str) -> str:
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else quantity


class PodVolumes:
    """A pod's volumes on this host: emptyDirs as folders owned by the pod's fsGroup, hostPaths as given."""

    def __init__(self, pod: Mapping[str, Any], host_paths: Mapping[str, Path]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="raas-pod-"))
        group = pod["spec"]["securityContext"]["fsGroup"]
        self.paths: dict[str, Path] = {}
        for volume in pod["spec"]["volumes"]:
            if "emptyDir" in volume:
                folder = self.root / volume["name"]
                folder.mkdir()
                os.chown(folder, group, group)
                folder.chmod(0o2775)
                self.paths[volume["name"]] = folder
            else:
                self.paths[volume["name"]] = host_paths[volume["hostPath"]["path"]]

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def podman_run(
    image: str,
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    volumes: PodVolumes,
    *,
    network: str,
    secrets: Mapping[tuple[str, str], str] | None = None,
    extra_mounts: Mapping[str, Path] | None = None,
    timeout_s: float = 180,
) -> subprocess.CompletedProcess[str]:
    """Run one container of `pod` as a kubelet would, every restriction of its spec a podman flag."""
    security = {**pod["spec"]["securityContext"], **container["securityContext"]}
    limits = container["resources"]["limits"]
    memory = _quantity_bytes(limits["memory"])
    arguments = ["podman", "run", "--rm", "--runtime", "runc", "--pull=never", *ULIMITS, "--network", network]
    arguments += ["--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
    arguments += ["--group-add", str(pod["spec"]["securityContext"]["fsGroup"])]
    if security["readOnlyRootFilesystem"]:
        arguments.append("--read-only")
    for capability in security["capabilities"]["drop"]:
        arguments += ["--cap-drop", capability]
    if security["allowPrivilegeEscalation"] is False:
        arguments += ["--security-opt", "no-new-privileges"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"  # podman's default profile
    arguments += ["--memory", str(memory), "--memory-swap", str(memory), "--cpus", _cpus(limits["cpu"])]
    arguments += ["--pids-limit", str(KUBELET_PIDS_LIMIT)]
    for mount in container["volumeMounts"]:
        source = volumes.paths[mount["name"]]
        readonly = ",readonly" if mount.get("readOnly") else ""
        arguments += ["--mount", f"type=bind,source={source},target={mount['mountPath']}{readonly}"]
    for target, source in (extra_mounts or {}).items():
        arguments += ["--mount", f"type=bind,source={source},target={target}"]
    for variable in container.get("env", []):
        if "value" in variable:
            arguments += ["--env", f"{variable['name']}={variable['value']}"]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            arguments += ["--env", f"{variable['name']}={(secrets or {})[(reference['name'], reference['key'])]}"]
    if "workingDir" in container:
        arguments += ["--workdir", container["workingDir"]]
    arguments += [image, *container["command"]]
    # conmon writes an "oom" file into its working folder (cgroup v1): keep it out of the repository.
    return subprocess.run(arguments, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=volumes.root)


def _settings(image: str) -> PodSettings:
    return PodSettings(image=image)


def _job_pod(image: str, entrypoint: str, code_url: str) -> dict[str, Any]:
    spec = JobSpec(owner="ada", source=GitSource(url="git://127.0.0.1/ctl.git"), entrypoint=entrypoint, time_limit_s=60)
    return job_pod(
        job_name="swing", namespace="raas-jobs", job_uid="uid-1", spec=spec, robot="pendulum-t1", commit="0" * 40,
        code_url=code_url, settings=_settings(image),
    )  # fmt: skip


def _upload_code(s3: S3Server, key: str, files: Mapping[str, bytes], scratch: Path) -> str:
    """``code.tar.gz`` of `files` in the bucket; a presigned GET URL for the init container."""
    archive = scratch / "code.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        for name, content in files.items():
            source = scratch / name
            source.write_bytes(content)
            bundle.add(source, arcname=name)
    client = _minio(s3)
    client.fput_object(BUCKET, key, str(archive))
    return client.presigned_get_object(BUCKET, key, expires=timedelta(minutes=10))


def _run_job_pod(
    image: str, pod: dict[str, Any], host_paths: Mapping[str, Path], token: str
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """The init container (downloads the code), then the controller: their results."""
    volumes = PodVolumes(pod, host_paths)
    try:
        init = podman_run(image, pod, pod["spec"]["initContainers"][0], volumes, network="host")
        assert init.returncode == 0, init.stderr
        secrets = {("swing-session", "token"): token}
        return init, podman_run(image, pod, pod["spec"]["containers"][0], volumes, network="none", secrets=secrets)
    finally:
        volumes.remove()


@pytest.fixture
def agent_socket_folder() -> Iterator[Path]:
    """An empty folder standing in for the robot node's /run/raas (no agent behind it)."""
    folder = Path(tempfile.mkdtemp(prefix="raas-run-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


PROBE = r"""
import importlib, json, os, socket, subprocess
def attempt(action):
    try:
        action()
        return "ok"
    except OSError as error:
        return error.strerror
def write(path):
    with open(path, "w") as sink:
        sink.write("x")
libraries = {name: importlib.import_module(name).__version__
             for name in ("numpy", "scipy", "gymnasium", "pandas", "sklearn", "matplotlib", "pyarrow")}
importlib.import_module("gym_raas"), importlib.import_module("raas_node.runner.fetch_pod")
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
probe = socket.socket()
probe.settimeout(5)
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "home": os.environ["HOME"],
    "cap_eff": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
    "interfaces": sorted(os.listdir("/sys/class/net")),
    "connect": attempt(lambda: probe.connect(("192.0.2.1", 80))),  # TEST-NET-1: never routed
    "writes": {path: attempt(lambda: write(path)) for path in
               ("/code/x", "/opt/raas/x", "/etc/x", "/x", "/home/raas/x", "/tmp/x")},
    "libraries": libraries,
    "git": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
}))
"""


def _swing_up_in_a_job_pod(image: str, s3: S3Server) -> tuple[subprocess.CompletedProcess[str], SessionResult | None]:
    """The example swing-up, fetched by the init container, driving a real agent (simulated robot)
    through the socket folder: the controller container's result and the agent's session."""
    scratch = Path(tempfile.mkdtemp(prefix="raas-code-"))
    try:
        url = _upload_code(s3, "results/v1/swing/code.tar.gz", {"run.py": SWINGUP.read_bytes()}, scratch)
        with running_agent(SimDriver(PendulumParams())) as agent:
            socket_folder = agent.config.socket_path.parent
            socket_folder.chmod(0o755)
            os.chown(agent.config.socket_path, -1, NOBODY)  # the agent's socket group, as on a robot node
            agent.config.socket_path.chmod(0o660)
            token = agent.expect("swing")
            pod = _job_pod(image, "run.py", url)
            _, controller = _run_job_pod(image, pod, {"/run/raas": socket_folder}, token)
            return controller, agent.end_job("swing")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_the_job_pod_runs_the_example_controller_against_a_robot_agent(job_image: str, s3: S3Server) -> None:
    controller, session = _swing_up_in_a_job_pod(job_image, s3)
    assert controller.returncode == 0, controller.stderr
    assert "done: 200 steps" in controller.stdout
    assert "[swing]" in controller.stdout
    assert session is not None
    assert (session.steps, session.outcome) == (200, "completed")


def test_the_job_pod_confines_the_controller(job_image: str, s3: S3Server, agent_socket_folder: Path) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="raas-code-"))
    try:
        url = _upload_code(s3, "results/v1/probe/code.tar.gz", {"probe.py": PROBE.encode()}, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    pod = _job_pod(job_image, "probe.py", url)
    _, controller = _run_job_pod(job_image, pod, {"/run/raas": agent_socket_folder}, "token")
    assert controller.returncode == 0, controller.stderr
    report = json.loads(controller.stdout)
    assert (report["uid"], report["gid"], report["home"]) == (NOBODY, NOBODY, "/home/raas")
    assert report["cap_eff"] == "0000000000000000"
    assert report["no_new_privs"] == "1"
    assert report["interfaces"] == ["lo"]
    assert report["connect"] == "Network is unreachable"
    assert report["writes"] == {
        "/code/x": "Read-only file system",
        "/opt/raas/x": "Read-only file system",
        "/etc/x": "Read-only file system",
        "/x": "Read-only file system",
        "/home/raas/x": "ok",
        "/tmp/x": "ok",
    }
    assert set(report["libraries"]) == {"numpy", "scipy", "gymnasium", "pandas", "sklearn", "matplotlib", "pyarrow"}
    assert report["git"].startswith("git version ")


def test_the_job_pod_memory_limit_kills_a_controller_that_exceeds_it(
    job_image: str, s3: S3Server, agent_socket_folder: Path
) -> None:
    hog = b"import sys\nblock = b'x' * (768 * 2**20)\nprint('survived', len(block))\n"
    scratch = Path(tempfile.mkdtemp(prefix="raas-code-"))
    try:
        url = _upload_code(s3, "results/v1/hog/code.tar.gz", {"hog.py": hog}, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    pod = _job_pod(job_image, "hog.py", url)
    assert _quantity_bytes(pod["spec"]["containers"][0]["resources"]["limits"]["memory"]) < 768 * 2**20
    _, controller = _run_job_pod(job_image, pod, {"/run/raas": agent_socket_folder}, "token")
    assert controller.returncode == 137  # SIGKILL by the cgroup's OOM killer
    assert "survived" not in controller.stdout


def test_the_fetch_pod_clones_and_uploads_the_code_from_the_job_image(
    job_image: str, s3: S3Server, git_server: GitServer
) -> None:
    commit = git_server.publish("ctl", {"run.py": "print('hi')\n"})
    client = _minio(s3)
    upload_url = client.presigned_put_object(BUCKET, "results/v1/fetched/code.tar.gz", expires=timedelta(minutes=10))
    environment = {
        "RAAS_SOURCE_URL": git_server.url("ctl"),
        "RAAS_SOURCE_REF": "main",
        "RAAS_CODE_UPLOAD_URL": upload_url,
    }
    pod = fetch_pod(
        job_name="fetched", namespace="raas-jobs", job_uid="uid-2", settings=_settings(job_image),
        command=[IMAGE_PYTHON, "-m", "raas_node.runner.fetch_pod"], environment=environment,
    )  # fmt: skip
    volumes = PodVolumes(pod, {})
    termination_log = volumes.root / "termination-log"
    termination_log.touch()
    os.chown(termination_log, NOBODY, NOBODY)
    try:
        extra = {"/dev/termination-log": termination_log}
        result = podman_run(job_image, pod, pod["spec"]["containers"][0], volumes, network="host", extra_mounts=extra)
        message = termination_log.read_text()
    finally:
        volumes.remove()
    assert result.returncode == 0, result.stderr
    assert message == commit
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "code.tar.gz"
        client.fget_object(BUCKET, "results/v1/fetched/code.tar.gz", str(archive))
        with tarfile.open(archive) as bundle:
            assert "run.py" in bundle.getnames()


# --- the other images, built with images/build.py -------------------------------------------------


@pytest.fixture(scope="module")
def base_image() -> str:
    """``--base debootstrap``: images/build.py debootstraps and imports it unless podman has it."""
    reason = podman_unusable()
    if reason is not None:
        pytest.skip(reason)
    return "debootstrap"


def _image_id(tag: str) -> str | None:
    inspect = ["podman", "image", "inspect", "--format", "{{.Id}}", tag]
    result = subprocess.run(inspect, capture_output=True, text=True, timeout=60, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _build(name: str, base: str) -> str:
    """``images/build.py <name>``; the tag stays (its layers are the next run's cache), a replaced image goes."""
    tag = f"localhost/raas-{name}:test"
    previous = _image_id(tag)
    result = subprocess.run(
        [sys.executable, str(IMAGES / "build.py"), name, "--base", base, "--tag", tag],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == tag
    if previous is not None and previous != _image_id(tag):
        subprocess.run(["podman", "rmi", previous], capture_output=True, timeout=120, check=False)
    return tag


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "command", "expected"),
    [
        ("api", ["raas", "serve", "--help"], "usage: raas serve"),
        ("operator", ["raas-operator", "--help"], "usage: raas-operator"),
        ("agent", ["raas-agent", "run", "--help"], "usage: raas-agent run"),
    ],
)
def test_the_service_images_build_offline_and_their_commands_start(
    base_image: str, name: str, command: list[str], expected: str
) -> None:
    tag = _build(name, base_image)
    inspect = subprocess.run(["podman", "image", "inspect", tag], capture_output=True, text=True, check=True)
    config = json.loads(inspect.stdout)[0]["Config"]
    assert config["User"] == ("0:0" if name == "agent" else f"{NOBODY}:{NOBODY}")
    assert config["Labels"]["org.opencontainers.image.title"] == f"raas-{name}"
    run = subprocess.run(
        ["podman", "run", "--rm", "--runtime", "runc", *ULIMITS, "--network", "none", "--read-only",
         "--cap-drop", "ALL", tag, *command],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert expected in run.stdout
    assert config["Cmd"][0] == command[0]


def test_each_architecture_has_its_own_debootstrapped_base() -> None:
    foreign = "arm64" if host_machine() == "x86_64" else "amd64"
    assert base_image_tag() == base_image_tag(host_machine()) == BASE_IMAGE
    assert base_image_tag(foreign) == f"{BASE_IMAGE}-{foreign}"
    assert debian_architecture("aarch64") == "arm64"
    assert debian_architecture("x86_64") == "amd64"


@pytest.fixture(scope="module")
def arm64_job_image() -> str:
    """The job image for the Raspberry Pis (arm64), built on this machine with images/build.py from
    a debootstrapped arm64 Debian; its build steps run under qemu-user-static (binfmt_misc), as
    scripts/install-system-deps sets up. Kept between runs: its layers are the next build's cache."""
    reason = podman_unusable()
    if reason is not None:
        pytest.skip(reason)
    tag = "localhost/raas-job:test-arm64"
    previous = _image_id(tag)
    result = subprocess.run(
        [sys.executable, str(IMAGES / "build.py"), "job", "--base", "debootstrap", "--arch", "arm64", "--tag", tag],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    if previous is not None and previous != _image_id(tag):
        subprocess.run(["podman", "rmi", previous], capture_output=True, timeout=120, check=False)
    return tag


@pytest.mark.slow
def test_the_job_image_for_the_raspberry_pis_is_arm64_and_runs_the_example_controller(
    arm64_job_image: str, s3: S3Server
) -> None:
    """Built for arm64 and run here under emulation with the job pod's restrictions: the init
    container fetches the code, the controller drives a real agent through the socket."""
    inspect = subprocess.run(
        ["podman", "image", "inspect", arm64_job_image], capture_output=True, text=True, check=True
    )
    assert json.loads(inspect.stdout)[0]["Architecture"] == "arm64"
    probe = subprocess.run(
        ["podman", "run", "--rm", "--runtime", "runc", "--pull=never", "--platform", "linux/arm64", *ULIMITS,
         "--network", "none", "--read-only",
         "--user", f"{NOBODY}:{NOBODY}", arm64_job_image, "/opt/raas/bin/python3", "-c",
         "import platform, numpy, scipy, gymnasium, gym_raas, raas_node; print(platform.machine())"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "aarch64"
    controller, session = _swing_up_in_a_job_pod(arm64_job_image, s3)
    assert controller.returncode == 0, controller.stderr
    assert "done: 200 steps" in controller.stdout
    assert session is not None
    assert (session.steps, session.outcome) == (200, "completed")


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_each_image_install_step_resolves_offline_for_arm64(name: str) -> None:
    """The Raspberry Pi architecture: its wheelhouse (built on this amd64 host) holds every wheel."""
    result = subprocess.run(
        [sys.executable, str(IMAGES / "build.py"), name, "--arch", "arm64", "--check-offline"],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    resolved = {line.split("==")[0].lower() for line in result.stdout.split()}
    expected = {"job": "raas-node", "agent": "pigpio", "operator": "kopf", "api": "fastapi"}[name]
    assert {"gym-raas", "numpy", expected} <= resolved
