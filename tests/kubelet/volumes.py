"""A pod's volumes on this host, prepared before its first container and removed after its last.

* ``emptyDir``: a folder under the pod's scratch folder, shared by all the pod's containers,
  mode 0777 as the kubelet makes it. A ``sizeLimit`` (or ``medium: Memory``) makes it a tmpfs
  of that size when running as root, so a write past the limit fails with ENOSPC (a real kubelet
  evicts the pod instead; either way the limit holds). Without root it is a plain folder and
  the size is not enforced.
* ``hostPath``: the node's own folder for that path, from the node's `host_paths` allow-list
  (one host plays several nodes, and a test must never mount the real machine's folders);
  ``type`` is checked (``Directory``, ``DirectoryOrCreate``, ``File``, ``FileOrCreate``,
  ``Socket``, or unset). A path not on the list is a `ContainerConfigError`.
* ``fsGroup``: emptyDirs get that group and the setgid bit (the kubelet's volume ownership);
  hostPath volumes are left alone, as Kubernetes does.
* every other volume type is a `ContainerConfigError` (not needed by RaaS pods).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubelet.environment import ContainerConfigError
from kubelet.quantities import to_bytes


@dataclass
class PodVolumes:
    """Host folders of a pod's volumes, by volume name; `close` unmounts the tmpfs ones."""

    folders: dict[str, Path] = field(default_factory=dict)
    mounted: list[Path] = field(default_factory=list)

    def close(self) -> None:
        for folder in self.mounted:
            subprocess.run(["umount", "--lazy", str(folder)], capture_output=True, check=False, timeout=30)
        self.mounted.clear()


def prepare_volumes(spec: Mapping[str, Any], scratch: Path, host_paths: Mapping[str, Path]) -> PodVolumes:
    """Create the pod's volumes under `scratch` (see the module docstring); raises `ContainerConfigError`."""
    volumes = PodVolumes()
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    try:
        for volume in spec.get("volumes") or []:
            name = volume["name"]
            if "emptyDir" in volume:
                volumes.folders[name] = _empty_dir(scratch / "volumes" / name, volume["emptyDir"] or {}, volumes)
                if fs_group is not None:
                    os.chown(volumes.folders[name], -1, int(fs_group))
                    os.chmod(volumes.folders[name], 0o2777)
            elif "hostPath" in volume:
                volumes.folders[name] = _host_path(volume["hostPath"], host_paths)
            else:
                kinds = sorted(set(volume) - {"name"})
                raise ContainerConfigError(f"volume {name}: {kinds} volumes are not supported by the stand-in kubelet")
    except BaseException:
        volumes.close()
        raise
    return volumes


def _empty_dir(folder: Path, source: Mapping[str, Any], volumes: PodVolumes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)  # (again on a retry)
    limit = source.get("sizeLimit")
    if (limit or source.get("medium") == "Memory") and os.geteuid() == 0:
        options = "mode=0777,nosuid,nodev" + (f",size={to_bytes(limit)}" if limit else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True, timeout=30)
        volumes.mounted.append(folder)
    os.chmod(folder, 0o777)
    return folder


def _host_path(source: Mapping[str, Any], host_paths: Mapping[str, Path]) -> Path:
    path = source["path"]
    if path not in host_paths:
        raise ContainerConfigError(f"hostPath {path} is not one of this node's folders ({sorted(host_paths)})")
    local = Path(host_paths[path])
    kind = source.get("type", "")
    if kind == "DirectoryOrCreate":
        local.mkdir(mode=0o755, parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not local.exists():
        local.touch(mode=0o644)
    checks: dict[str, Callable[[], bool]] = {
        "Directory": local.is_dir,
        "DirectoryOrCreate": local.is_dir,
        "File": local.is_file,
        "FileOrCreate": local.is_file,
        "Socket": lambda: local.exists() and stat.S_ISSOCK(local.stat().st_mode),
    }
    with contextlib.suppress(KeyError):
        if not checks[kind]():
            raise ContainerConfigError(f"hostPath type check failed: {path} is not a {kind}")
    return local
