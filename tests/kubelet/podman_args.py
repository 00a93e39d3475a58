"""One container of a pod spec as a ``podman create`` command (pure: no podman, no API).

Translation, read from the pod spec as given (container settings override the pod's):

* ``image``: the local image it maps to (podman has no registry here: `kubelet.podman` maps names;
  an unmapped image is ``ErrImageNeverPull``), with ``--pull never``;
* ``command`` / ``args``: ``--entrypoint <command as JSON>`` / the arguments after the image,
  with Kubernetes' ``$(NAME)`` expansion;
* ``workingDir``: ``--workdir``;
* ``env``, ``envFrom``: resolved by `kubelet.environment`; values travel in podman's own
  environment (``--env NAME``), not on its command line (secrets stay out of ``ps``), except the
  variables podman reads itself;
* ``runAsUser`` / ``runAsGroup``: ``--user uid[:gid]``; ``runAsNonRoot`` checked as the kubelet
  does (uid 0, or no uid and an image user that is root or not numeric: `ContainerConfigError`);
* ``fsGroup``, ``supplementalGroups``: ``--group-add`` each;
* ``readOnlyRootFilesystem``: ``--read-only --read-only-tmpfs=false`` (podman would otherwise
  slip writable tmpfs onto /tmp, /var/tmp and /run: only the pod's volumes are writable);
* ``capabilities.drop`` / ``add``: ``--cap-drop`` / ``--cap-add`` each (``ALL`` included);
* ``allowPrivilegeEscalation: false``: ``--security-opt no-new-privileges``;
  ``privileged: true``: ``--privileged``;
* ``seccompProfile``: ``RuntimeDefault`` or unset: podman's default profile; ``Unconfined``:
  ``seccomp=unconfined``; ``Localhost``: not supported (`ContainerConfigError`);
* ``resources.limits.memory``: ``--memory`` and the same ``--memory-swap`` (no swap, as a
  kubelet); ``limits.cpu`` / ``requests.cpu``: ``--cpus`` / ``--cpu-shares`` (cores × 1024);
* ``resources.limits.ephemeral-storage``: not enforced on the container's writable layer (a
  read-only root has none); the pod's emptyDirs are size-limited tmpfs (`kubelet.volumes`);
* ``volumeMounts``: ``--mount type=bind`` of the volume's host folder (``subPath`` honoured),
  ``readonly`` when ``readOnly``;
* ``terminationMessagePath``: a host file (mode 0666, as the kubelet makes it) bind-mounted there,
  default ``/dev/termination-log``;
* always: ``--network none`` (the only egress is what `kubelet.egress` relays), ``--hostname
  <pod>``, ``--runtime runc`` and the ulimits this machine needs (../shared/TESTING.md).

Not translated (not used by RaaS pods): ``ports``, probes, ``lifecycle`` hooks, ``stdin``/``tty``,
``seLinuxOptions``, ``procMount``, ``sysctls``, pod-level pid limits. ``--init`` is not added:
as in Kubernetes, the program is PID 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelet.environment import ContainerConfigError, expand
from kubelet.quantities import to_bytes, to_cpus
from raas_node.runner.container import NOFILE_LIMIT, nproc_limits
from raas_node.runner.image import PODMAN_RUNTIME

KUBELET_LABEL = "io.raas.stand-in-kubelet"
KUBELET_RUN = str(os.getpid())
"""The label's value: this test process, so that two test runs on one machine never touch each
other's containers."""
"""Label on every container the stand-in kubelet creates (to find leftovers)."""
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
_PODMAN_OWN_VARIABLES = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "TZ", "NOTIFY_SOCKET"})
_PODMAN_OWN_PREFIXES = ("CONTAINERS_", "XDG_", "BUILDAH_", "PODMAN_", "STORAGE_", "LC_")


@dataclass(frozen=True)
class PodmanPlan:
    """``podman create`` for one container: its arguments (no secret values) and podman's environment."""

    arguments: list[str]
    podman_environment: dict[str, str]
    memory_limit_bytes: int | None


