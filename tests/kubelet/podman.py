"""Containers of a pod run for real with rootful podman (runc), one ``podman`` container each.

A container's life: ``podman create`` (the command of `kubelet.podman_args.podman_plan`),
``podman init`` (namespaces and mounts made, program not started: the moment to open the
`kubelet.egress.LoopbackRelay` in its network namespace), ``podman start --attach`` (stdout and
stderr, each line timestamped, into the container's log: `kubelet.logs.ContainerLog`), then
``podman inspect`` for the exit code and ``podman rm``. Past its deadline or when its pod is
deleted, ``podman stop --time <grace>`` (SIGTERM, then SIGKILL).

OOM kills: podman reports ``OOMKilled`` only on cgroup v2; on this machine's hybrid cgroup v1,
conmon's ``oom`` file in its working folder and `raas_node.runner.oom.MemoryWitness` (a parent
cgroup per container) tell instead, as in the container launcher (raas_node.runner.container).

Images: a pod names an image from a registry; `images` maps each such name to a local podman
image (podman has no registry here). The end-to-end tests map the operator's job image to
``raas_node.runner.image.ensure_runtime_image()``. An unmapped image fails with the kubelet's
``ErrImageNeverPull``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import IO

from kubelet.egress import LoopbackRelay
from kubelet.environment import ContainerConfigError
from kubelet.logs import ContainerLog
from kubelet.podman_args import KUBELET_LABEL, KUBELET_RUN, podman_plan
from kubelet.runtime import ContainerExit, ContainerRun
from raas_node.runner.oom import MemoryWitness

_POLL_S = 0.1


class PodmanRuntime:
    """Runs containers with podman; `images` maps a pod's image name to a local image."""

    def __init__(self, images: Mapping[str, str]) -> None:
        if shutil.which("podman") is None:
            raise RuntimeError("podman is not installed: run scripts/install-system-deps as root")
        self.images = dict(images)

    def run(self, run: ContainerRun) -> ContainerExit:
        requested = str(run.container.get("image", ""))
        if requested not in self.images:
            raise ContainerConfigError(
                f'Container image "{requested}" is not present with pull policy of Never', reason="ErrImageNeverPull"
            )
        image = self.images[requested]
        name = f"kubelet-{run.pod['metadata']['name']}-{run.container['name']}-{uuid.uuid4().hex[:8]}"
        witness = MemoryWitness(name)
        plan = podman_plan(
            pod=run.pod, container=run.container, name=name, image=image, image_user=_image_user(image),
            environment=run.environment, volumes=run.volumes, termination_file=run.termination_file,
            cgroup_parent=witness.cgroup_parent,
        )  # fmt: skip
        relay: LoopbackRelay | None = None
        # conmon writes its "oom" file into its working folder on cgroup v1: give it a private one.
        with tempfile.TemporaryDirectory(prefix="kubelet-conmon-") as conmon_folder:
            try:
                _podman(
                    plan.arguments[1:], cwd=conmon_folder, env=plan.podman_environment, reason="CreateContainerError"
                )
                _podman(["init", name], cwd=conmon_folder, reason="RunContainerError")
                pid = int(str(_inspect(name).get("Pid") or 0))
                relay = LoopbackRelay(pid, run.egress) if run.egress else None
                run.on_start()
                log = ContainerLog(run.log_file)
                client = subprocess.Popen(
                    ["podman", "start", "--attach", name], cwd=conmon_folder, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                )  # fmt: skip
                pumps = [
                    threading.Thread(target=_pump, args=(source, stream, log), name=f"log-{stream}", daemon=True)
                    for source, stream in ((client.stdout, "stdout"), (client.stderr, "stderr"))
                ]
                for pump in pumps:
                    pump.start()
                self._supervise(client, name, run)
                for pump in pumps:
                    pump.join(timeout=30)
                log.close()
                state = _inspect(name)
                code = int(str(state.get("ExitCode", 0)))
                oom = bool(state.get("OOMKilled")) or (Path(conmon_folder) / "oom").exists()
                if not oom and code == 137 and plan.memory_limit_bytes is not None:
                    oom = witness.hit_limit(plan.memory_limit_bytes)
                return ContainerExit(code, oom_killed=oom)
            finally:
                if relay is not None:
                    relay.close()
                subprocess.run(
                    ["podman", "rm", "--force", "--time", "0", name], capture_output=True, timeout=60, check=False
                )
                witness.remove()

    @staticmethod
    def _supervise(client: subprocess.Popen[bytes], name: str, run: ContainerRun) -> None:
        """Wait for the container; past the deadline or on deletion: stop (grace), then kill until it ends."""
        stopping_since: float | None = None
        while client.poll() is None:
            if stopping_since is None and (run.stop.is_set() or time.monotonic() > run.deadline):
                stopping_since = time.monotonic()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    grace = str(max(0, round(run.grace_s)))
                    stop = ["podman", "stop", "--time", grace, name]
                    subprocess.run(stop, capture_output=True, timeout=run.grace_s + 30, check=False)
            elif stopping_since is not None and time.monotonic() - stopping_since > run.grace_s + 1:
                # A stop that raced the container's start found nothing to stop: kill until it ends.
                subprocess.run(["podman", "kill", name], capture_output=True, timeout=60, check=False)
            with contextlib.suppress(subprocess.TimeoutExpired):
                client.wait(timeout=_POLL_S)


def _pump(source: IO[bytes] | None, stream: str, log: ContainerLog) -> None:
    """Copy one of the container's streams into its log until it closes."""
    if source is None:
        return
    with source:
        while chunk := source.read1(65536) if hasattr(source, "read1") else source.read(65536):
            log.write(stream, chunk)


def remove_leftover_containers() -> list[str]:
    """Force-remove every container this process's stand-in kubelet created and left (e.g. after a
    crash); another test run's containers are not this one's business."""
    listing = subprocess.run(
        ["podman", "ps", "--all", "--filter", f"label={KUBELET_LABEL}={KUBELET_RUN}", "--format", "{{.Names}}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    names = listing.stdout.split()
    for name in names:
        subprocess.run(["podman", "rm", "--force", "--time", "0", name], capture_output=True, timeout=60, check=False)
    return names


@cache
def _image_user(image: str) -> str:
    result = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Config.User}}", image],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ContainerConfigError(f'Container image "{image}" is not present', reason="ErrImageNeverPull")
    return result.stdout.strip()


def _podman(arguments: list[str], *, cwd: str, reason: str, env: Mapping[str, str] | None = None) -> None:
    result = subprocess.run(
        ["podman", *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise ContainerConfigError(lines[-1] if lines else f"podman {arguments[0]} failed", reason=reason)


def _inspect(name: str) -> dict[str, object]:
    result = subprocess.run(
        ["podman", "inspect", "--type", "container", name], capture_output=True, text=True, timeout=60, check=False
    )
    with contextlib.suppress(ValueError, LookupError, TypeError):
        state = json.loads(result.stdout)[0]["State"]
        if isinstance(state, dict):
            return state
    return {}
