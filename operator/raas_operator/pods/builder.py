"""Pure builders of the Kubernetes objects a RaasJob owns: its job pod, fetch pod and session Secret.

Every function returns a plain ``dict`` ready for the API (tests assert on it as data); nothing
here talks to a cluster. The operator's handlers only adopt, create idempotently and patch.

**Job pod** (`job_pod`), one per attempt, named ``<job>-<attempt>``:

* pinned: ``nodeSelector raas.dev/robot=<robot>`` plus a toleration of the robot nodes' taint
  ``raas.dev/robot=<robot>:NoSchedule`` (it tolerates that robot's taint only);
* hardened: non-root uid/gid 65534 with ``fsGroup`` 65534, seccomp ``RuntimeDefault``, read-only
  root file system, no privilege escalation, every capability dropped, no service-account token,
  no service-link environment variables, ``restartPolicy: Never``;
* bounded: CPU, memory and ephemeral-storage requests and limits per container
  (`ContainerResources`), size limits on every emptyDir, ``activeDeadlineSeconds`` = the job's
  time limit + `PodSettings.start_margin_s` (the runner and agent enforce the exact limit; the
  deadline is the backstop that also covers image pull and code download);
* init container ``fetch-code``: downloads ``code.tar.gz`` from a presigned URL (env
  ``RAAS_CODE_URL``, only in this container) and unpacks it into the ``code`` emptyDir with
  Python's ``urllib`` and ``tarfile`` (`DOWNLOAD_SCRIPT`: plain files only — no links, devices,
  absolute paths or ``..`` — within a byte budget), run by the runtime image's own interpreter.
  Chosen over ``busybox wget | tar``: no second image to pull onto each Pi, and busybox ``tar``
  has no protection against hostile member paths;
* main container ``controller``: ``python -u <entrypoint>`` in ``/code`` (mounted read-only, so
  the code that runs is exactly the stored snapshot), HOME ``/home/raas`` and ``/tmp`` on
  writable emptyDirs, ``RAAS_AGENT_SOCKET=/run/raas/agent.sock`` (the agent's socket folder from
  the host, hostPath type Directory, read-only: connecting to a Unix socket needs no writable
  mount), ``RAAS_JOB=<job>``, ``RAAS_COMMIT``, ``RAAS_CONTROL_HZ`` (the job's rate, which the env asks the
  robot for), and ``RAAS_SESSION_TOKEN`` from the job's session
  Secret (key ``token``);
* owned by the RaasJob (``controller``, ``blockOwnerDeletion``), labelled ``raas.dev/job``,
  ``raas.dev/robot`` and ``app.kubernetes.io/managed-by=raas-operator``.

**Session Secret** (`session_secret`): ``<job>-session``, key ``token``, immutable, owned by the
RaasJob. The agent accepts exactly one session with that token.

**Fetch pod** (`fetch_pod`): ``<job>-fetch``, the only pod with egress to git hosts (label
``raas.dev/egress=git``, which the chart's NetworkPolicy selects). Same hardening, not pinned to
a robot (robot nodes are tainted, so it never lands on one). It runs the command it is given with
the environment it is given: the fetch entrypoint (clone, pack, upload ``code.tar.gz`` to a
presigned PUT URL) is the caller's choice; this builder only makes the pod safe and bounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from raas_operator.jobs.model import JobSpec

ROBOT_LABEL = "raas.dev/robot"
JOB_LABEL = "raas.dev/job"
EGRESS_LABEL = "raas.dev/egress"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "raas-operator"
COMPONENT_LABEL = "app.kubernetes.io/component"
COMMIT_ANNOTATION = "raas.dev/commit"
ATTEMPT_ANNOTATION = "raas.dev/attempt"
RAASJOB_API_VERSION = "raas.dev/v1alpha1"
RAASJOB_KIND = "RaasJob"

CODE_DIR = "/code"
PACKAGES_DIR = "/opt/packages"
PACKAGES_SITE_DIR = f"{PACKAGES_DIR}/site"
"""Where a job's requirements are installed (on the controller's PYTHONPATH)."""
HOME_DIR = "/home/raas"
TMP_DIR = "/tmp"
AGENT_SOCKET_DIR = "/run/raas"
AGENT_SOCKET_NAME = "agent.sock"
SESSION_TOKEN_KEY = "token"
NOBODY = 65534

DOWNLOAD_SCRIPT = """\
import os, shutil, sys, tarfile, urllib.request
from pathlib import PurePosixPath
root, budget = sys.argv[1], int(os.environ.get("RAAS_CODE_MAX_BYTES", "104857600"))
with urllib.request.urlopen(os.environ["RAAS_CODE_URL"], timeout=60) as response:
    with tarfile.open(fileobj=response, mode="r|gz") as bundle:
        for member in bundle:
            path = PurePosixPath(member.name)
            if member.isdir():
                continue
            if not member.isfile() or path.is_absolute() or ".." in path.parts or not path.parts:
                sys.exit(f"code.tar.gz: refusing member {member.name!r} (only plain files inside the folder)")
            budget -= member.size
            if budget < 0:
                sys.exit("code.tar.gz unpacks to more than RAAS_CODE_MAX_BYTES")
            target = os.path.join(root, *path.parts)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with bundle.extractfile(member) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
