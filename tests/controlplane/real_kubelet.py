"""A real kubelet node for a `ControlPlane`: `RealKubelet` (Debian's containerd and runc, and the
kubelet that ``tests/controlplane/build.sh`` builds from the control plane's own release).

The second node kind beside the stand-in kubelet of ``tests/kubelet``: the pod life cycle, the
CRI, cgroups, volumes, probes and log files are the upstream kubelet's own. Use as a context
manager; `RealKubelet.start` returns once the Node is Ready.

- **Images**, with no registry to pull from: the sandbox (pause) image is ``pause.c`` of the
  pinned ``k8s.io/kubernetes`` module (the Go module cache has it once the kubelet is built),
  compiled static with gcc, and `TOOLBOX_IMAGE` is Debian's static busybox; both are written as
  OCI archives (`oci_archive`) and imported with ``ctr images import``. `RealKubelet.import_image`
  imports any other archive, `RealKubelet.import_podman_image` a podman image under its own name
  (the project's runtime image). Pods must not pull: ``imagePullPolicy: Never`` or
  ``IfNotPresent``.
- **Isolation on a shared machine**, all under a fresh ``/tmp/raas-kubelet.*`` folder:
  containerd's root, state and sockets, runc's state, the kubelet's root dir and pod logs, the CNI
  configuration and address store. containerd, its shims and the kubelet run in one private mount
  namespace held by a pause process, where tmpfs covers ``/run``, ``/var/lib`` and ``/var/log``
  (the paths upstream hard-codes: shim sockets, ``/var/lib/kubelet/device-plugins``,
  ``/var/lib/cni``, ``/var/log/containers``) and where the kernel tunables the kubelet insists on
  setting (``kernel.panic``, ``kernel.panic_on_oops``, ``vm.overcommit_memory``...: global to the
  machine) are files of the temp folder bind-mounted over ``/proc/sys``. Pods have their own
  ``/proc`` and see the machine's real values. Every mount (overlay snapshots, shm, network
  namespace handles, secret tmpfs) lives and dies in that namespace.
- **cgroups**: ``cgroupfs`` driver under a cgroup root of its own (``/raas-kubelet-<id>`` in every
  mounted hierarchy; cgroup v1 is accepted with ``failCgroupV1: false``, for the hybrid hierarchy
  of these machines); the namespace holder, containerd, the kubelet and the shims are in its
  ``runtime`` child, the pods in its ``kubepods``, so that `RealKubelet.stop` finds every process
  it must end.
- **No CAP_SYS_RESOURCE** in these sessions: runc cannot lower ``oom_score_adj`` ("failed to
  update /proc/self/oom_score_adj: Permission denied" for every sandbox, which containerd puts at
  -998), so containerd runs with ``restrict_oom_score_adj``: no score below its own (0).
- **Network**: a bridge of its own (``rkb<id>``, a random free ``10.199.N.0/24``) made before the
  kubelet starts; the kubelet serves on the bridge's address (``--node-ip``: a kubelet refuses a
  loopback node IP, and the API server reaches kubelets at their InternalIP), its healthz on
  127.0.0.1. Pods get an address on the bridge through Debian's CNI ``bridge`` and
  ``host-local`` plugins, without a default route or masquerading: they reach this machine's
  bridge address and nothing beyond it.
- **Identity**: client certificate ``system:node:<name>`` (group ``system:nodes``) from
  `ControlPlane.node_credentials`, a serving certificate for the bridge address signed by the
  plane's CA, client-certificate authentication of callers (the plane's CA) and Webhook
  authorization (SubjectAccessReview against the API server).
- **Stop**: the kubelet, then containerd (SIGTERM, SIGKILL after a bound), then every process
  left in the cgroup root (shims, pause and workload processes: SIGKILL), then the namespace
  holder; the cgroups, the bridge and the Node object are removed and the temp folder deleted
  (``keep=True`` keeps it for its logs). Nothing is left: no process, mount, cgroup or link.
  Idempotent, and also run at interpreter exit. containerd, the kubelet and the holder get a
  parent-death SIGKILL; what a test run killed outright leaves (shims and pods in the cgroups, the
  bridge, the folder) is removed by `remove_leftovers`, which the next `start` runs first.

Requires root, ``containerd`` and ``runc`` (``scripts/install-system-deps``), Debian's
``containernetworking-plugins`` (with podman) and ``busybox-static``, gcc with glibc's static
libc, ``unshare``/``nsenter`` (util-linux) and ``ip`` (iproute2).
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import hashlib
import io
import ipaddress
import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from controlplane.cluster import ControlPlane, free_ports, load_authority
from controlplane.processes import ServerProcess, die_with_parent, forget, stop_at_exit
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raas_node.runner.image_build import ImageBuildError, save_archive

HERE = Path(__file__).resolve().parent
KUBELET_MODULE = HERE / "kubelet" / "go.mod"
PAUSE_IMAGE = "raas.invalid/pause:3.10.2"
TOOLBOX_IMAGE = "raas.invalid/busybox:static"
"""Debian's static busybox as ``/bin/sh`` and ``/bin/busybox`` (with its applets as links)."""
CNI_PLUGINS = Path("/usr/lib/cni")
BUSYBOX = Path("/bin/busybox")
CGROUP_ROOT = Path("/sys/fs/cgroup")
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_LINES = 20
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
"""What the kubelet's container manager sets (upstream ``setupKernelTunables``); global to the
machine, so they are masked in the kubelet's mount namespace."""
MASKED_FOLDERS = ("/run", "/var/lib", "/var/log")
RECORD = "node.json"
"""In the temp folder: the test run's pid, the cgroup root and the bridge, for `remove_leftovers`."""
BUSYBOX_APPLETS = ("sh", "echo", "cat", "sleep", "touch", "ls", "test", "[", "true", "false", "env", "wget", "id")