def security_context(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    """The container's effective security context: the pod's, overridden field by field by the container's."""
    inherited = ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile", "seLinuxOptions")
    pod_context = (pod.get("spec") or {}).get("securityContext") or {}
    merged = {key: pod_context[key] for key in inherited if key in pod_context}
    merged.update(container.get("securityContext") or {})
    return merged


def podman_plan(
    *,
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    name: str,
    image: str,
    image_user: str,
    environment: Mapping[str, str],
    volumes: Mapping[str, Path],
    termination_file: Path,
    cgroup_parent: str | None = None,
) -> PodmanPlan:
    """The ``podman create`` command for `container` of `pod` (see the module docstring).

    `image` is the local image the pod's image maps to and `image_user` its configured user;
    `volumes` maps the pod's volume names to host folders. Raises `ContainerConfigError`.
    """
    spec = pod.get("spec") or {}
    context = security_context(pod, container)
    arguments = [
        "podman", "create", "--runtime", PODMAN_RUNTIME, "--name", name, "--label", f"{KUBELET_LABEL}={KUBELET_RUN}",
        "--pull", "never", "--log-driver", "none", "--network", "none", "--http-proxy=false",
        "--hostname", str(pod["metadata"]["name"])[:63],
        "--ulimit", f"nofile={NOFILE_LIMIT}:{NOFILE_LIMIT}", "--ulimit", "nproc={}:{}".format(*nproc_limits()),
    ]  # fmt: skip
    if cgroup_parent is not None:
        arguments += ["--cgroup-parent", cgroup_parent]
    arguments += _identity(context, spec.get("securityContext") or {}, image_user)
    arguments += _hardening(context)
    limit, resource_arguments = _resources(container.get("resources") or {})
    arguments += resource_arguments
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise ContainerConfigError(f"volumeMount {mount['name']} names no volume of the pod")
        source = volumes[mount["name"]] / mount.get("subPath", "")
        arguments += ["--mount", _bind(source, mount["mountPath"], read_only=bool(mount.get("readOnly")))]
    target = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    arguments += ["--mount", _bind(termination_file, target, read_only=False)]
    if container.get("workingDir"):
        arguments += ["--workdir", container["workingDir"]]
    podman_environment = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    podman_environment.update({key: value for key, value in os.environ.items() if key.startswith("CONTAINERS_")})
    for key, value in environment.items():
        if key in _PODMAN_OWN_VARIABLES or key.startswith(_PODMAN_OWN_PREFIXES):
            arguments += ["--env", f"{key}={value}"]
        else:
            arguments += ["--env", key]
            podman_environment[key] = value
    command = [expand(part, environment) for part in container.get("command") or []]
    if command:
        arguments += ["--entrypoint", json.dumps(command)]
    arguments += [image, *(expand(part, environment) for part in container.get("args") or [])]
    return PodmanPlan(arguments, podman_environment, limit)


def _identity(context: Mapping[str, Any], pod_context: Mapping[str, Any], image_user: str) -> list[str]:
    uid, gid = context.get("runAsUser"), context.get("runAsGroup")
    if context.get("runAsNonRoot"):
        if uid == 0:
            raise ContainerConfigError("container's runAsUser breaks non-root policy")
        if uid is None:
            user = image_user.split(":", maxsplit=1)[0]
            if user in ("", "root", "0"):
                raise ContainerConfigError("container has runAsNonRoot and image will run as root")
            if not user.isdigit():
                raise ContainerConfigError(
                    f"container has runAsNonRoot and image has non-numeric user ({user}), "
                    "cannot verify user is non-root"
                )
    arguments = []
    if uid is not None:
        arguments += ["--user", f"{int(uid)}" + (f":{int(gid)}" if gid is not None else "")]
    elif gid is not None:
        arguments += ["--user", f"{image_user.split(':', maxsplit=1)[0] or '0'}:{int(gid)}"]
    groups = [pod_context["fsGroup"]] if pod_context.get("fsGroup") is not None else []
    groups += list(pod_context.get("supplementalGroups") or [])
    for group in groups:
        arguments += ["--group-add", str(int(group))]
    return arguments


def _hardening(context: Mapping[str, Any]) -> list[str]:
    arguments = []
    if context.get("privileged"):
        arguments.append("--privileged")
    if context.get("readOnlyRootFilesystem"):
        arguments += ["--read-only", "--read-only-tmpfs=false"]
    capabilities = context.get("capabilities") or {}
    for capability in capabilities.get("drop") or []:
        arguments += ["--cap-drop", str(capability)]
    for capability in capabilities.get("add") or []:
        arguments += ["--cap-add", str(capability)]
    if context.get("allowPrivilegeEscalation") is False:
        arguments += ["--security-opt", "no-new-privileges"]
    seccomp = (context.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        arguments += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        raise ContainerConfigError(f"seccompProfile {seccomp} is not supported by the stand-in kubelet")
    return arguments


def _resources(resources: Mapping[str, Any]) -> tuple[int | None, list[str]]:
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    arguments = []
    memory = to_bytes(limits["memory"]) if "memory" in limits else None
    if memory is not None:
        arguments += ["--memory", str(memory), "--memory-swap", str(memory)]
    if "cpu" in limits:
        arguments += ["--cpus", f"{to_cpus(limits['cpu']):.3f}"]
    if "cpu" in requests:
        arguments += ["--cpu-shares", str(max(2, round(to_cpus(requests["cpu"]) * 1024)))]
    return memory, arguments


def _bind(source: Path, target: str, *, read_only: bool) -> str:
    host = str(Path(source).resolve())
    if "," in host or "=" in host or "," in target or "=" in target:
        raise ContainerConfigError(f"cannot mount {host} at {target}: podman mounts cannot name ',' or '='")
    return f"type=bind,source={host},target={target}" + (",readonly" if read_only else "")
