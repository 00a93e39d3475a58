"""A stand-in kubelet for the Kubernetes emulator (which has none): it runs RaaS pods for real.

For each new pod in the namespace it runs the pod's init containers, then its main container, as
local processes with the pod's command, working directory and environment (``secretKeyRef``s
read from the emulator), the job image's interpreter replaced by this one, emptyDir volumes as
temporary folders, and the robot's hostPath socket folder as that robot's agent socket folder.
It patches the pod's status as a kubelet would (Running; then Succeeded/Failed with the main
container's exit code and termination message; ``DeadlineExceeded`` past activeDeadlineSeconds),
serves its log through the emulator, and kills the processes of a deleted pod.

What it does not do (a real kubelet does): containers, security contexts and resource limits are
not applied here — the container launcher's own tests cover those with podman.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubernetes import client


class StandInKubelet:
    """Runs the emulator's pods; `agent_socket_dirs` maps a robot name to its agent's socket folder."""

    def __init__(
        self,
        api_client: client.ApiClient,
        emulator: Any,
        namespace: str,
        agent_socket_dirs: Mapping[str, Path],
        image_python: str = "/opt/raas/bin/python3",
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.emulator = emulator
        self.namespace = namespace
        self.agent_socket_dirs = dict(agent_socket_dirs)
        self.image_python = image_python
        self.started: dict[str, threading.Thread] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.finished: list[str] = []
        self.errors: list[str] = []
        """Failures of the stand-in itself (a test should assert there are none)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stand-in-kubelet", daemon=True)

    def start(self) -> StandInKubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for process in list(self.processes.values()):
            process.kill()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            response = self.core.list_namespaced_pod(self.namespace, _preload_content=False)
            pods = json.loads(response.data).get("items", [])
            present = set()
            for pod in pods:
                name = pod["metadata"]["name"]
                present.add(name)
                if pod["metadata"].get("deletionTimestamp"):
                    self._kill(name)
                    self._remove(name)  # its processes are gone: the kubelet lets the API server delete it
                elif name not in self.started:
                    worker = threading.Thread(target=self._run_pod_safely, args=(pod,), name=f"pod-{name}", daemon=True)
                    self.started[name] = worker
                    worker.start()
            for name in set(self.processes) - present:  # deleted outright
                self._kill(name)

    def _remove(self, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0, _preload_content=False)
        except client.exceptions.ApiException as error:
            if error.status != 404:
                raise

    def _kill(self, name: str) -> None:
        process = self.processes.get(name)
        if process is not None and process.poll() is None:
            process.kill()

    def _run_pod_safely(self, pod: dict[str, Any]) -> None:
        try:
            self._run_pod(pod)
        except Exception as error:
            self.errors.append(f"{pod['metadata']['name']}: {type(error).__name__}: {error}")

    def _run_pod(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        spec = pod["spec"]
        with tempfile.TemporaryDirectory(prefix=f"kubelet-{name}-") as scratch:
            volumes = self._volumes(spec, Path(scratch))
            self._patch(name, {"phase": "Running", "startTime": _now()})
            deadline = time.monotonic() + float(spec.get("activeDeadlineSeconds") or 3600)
            logs: list[str] = []
            for container in spec.get("initContainers") or []:
                code, _, output = self._run_container(name, container, volumes, deadline, Path(scratch))
                logs.append(output)
                if code != 0:
                    self._finish(name, container["name"], code, "Error", "", output)
                    return
            main = spec["containers"][0]
            code, message, output = self._run_container(name, main, volumes, deadline, Path(scratch))
            self.emulator.pod_logs[(self.namespace, name)] = output
            if code is None:
                self._finish(name, main["name"], 137, "Error", message, output, pod_reason="DeadlineExceeded")
            else:
                self._finish(name, main["name"], code, "Completed" if code == 0 else "Error", message, output)

    def _volumes(self, spec: dict[str, Any], scratch: Path) -> dict[str, Path]:
        volumes = {}
        for volume in spec.get("volumes") or []:
            if "hostPath" in volume:
                robot = (spec.get("nodeSelector") or {}).get("raas.dev/robot", "")
                volumes[volume["name"]] = self.agent_socket_dirs[robot]
            else:
                folder = scratch / "volumes" / volume["name"]
                folder.mkdir(parents=True)
                volumes[volume["name"]] = folder
        return volumes

    def _run_container(
        self, pod: str, container: dict[str, Any], volumes: Mapping[str, Path], deadline: float, scratch: Path
    ) -> tuple[int | None, str, str]:
        mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container.get("volumeMounts") or []}

        def local(path: str) -> str:
            for mount_path, folder in sorted(mounts.items(), key=lambda item: -len(item[0])):
                if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
                    return str(folder / path[len(mount_path) :].lstrip("/"))
            return path

        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for variable in container.get("env") or []:
            if "value" in variable:
                environment[variable["name"]] = local(variable["value"])
            elif "valueFrom" in variable:
                reference = variable["valueFrom"]["secretKeyRef"]
                response = self.core.read_namespaced_secret(reference["name"], self.namespace, _preload_content=False)
                secret = json.loads(response.data)
                # The API server turns stringData into data; the emulator keeps what it was given.
                if reference["key"] in (secret.get("stringData") or {}):
                    environment[variable["name"]] = secret["stringData"][reference["key"]]
                else:
                    environment[variable["name"]] = base64.b64decode(secret["data"][reference["key"]]).decode()
        termination_log = scratch / f"termination-{container['name']}"
        environment["RAAS_TERMINATION_LOG"] = str(termination_log)
        command = [sys.executable if part == self.image_python else local(part) for part in container["command"]]
        working_dir = local(container["workingDir"]) if container.get("workingDir") else str(scratch)
        process = subprocess.Popen(
            command, cwd=working_dir, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.processes[pod] = process
        try:
            output, _ = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
            code: int | None = process.returncode
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            code = None
        message = termination_log.read_text() if termination_log.exists() else ""
        return code, message, output.decode(errors="replace")

    def _finish(
        self, pod: str, container: str, code: int, reason: str, message: str, output: str, pod_reason: str = ""
    ) -> None:
        self.emulator.pod_logs.setdefault((self.namespace, pod), output)
        status: dict[str, Any] = {
            "phase": "Succeeded" if code == 0 and not pod_reason else "Failed",
            "containerStatuses": [
                {
                    "name": container,
                    "image": "raas-job",
                    "imageID": "raas-job@sha256:stand-in",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "reason": reason, "message": message}},
                }
            ],
        }
        if pod_reason:
            status["reason"] = pod_reason
        self._patch(pod, status)
        self.finished.append(pod)

    def _patch(self, pod: str, status: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(pod, self.namespace, {"status": status}, _preload_content=False)
        except client.exceptions.ApiException as error:
            if error.status != 404:  # deleted meanwhile
                raise


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