class RealKubeletError(RuntimeError):
    """The real kubelet node could not be started or used; the message says what to do."""


# --- images ------------------------------------------------------------------------------------------


def _blob(folder: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (folder / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (folder / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    return digest, len(data)


def oci_archive(path: Path, name: str, files: dict[str, tuple[bytes | str, int]], entrypoint: list[str]) -> None:
    """Write an OCI image archive (``ctr images import`` reads it) of one layer holding `files`
    (``path -> (content, mode)``; a ``str`` content is a symlink target), for linux on this
    machine's architecture, named `name`."""
    layer_bytes = io.BytesIO()
    with tarfile.open(fileobj=layer_bytes, mode="w", format=tarfile.PAX_FORMAT) as layer:
        folders = sorted({str(Path(member).parent) for member in files} - {"."})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            layer.addfile(info)
        for member, (content, mode) in sorted(files.items()):
            info = tarfile.TarInfo(member)
            info.mode = mode
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                layer.addfile(info)
            else:
                info.size = len(content)
                layer.addfile(info, io.BytesIO(content))
    diff_id = "sha256:" + hashlib.sha256(layer_bytes.getvalue()).hexdigest()
    compressed = gzip.compress(layer_bytes.getvalue(), mtime=0)
    architecture = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    with tempfile.TemporaryDirectory() as staging:
        root = Path(staging)
        layer_digest, layer_size = _blob(root, compressed)
        config = {
            "architecture": architecture,
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        config_digest, config_size = _blob(root, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                        "size": layer_size}],
        }  # fmt: skip
        manifest_digest, manifest_size = _blob(root, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"architecture": architecture, "os": "linux"},
                    "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
                }
            ],
        }
        (root / "index.json").write_text(json.dumps(index))
        (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        with tarfile.open(path, "w") as archive:
            for entry in ("oci-layout", "index.json", "blobs"):
                archive.add(root / entry, arcname=entry)


def pause_source() -> Path:
    """``build/pause/linux/pause.c`` of the pinned ``k8s.io/kubernetes`` in the Go module cache."""
    version = next(
        line.split()[1]
        for line in KUBELET_MODULE.read_text().splitlines()
        if line.strip().startswith("k8s.io/kubernetes v")
    )
    go = shutil.which("go") or "/usr/local/go/bin/go"
    cache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=False).stdout.strip()
    source = Path(cache) / f"k8s.io/kubernetes@{version}" / "build" / "pause" / "linux" / "pause.c"
    if not source.is_file():
        raise RealKubeletError(
            f"{source} is missing: run tests/controlplane/build.sh (building the kubelet downloads that module)"
        )
    return source