"""
"""Init container program (``python -c DOWNLOAD_SCRIPT <destination>``): stream and unpack plain files only.

It checks member paths itself rather than using ``tarfile``'s ``filter="data"``: Debian
bookworm's Python 3.11.2 (the runtime image's) predates that filter."""


@dataclass(frozen=True)
class ContainerResources:
    """Requests and limits of one container, in Kubernetes quantities."""

    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "256Mi"
    memory_limit: str = "512Mi"
    ephemeral_storage_request: str = "64Mi"
    ephemeral_storage_limit: str = "256Mi"

    def as_dict(self) -> dict[str, dict[str, str]]:
        """The container's ``resources`` field."""
        return {
            "requests": {
                "cpu": self.cpu_request,
                "memory": self.memory_request,
                "ephemeral-storage": self.ephemeral_storage_request,
            },
            "limits": {
                "cpu": self.cpu_limit,
                "memory": self.memory_limit,
                "ephemeral-storage": self.ephemeral_storage_limit,
            },
        }


_SMALL = ContainerResources(
    cpu_request="100m", cpu_limit="500m", memory_request="64Mi", memory_limit="128Mi", ephemeral_storage_limit="128Mi"
)


@dataclass(frozen=True)
class PodSettings:
    """What the operator's settings (Helm values → environment) decide about the pods it builds."""

    image: str
    """Runtime image: Python, gym_raas and the usual scientific stack (the job runner's image)."""
    python: str = "/opt/raas/bin/python3"
    """The image's interpreter (``raas_node.runner.image.IMAGE_PYTHON`` for the project's image)."""
    image_pull_policy: str = "IfNotPresent"
    controller: ContainerResources = field(default_factory=ContainerResources)
    init: ContainerResources = _SMALL
    fetch: ContainerResources = field(
        default_factory=lambda: ContainerResources(
            cpu_request="100m", memory_request="128Mi", memory_limit="512Mi", ephemeral_storage_limit="2Gi"
        )
    )
    """The fetch pod (git, and pip when the code has a requirements.txt: its wheels count as
    ephemeral storage)."""
    install: ContainerResources = field(
        default_factory=lambda: ContainerResources(
            memory_request="128Mi", memory_limit="512Mi", ephemeral_storage_limit="2Gi"
        )
    )
    """The init container that installs a job's requirements (pip; the wheels and the install
    count as ephemeral storage)."""
    code_size_limit: str = "128Mi"
    """emptyDir size limit of the unpacked code."""
    packages_size_limit: str = "1536Mi"
    """emptyDir size limit of a job's installed requirements (with room to unpack their wheels),
    and of the fetch pod's working folder, where they are resolved."""
    packages_max_bytes: int = 512 * 1024 * 1024
    """The install container refuses a wheelhouse larger than this."""
    code_max_bytes: int = 100 * 1024 * 1024
    """The init container refuses an archive that unpacks to more (a clear error before eviction)."""
    scratch_size_limit: str = "128Mi"
    """emptyDir size limit of HOME and of /tmp (each)."""
    agent_socket_host_dir: str = AGENT_SOCKET_DIR
    """Host folder of the robot agent's socket on every robot node."""
    start_margin_s: int = 60
    """Added to the job's time limit for ``activeDeadlineSeconds`` (image pull, download, start)."""
    fetch_deadline_s: int = 300
    termination_grace_s: int = 5
    priority_class_name: str | None = None


