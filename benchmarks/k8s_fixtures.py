"""The Kubernetes emulator (kmock + `benchmarks.k8s_emulator.RealisticEmulator`) over real HTTP,
for the operator benchmark's side-by-side figures (the tests use the real control plane).

The emulator stores objects and speaks the Kubernetes REST API (resourceVersions, 409 conflicts,
selectors, status subresources) but has no scheduler, kubelet, garbage collection, admission or
CRD schema enforcement.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import yaml
from kubernetes import client

from benchmarks.k8s_emulator import RealisticEmulator

RAASJOBS = "raas.dev/v1alpha1/raasjobs"
ROBOTS = "raas.dev/v1alpha1/robots"
PEERINGS = "kopf.dev/v1/kopfpeerings"
PEERING = "raas-operator"
"""The KopfPeering object operators of the namespace share (the Helm chart creates it)."""


@dataclass
class Emulator:
    emulator: Any
    url: str

    def api_client(self, token: str = "test") -> client.ApiClient:
        """An API client of the official library pointed at the emulator (no global config touched)."""
        configuration = client.Configuration(host=self.url)
        configuration.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(configuration)


def write_kubeconfig(path: Path, url: str, *, token: str = "test", namespace: str | None = None) -> Path:
    """A kubeconfig at `path` for the emulator at `url`, as a caller with the bearer `token`."""
    context: dict[str, str] = {"cluster": "emulator", "user": "emulator"}
    if namespace is not None:
        context["namespace"] = namespace
    path.write_text(
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": url}}],
            "users": [{"name": "emulator", "user": {"token": token}}],
            "contexts": [{"name": "emulator", "context": context}],
        })
    )  # fmt: skip
    return path


def _seed(emulator: Any, namespace: str) -> None:
    emulator.resources.load_bundled()
    verbs = {"get", "list", "watch", "create", "update", "patch", "delete"}
    emulator.resources[RAASJOBS] = kmock.ResourceInfo(
        kind="RaasJob", singular="raasjob", namespaced=True, verbs=verbs, subresources={"status"}
    )
    emulator.resources[ROBOTS] = kmock.ResourceInfo(
        kind="Robot", singular="robot", namespaced=False, verbs=verbs, subresources={"status"}
    )
    emulator.resources[PEERINGS] = kmock.ResourceInfo(
        kind="KopfPeering", singular="kopfpeering", namespaced=True, verbs=verbs, subresources=set()
    )
    emulator.objects[PEERINGS, namespace, PEERING] = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": PEERING, "namespace": namespace, "resourceVersion": "1"},
        "status": {},
    }
    emulator.objects["v1/namespaces", None, namespace] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "resourceVersion": "1"},
    }


@contextmanager
def running_emulator(namespace: str = "raas") -> Iterator[Emulator]:
    """The emulator on a free loopback port, in a thread with its own event loop."""
    box: dict[str, Any] = {}
    started = threading.Event()

    async def serve() -> None:
        async with RealisticEmulator() as emulator, kmock.Server(emulator) as server:
            _seed(emulator, namespace)
            box.update(
                emulator=emulator,
                url=str(server.url).rstrip("/"),
                loop=asyncio.get_running_loop(),
                stop=asyncio.Event(),
            )
            started.set()
            await box["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the Kubernetes emulator did not start")
    try:
        yield Emulator(box["emulator"], box["url"])
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(timeout=10)