def build_pause(output: Path) -> None:
    """Compile the upstream pause program, static, as the upstream Makefile does."""
    compiled = subprocess.run(
        ["gcc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION=v3.10.2-raas", "-o", str(output),
         str(pause_source())],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if compiled.returncode != 0:
        raise RealKubeletError(
            "gcc could not build the static pause program (install gcc and libc6-dev): " + compiled.stderr.strip()
        )


# --- machine state ---------------------------------------------------------------------------------


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy: the unified one alone on cgroup v2, else each v1 controller
    and, on a hybrid layout, the v2 ``unified`` mount too (it holds no controller, but runc and
    the kubelet make their cgroups there as well)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        if after.split()[0] in ("cgroup", "cgroup2"):
            found.append(Path(before.split()[4]))
    return found


def process_cgroup_hierarchy() -> Path:
    """The hierarchy whose cgroups `RealKubelet` puts its processes in: pids on v1."""
    hierarchies = cgroup_hierarchies()
    if hierarchies == [CGROUP_ROOT]:
        return CGROUP_ROOT
    for hierarchy in hierarchies:
        if hierarchy.name == "pids" or "pids" in hierarchy.name.split(","):
            return hierarchy
    raise RealKubeletError("no pids cgroup hierarchy is mounted: the kubelet needs one")


def cgroup_processes(folder: Path) -> list[int]:
    """Every process in cgroup `folder` and its descendants."""
    found: list[int] = []
    if not folder.is_dir():
        return found
    for procs in folder.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            found.extend(int(pid) for pid in procs.read_text().split())
    return found


def remove_cgroup_tree(folder: Path) -> None:
    """rmdir `folder` and its sub-cgroups, deepest first (they must hold no process)."""
    if not folder.is_dir():
        return
    for child in sorted((path for path in folder.rglob("*") if path.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def mount_namespace(pid: int) -> str:
    """The mount namespace of process `pid` (``mnt:[inode]``), or "" if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def processes_in_mount_namespace(namespace: str) -> list[int]:
    """Every process of the machine in mount namespace `namespace`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and mount_namespace(int(entry.name)) == namespace:
            found.append(int(entry.name))
    return found


def _free_subnet() -> ipaddress.IPv4Network:
    """A random ``10.199.N.0/24`` that no route or address of this machine touches."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True)
    taken = routes.stdout + subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    candidates = list(range(1, 255))
    random.shuffle(candidates)
    for third in candidates:
        if f"10.199.{third}." not in taken:
            return ipaddress.IPv4Network(f"10.199.{third}.0/24")
    raise RealKubeletError("every 10.199.N.0/24 is in use on this machine: remove stale rkb* bridges")


def kill_cgroup_processes(cgroup_name: str) -> None:
    """SIGKILL every process in cgroup root `cgroup_name` of the process hierarchy, until none is
    left (a dying shim may fork no more, but a process may be mid-fork once)."""
    folder = process_cgroup_hierarchy() / cgroup_name
    for _ in range(100):
        left = cgroup_processes(folder)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    raise RealKubeletError(f"processes {cgroup_processes(folder)} of cgroup {cgroup_name} survive SIGKILL")


def remove_machine_state(cgroup_name: str, bridge: str) -> None:
    """Remove cgroup root `cgroup_name` from every hierarchy, and link `bridge`."""
    for hierarchy in cgroup_hierarchies():
        remove_cgroup_tree(hierarchy / cgroup_name)
    subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)


def remove_leftovers() -> list[Path]:
    """Tear down what test runs that died before `RealKubelet.stop` left behind (the record in
    their temp folder names a process that is gone): the processes in their cgroups (shims, pods;
    containerd and the kubelet died with the run), the cgroups, the bridge and the folder. Nodes
    of live runs are not touched. Returns the folders removed."""
    removed = []
    for record in Path(tempfile.gettempdir()).glob(f"raas-kubelet.*/{RECORD}"):
        try:
            facts = json.loads(record.read_text())
            owner, cgroup_name, bridge = int(facts["owner"]), str(facts["cgroup"]), str(facts["bridge"])
        except (OSError, ValueError, KeyError):
            continue
        try:
            os.kill(owner, 0)
            continue  # its run is alive
        except ProcessLookupError:
            pass
        kill_cgroup_processes(cgroup_name)
        remove_machine_state(cgroup_name, bridge)
        shutil.rmtree(record.parent, ignore_errors=True)
        removed.append(record.parent)
    return removed


# --- processes -------------------------------------------------------------------------------------


def _child_setup(cgroup_procs: Path) -> None:
    """In the child before exec: join the runtime cgroup, and SIGKILL when the test run dies."""
    cgroup_procs.write_text("0")
    die_with_parent()


class RealKubelet:
    """containerd + the pinned kubelet, registered as Node `name` of `plane` (module docstring).

    `labels` become the Node's labels (``--node-labels``), `taints` (``key=value:Effect``) its
    taints at registration. Use as a context manager, or call `start` and `stop`."""

    def __init__(
        self,
        plane: ControlPlane,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        taints: list[str] | None = None,
        keep: bool = False,
    ) -> None:
        self.plane = plane
        self.name = name
        self.labels = labels or {}
        self.taints = taints or []
        self.keep = keep
        self.work: Path | None = None
        self.suffix = os.urandom(3).hex()
        self.cgroup_name = f"raas-kubelet-{self.suffix}"
        self.bridge = f"rkb{self.suffix}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.port = 0
        self.namespace = ""
        self._processes: list[ServerProcess] = []
        self._holder: ServerProcess | None = None

    # -- life cycle --

    def __enter__(self) -> RealKubelet:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def folder(self) -> Path:
        """The temp folder of this node; only while started."""
        if self.work is None:
            raise RealKubeletError("the real kubelet is not started: call start() or use it in a with block")
        return self.work

    @property
    def address(self) -> str:
        """The node's InternalIP: the bridge's own address, where the kubelet serves."""
        if self.subnet is None:
            raise RealKubeletError("the real kubelet is not started")
        return str(self.subnet[1])

    @property
    def url(self) -> str:
        """The kubelet API's base URL."""
        return f"https://{self.address}:{self.port}"

    @property
    def socket(self) -> Path:
        """containerd's CRI and API socket."""
        return self.folder / "containerd.sock"

    def start(self) -> None:
        """Bring containerd and the kubelet up and wait for the Node to be Ready; on failure
        everything is torn down."""
        if self.work is not None:
            return
        remove_leftovers()
        self.work = Path(tempfile.mkdtemp(prefix="raas-kubelet."))
        (self.work / RECORD).write_text(
            json.dumps({"owner": os.getpid(), "cgroup": self.cgroup_name, "bridge": self.bridge})
        )
        stop_at_exit(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        work = self.folder
        if os.geteuid() != 0:
            raise RealKubeletError("the real kubelet needs root (containerd, cgroups, mounts, a bridge)")
        for tool in ("containerd", "ctr", "runc", "containerd-shim-runc-v2", "unshare", "nsenter", "ip", "gcc"):
            if shutil.which(tool) is None:
                raise RealKubeletError(f"{tool} is not installed: run scripts/install-system-deps")
        if not (CNI_PLUGINS / "bridge").exists() or not BUSYBOX.exists():
            raise RealKubeletError(
                "Debian's containernetworking-plugins and busybox-static are needed: run scripts/install-system-deps"
            )
        kubelet = self.plane.binaries / "kubelet"
        if not os.access(kubelet, os.X_OK):
            raise RealKubeletError(f"{kubelet} is missing: run tests/controlplane/build.sh")
        self._make_cgroups()
        self._make_bridge()
        self._write_identity()
        self._write_images()
        self._start_namespace()
        self._start_containerd()
        for archive in ("pause.tar", "toolbox.tar"):
            self.import_image(work / "images" / archive)
        self._start_kubelet()

    def stop(self) -> None:
        """Tear down in order (module docstring); idempotent."""
        if self.work is None:
            return
        while self._processes:
            self._processes.pop().stop()
        survivors: RealKubeletError | None = None
        try:
            kill_cgroup_processes(self.cgroup_name)
        except RealKubeletError as error:
            survivors = error  # the rest is torn down all the same, then this is raised
        if self._holder is not None:
            self._holder.stop()
            self._holder = None
        remove_machine_state(self.cgroup_name, self.bridge)
        if survivors is None:
            (self.work / RECORD).unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            if self.plane.work is not None:
                self.plane.kubectl("delete", "node", self.name, "--ignore-not-found", "--wait=false", check=False)
        if not self.keep and survivors is None:  # else `remove_leftovers` finds it once this run is over
            shutil.rmtree(self.work, ignore_errors=True)
        self.work = None
        forget(self)
        if survivors is not None:
            raise survivors

    def logs(self) -> dict[str, str]:
        """The last lines of the namespace holder's, containerd's and the kubelet's logs."""
        processes = ([self._holder] if self._holder else []) + self._processes
        return {process.name: process.tail() for process in processes}

    # -- steps --

    def _make_cgroups(self) -> None:
        """The cgroup root in every hierarchy (cpuset seeded from its parent, as the kernel does not
        on v1) and its ``runtime`` child in the process hierarchy."""
        for hierarchy in cgroup_hierarchies():
            folder = hierarchy / self.cgroup_name
            folder.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (folder / knob).exists() and not (folder / knob).read_text().strip():
                    (folder / knob).write_text((hierarchy / knob).read_text())
        (process_cgroup_hierarchy() / self.cgroup_name / "runtime").mkdir(exist_ok=True)

    def _make_bridge(self) -> None:
        self.subnet = _free_subnet()
        for command in (
            ["ip", "link", "add", "name", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{self.address}/{self.subnet.prefixlen}", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RealKubeletError(f"`{' '.join(command)}` failed: {done.stderr.strip()}")
        cni = self.folder / "cni" / "net.d"
        cni.mkdir(parents=True)
        (cni / "10-raas.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "raas-real-kubelet",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": self.bridge,
                            "isGateway": True,
                            "ipMasq": False,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": str(self.subnet), "gateway": self.address}]],
                                "dataDir": str(self.folder / "cni" / "ipam"),
                            },
                        }
                    ],
                }
            )
        )

    def _write_identity(self) -> None:
        """The node's client kubeconfig and a serving certificate for the bridge address."""
        credentials = self.plane.node_credentials(self.name)
        folder = self.folder / "pki"
        folder.mkdir()
        authority = load_authority(self.plane.folder)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                        x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{self.name}"),
                    ]
                )
            )
            .issuer_name(authority.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address(self.address)),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName(self.name),
                    ]
                ),
                critical=False,
            )
            .sign(authority.key, hashes.SHA256())
        )
        (folder / "serving.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (folder / "serving.key").chmod(0o600)
        (folder / "serving.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        (self.folder / "kubelet.kubeconfig").write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: raas-test
  cluster: {{server: "{self.plane.server}", certificate-authority: "{credentials.certificate_authority}"}}
users:
- name: {self.name}
  user: {{client-certificate: "{credentials.client_certificate}", client-key: "{credentials.client_key}"}}
contexts:
- name: raas-test
  context: {{cluster: raas-test, user: {self.name}}}
current-context: raas-test
"""
        )

    def _write_images(self) -> None:
        images = self.folder / "images"
        images.mkdir()
        build_pause(images / "pause")
        oci_archive(images / "pause.tar", PAUSE_IMAGE, {"pause": ((images / "pause").read_bytes(), 0o755)}, ["/pause"])
        toolbox: dict[str, tuple[bytes | str, int]] = {"bin/busybox": (BUSYBOX.read_bytes(), 0o755)}
        toolbox.update({f"bin/{applet}": ("busybox", 0o777) for applet in BUSYBOX_APPLETS})
        toolbox["tmp/.keep"] = (b"", 0o644)
        oci_archive(images / "toolbox.tar", TOOLBOX_IMAGE, toolbox, ["/bin/sh"])

    def _start_namespace(self) -> None:
        """The pause process holding the private mount namespace (module docstring)."""
        work = self.folder
        tunables = work / "kernel-tunables"
        lines = ["set -eu"]
        lines += [f"mount -t tmpfs -o mode=0755 raas-kubelet {folder}" for folder in MASKED_FOLDERS]
        for tunable in KERNEL_TUNABLES:
            source = Path("/proc/sys") / tunable
            if source.exists():
                copy = tunables / tunable.replace("/", ".")
                copy.parent.mkdir(exist_ok=True)
                copy.write_text(source.read_text())
                lines.append(f"mount --bind {copy} {source}")
        lines += [f": > {work / 'namespace.ready'}", f"exec {work / 'images' / 'pause'}"]
        self._holder = self._spawn(
            "namespace", ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines)], enter=False
        )
        self._wait(self._holder, "its mounts", (work / "namespace.ready").exists)
        self.namespace = mount_namespace(self._holder.popen.pid)

    def _start_containerd(self) -> None:
        work = self.folder
        (work / "containerd.toml").write_text(
            f"""version = 2
root = "{work / "containerd" / "root"}"
state = "{work / "containerd" / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{work / "containerd-ttrpc.sock"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{work / "containerd" / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which("runc")}"
        Root = "{work / "runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{work / "cni" / "net.d"}"
    max_conf_num = 1
"""
        )
        containerd = self._spawn("containerd", ["containerd", "--config", str(work / "containerd.toml")])
        self._wait(containerd, "its socket", lambda: self.ctr("version", check=False).returncode == 0)

    def _start_kubelet(self) -> None:
        work = self.folder
        port, healthz = free_ports(2)
        self.port = port
        pki = work / "pki"
        credentials = self.plane.node_credentials(self.name)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.address,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "tlsCertFile": str(pki / "serving.crt"),
            "tlsPrivateKeyFile": str(pki / "serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(credentials.certificate_authority)},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup_name}",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "podLogsDir": str(work / "pod-logs"),
            "volumePluginDir": str(work / "volume-plugins"),
            "makeIPTablesUtilChains": False,
            "protectKernelDefaults": False,
            "registerWithTaints": [_taint(taint) for taint in self.taints],
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "serializeImagePulls": False,
            "maxPods": 20,
            "resolvConf": "/etc/resolv.conf",
        }  # fmt: skip
        (work / "kubelet.yaml").write_text(json.dumps(config, indent=1))
        flags = [
            str(self.plane.binaries / "kubelet"),
            f"--config={work / 'kubelet.yaml'}",
            f"--kubeconfig={work / 'kubelet.kubeconfig'}",
            f"--root-dir={work / 'kubelet'}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.address}",
            "--v=2",
        ]
        if self.labels:
            flags.append("--node-labels=" + ",".join(f"{key}={value}" for key, value in sorted(self.labels.items())))
        kubelet = self._spawn("kubelet", flags)
        plain = ssl.create_default_context()
        self._wait(kubelet, "/healthz", lambda: _get(f"http://127.0.0.1:{healthz}/healthz", plain))
        self._wait(kubelet, "a Ready Node", self._node_ready)

    # -- helpers --

    def _spawn(self, name: str, command: list[str], *, enter: bool = True) -> ServerProcess:
        """Start `command` (in the node's mount namespace unless not `enter`), logging to
        ``<name>.log``, in the runtime cgroup."""
        if enter:
            command = ["nsenter", f"--mount=/proc/{self._holder_pid()}/ns/mnt", "--", *command]
        procs = process_cgroup_hierarchy() / self.cgroup_name / "runtime" / "cgroup.procs"
        log = self.folder / f"{name}.log"
        with log.open("wb") as sink:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,
                preexec_fn=lambda: _child_setup(procs),  # noqa: PLW1509 (a write and a prctl)
            )
        process = ServerProcess(name, popen, log, STOP_TIMEOUT_S, LOG_TAIL_LINES)
        if enter:
            self._processes.append(process)
        return process

    def _holder_pid(self) -> int:
        if self._holder is None:
            raise RealKubeletError("the mount namespace is not made yet")
        return self._holder.popen.pid

    def _wait(self, process: ServerProcess, what: str, probe: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not probe():
            if process.popen.poll() is not None:
                raise RealKubeletError(
                    f"{process.name} exited with status {process.popen.returncode} before {what}; its log ends:\n"
                    f"{process.tail()}"
                )
            if time.monotonic() > deadline:
                raise RealKubeletError(
                    f"{process.name}: no {what} within {START_TIMEOUT_S:.0f} s; its log ends:\n{process.tail()}"
                )
            time.sleep(0.5)

    def _node_ready(self) -> bool:
        found = self.plane.kubectl(
            "get", "node", self.name, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}', check=False
        )
        return found.returncode == 0 and found.stdout.strip() == "True"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """containerd's own client on this node's socket, namespace ``k8s.io`` (the CRI's), run in
        the node's mount namespace (where containerd's stdio fifos are)."""
        result = subprocess.run(
            [
                "nsenter",
                f"--mount=/proc/{self._holder_pid()}/ns/mnt",
                "--",
                "ctr",
                "--address",
                str(self.socket),
                "--namespace",
                "k8s.io",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise RealKubeletError(f"`ctr {' '.join(args)}` failed: {result.stderr.strip()}")
        return result

    def import_image(self, archive: Path) -> None:
        """Import an OCI or Docker image archive into the CRI's image store (unpacked)."""
        self.ctr("images", "import", str(archive))

    def import_podman_image(self, image: str) -> None:
        """Copy podman's `image` into the CRI's image store under the same name, as an air-gapped
        lab does: ``images/build.py --archive`` (`save_archive`: a Docker archive), then ``ctr
        images import FILE`` (``k3s ctr images import`` on a k3s node)."""
        archive = self.folder / "images" / "imported.tar"
        try:
            save_archive(image, archive)
        except ImageBuildError as error:
            raise RealKubeletError(f"{error} (is the image built?)") from None
        try:
            self.import_image(archive)
        finally:
            archive.unlink(missing_ok=True)

    def kubelet_tls(self) -> ssl.SSLContext:
        """TLS towards the kubelet API as the plane's admin (checks the kubelet's certificate)."""
        context = ssl.create_default_context(cafile=str(self.plane.folder / "ca.crt"))
        context.load_cert_chain(str(self.plane.folder / "admin.crt"), str(self.plane.folder / "admin.key"))
        return context


def _taint(text: str) -> dict[str, str]:
    """``key=value:Effect`` as a taint object."""
    key_value, _, effect = text.rpartition(":")
    key, _, value = key_value.partition("=")
    return {"key": key, "value": value, "effect": effect}


def _get(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False