def owner_reference(job_name: str, job_uid: str) -> dict[str, Any]:
    """The RaasJob as controlling owner: its children go when it goes (and block its deletion until then)."""
    return {
        "apiVersion": RAASJOB_API_VERSION,
        "kind": RAASJOB_KIND,
        "name": job_name,
        "uid": job_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def job_pod_name(job_name: str, attempt: int) -> str:
    """``<job>-<attempt>``: a retry gets a new pod while the old one may still be terminating."""
    return f"{job_name}-{attempt}"


def session_secret_name(job_name: str) -> str:
    """``<job>-session``."""
    return f"{job_name}-session"


def fetch_pod_name(job_name: str) -> str:
    """``<job>-fetch``."""
    return f"{job_name}-fetch"


def _metadata(
    name: str, namespace: str, job_name: str, job_uid: str, labels: Mapping[str, str], component: str
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {JOB_LABEL: job_name, **labels, COMPONENT_LABEL: component, MANAGED_BY_LABEL: MANAGED_BY},
        "ownerReferences": [owner_reference(job_name, job_uid)],
    }


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": NOBODY,
        "runAsGroup": NOBODY,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": NOBODY,
        "runAsGroup": NOBODY,
        "fsGroup": NOBODY,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_spec(settings: PodSettings, deadline_s: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": deadline_s,
        "terminationGracePeriodSeconds": settings.termination_grace_s,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(),
    }
    if settings.priority_class_name:
        spec["priorityClassName"] = settings.priority_class_name
    return spec


def _empty_dir(name: str, size_limit: str) -> dict[str, Any]:
    return {"name": name, "emptyDir": {"sizeLimit": size_limit}}


def _env(values: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"name": name, "value": value} for name, value in values.items()]


def session_secret(job_name: str, namespace: str, job_uid: str, token: str) -> dict[str, Any]:
    """The Secret holding the job's session token (key ``token``), owned by the RaasJob."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(session_secret_name(job_name), namespace, job_name, job_uid, {}, "session"),
        "type": "Opaque",
        "immutable": True,
        "stringData": {SESSION_TOKEN_KEY: token},
    }


def job_pod(
    *,
    job_name: str,
    namespace: str,
    job_uid: str,
    spec: JobSpec,
    robot: str,
    commit: str,
    code_url: str,
    settings: PodSettings,
    attempt: int = 1,
    wheels_url: str | None = None,
) -> dict[str, Any]:
    """The pod that runs `spec`'s entrypoint at `commit` on `robot` (see the module docstring);
    with `wheels_url` (the code has a requirements.txt), its wheels are installed first."""
    init_container = {
        "name": "fetch-code",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [settings.python, "-c", DOWNLOAD_SCRIPT, CODE_DIR],
        "env": _env(
            {
                "RAAS_CODE_URL": code_url,
                "RAAS_CODE_MAX_BYTES": str(settings.code_max_bytes),
                "HOME": HOME_DIR,
                "TMPDIR": TMP_DIR,
            }
        ),
        "resources": settings.init.as_dict(),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "code", "mountPath": CODE_DIR}, {"name": "tmp", "mountPath": TMP_DIR}],
    }
    environment = {
        "RAAS_AGENT_SOCKET": f"{AGENT_SOCKET_DIR}/{AGENT_SOCKET_NAME}",
        "RAAS_JOB": job_name,
        "RAAS_COMMIT": commit,
        "RAAS_CONTROL_HZ": f"{spec.control_hz:g}",
        "HOME": HOME_DIR,
        "TMPDIR": TMP_DIR,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # /code is read-only
    }
    token = {
        "name": "RAAS_SESSION_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": session_secret_name(job_name), "key": SESSION_TOKEN_KEY}},
    }
    controller: dict[str, Any] = {
        "name": "controller",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [settings.python, "-u", spec.entrypoint],
        "workingDir": CODE_DIR,
        "env": [*_env(environment), token],
        "resources": settings.controller.as_dict(),
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "code", "mountPath": CODE_DIR, "readOnly": True},
            {"name": "home", "mountPath": HOME_DIR},
            {"name": "tmp", "mountPath": TMP_DIR},
            {"name": "agent", "mountPath": AGENT_SOCKET_DIR, "readOnly": True},
        ],
    }
    init_containers = [init_container]
    volumes = [
        _empty_dir("code", settings.code_size_limit),
        _empty_dir("home", settings.scratch_size_limit),
        _empty_dir("tmp", settings.scratch_size_limit),
        {"name": "agent", "hostPath": {"path": settings.agent_socket_host_dir, "type": "Directory"}},
    ]
    if wheels_url is not None:
        init_containers.append(_install_container(settings, wheels_url))
        volumes.append(_empty_dir("packages", settings.packages_size_limit))
        controller["env"].insert(0, {"name": "PYTHONPATH", "value": PACKAGES_SITE_DIR})
        controller["volumeMounts"].append({"name": "packages", "mountPath": PACKAGES_DIR, "readOnly": True})
    metadata = _metadata(job_pod_name(job_name, attempt), namespace, job_name, job_uid, {ROBOT_LABEL: robot}, "job")
    metadata["annotations"] = {COMMIT_ANNOTATION: commit, ATTEMPT_ANNOTATION: str(attempt)}
    pod_spec = _pod_spec(settings, spec.time_limit_s + settings.start_margin_s)
    pod_spec.update(
        nodeSelector={ROBOT_LABEL: robot},
        tolerations=[{"key": ROBOT_LABEL, "operator": "Equal", "value": robot, "effect": "NoSchedule"}],
        initContainers=init_containers,
        containers=[controller],
        volumes=volumes,
    )
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def _install_container(settings: PodSettings, wheels_url: str) -> dict[str, Any]:
    """The init container that installs the job's requirements from its wheels, offline."""
    return {
        "name": "install-requirements",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [settings.python, "-m", "raas_node.runner.install_wheels", CODE_DIR, PACKAGES_SITE_DIR],
        "env": _env(
            {
                "RAAS_WHEELS_URL": wheels_url,
                "RAAS_WHEELS_MAX_BYTES": str(settings.packages_max_bytes),
                "HOME": HOME_DIR,
                "TMPDIR": TMP_DIR,
            }
        ),
        "resources": settings.install.as_dict(),
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "code", "mountPath": CODE_DIR, "readOnly": True},
            {"name": "packages", "mountPath": PACKAGES_DIR},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
    }


def fetch_pod(
    *,
    job_name: str,
    namespace: str,
    job_uid: str,
    command: Sequence[str],
    settings: PodSettings,
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The throw-away pod that fetches a job's code: runs `command` with `environment`, egress allowed.

    ``/work`` (writable, `PodSettings.packages_size_limit`: the clone, the archive and the wheels
    of a requirements.txt) is the command's working folder and TMPDIR; HOME and ``/tmp`` are
    writable too. Everything else is read-only.
    """
    if not command:
        raise ValueError("fetch_pod needs a command to run")
    container = {
        "name": "fetch",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(command),
        "workingDir": "/work",
        "env": _env({"HOME": HOME_DIR, "TMPDIR": "/work", "RAAS_JOB": job_name, **(environment or {})}),
        "resources": settings.fetch.as_dict(),
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "work", "mountPath": "/work"},
            {"name": "home", "mountPath": HOME_DIR},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
    }
    pod_spec = _pod_spec(settings, settings.fetch_deadline_s)
    pod_spec.update(
        containers=[container],
        volumes=[
            _empty_dir("work", settings.packages_size_limit),
            _empty_dir("home", settings.scratch_size_limit),
            _empty_dir("tmp", settings.scratch_size_limit),
        ],
    )
    metadata = _metadata(fetch_pod_name(job_name), namespace, job_name, job_uid, {EGRESS_LABEL: "git"}, "fetch")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
