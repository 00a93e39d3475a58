"""A real Kubernetes control plane on loopback, for tests: `ControlPlane`.

The Python port of ``tests/controlplane/smoke.sh``'s bring-up, from the pinned upstream binaries
that ``tests/controlplane/build.sh`` builds (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubectl, helm):

- **Binaries** from ``RAAS_CONTROLPLANE_BIN``, else the folder ``build.sh`` prints (milliseconds
  once built; a cold build takes many minutes).
- **PKI** made with ``cryptography`` in a fresh temp folder (``/tmp/raas-controlplane.*``): an EC
  P-256 CA, the API server's serving certificate (127.0.0.1, ``kubernetes.default.svc``...),
  client certificates for the admin (group ``system:masters``), the controller manager, the
  scheduler and the API server's own client of the kubelets (``apiserver-kubelet-client``), and the
  service-account signing key. `ControlPlane.node_credentials` signs a node's client certificate
  (``system:node:<name>`` in ``system:nodes``) and its kubelet's serving certificate on demand.
- **Processes**, each on kernel-chosen free loopback ports, logging to ``<name>.log`` in the temp
  folder, in a session of their own and with a parent-death SIGKILL (they die with the test run
  even if it is killed; only the temp folder is then left): etcd (``--unsafe-no-fsync``), the API
  server (TLS, client-certificate and service-account-token authentication, issuer
  ``https://kubernetes.default.svc.cluster.local``, ``--authorization-mode=Node,RBAC``, the default
  admission plugins plus NodeRestriction as a k3s server runs them, PodSecurity and
  ValidatingAdmissionPolicy included), the controller manager (service-account tokens, namespace
  deletion, garbage collection; the node lifecycle controller notices a node that stopped renewing
  its Lease within `NODE_MONITOR_GRACE_S`) and the scheduler. The API server reaches a kubelet
  (logs) at the node's InternalIP with ``apiserver-kubelet-client`` and checks its serving
  certificate against the CA.
- **Readiness**: etcd ``/health``, the API server's ``/readyz``, the controller manager's and
  scheduler's ``/healthz``, polled with a bound; a process that exits meanwhile fails the start
  with the last lines of its log (a port taken by someone else shows there).
- **Stop** in reverse order (scheduler, controller manager, API server, etcd), SIGTERM then
  SIGKILL after a bound, then the temp folder is removed (``keep=True`` keeps it for its logs).
  ``stop`` is idempotent and also runs at interpreter exit.

Clients: `ControlPlane.kubectl` and `ControlPlane.helm` run the pinned binaries against the admin
kubeconfig; `ControlPlane.api_client` gives the official Python client, as the admin or with a
bearer token; `ControlPlane.namespace` makes a namespace for the span of a ``with``.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import kubernetes
from controlplane.processes import ServerProcess, die_with_parent, forget, stop_at_exit
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "helm")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.0.0.0/24"
ADMISSION_PLUGINS = "NodeRestriction,PodSecurity,ValidatingAdmissionPolicy"
KUBELET_CLIENT = "kube-apiserver-kubelet-client"
"""Common name of the API server's client certificate towards kubelets (a kubelet accepts it alone)."""
NODE_MONITOR_PERIOD_S = 1
NODE_MONITOR_GRACE_S = 10
"""A node whose Lease and status were not renewed for this long is marked Ready=Unknown (upstream: 50 s)."""
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 15


class ControlPlaneError(RuntimeError):
    """The control plane could not be found, started or used; the message says what to do."""


def binaries_folder() -> Path:
    """``RAAS_CONTROLPLANE_BIN``, else the last line ``tests/controlplane/build.sh`` prints; every
    binary must be there."""
    configured = os.environ.get("RAAS_CONTROLPLANE_BIN")
    if configured:
        folder = Path(configured)
    else:
        built = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
        lines = built.stdout.strip().splitlines()
        if built.returncode != 0 or not lines:
            tail = "\n".join(built.stderr.strip().splitlines()[-LOG_TAIL_LINES:])
            raise ControlPlaneError(
                f"tests/controlplane/build.sh failed: run `make controlplane` and read why:\n{tail}"
            )
        folder = Path(lines[-1])
    missing = [name for name in BINARIES if not os.access(folder / name, os.X_OK)]
    if missing:
        raise ControlPlaneError(
            f"control-plane binaries {', '.join(missing)} are missing from {folder}: run `make controlplane` "
            "(or point RAAS_CONTROLPLANE_BIN at the folder tests/controlplane/build.sh prints)"
        )
    return folder


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nobody listens on right now (the kernel's picks, all held
    until all are picked)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


# --- PKI --------------------------------------------------------------------------------------------


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


@dataclass(frozen=True)
class _Authority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def sign(
        self,
        folder: Path,
        name: str,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        alternative_names: list[x509.GeneralName] | None = None,
    ) -> None:
        """``name.key`` and ``name.crt``, a leaf certificate for `usage` valid for two days."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if alternative_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        _write_key(folder / f"{name}.key", key)
        (folder / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def load_authority(folder: Path) -> _Authority:
    """The CA that `make_pki` wrote into `folder`."""
    key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return _Authority(key, x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes()))


@dataclass(frozen=True)
class NodeCredentials:
    """What a node (its kubelet) needs: a client certificate as ``system:node:<name>`` in
    ``system:nodes`` (the Node authorizer and NodeRestriction judge it), a serving certificate for
    its kubelet API on 127.0.0.1, and the CA that signed both and the API server's certificate."""

    name: str
    client_certificate: Path
    client_key: Path
    serving_certificate: Path
    serving_key: Path
    certificate_authority: Path


def make_pki(folder: Path) -> None:
    """The CA (``ca.crt``/``ca.key``), ``apiserver``, ``admin``, ``controller-manager``,
    ``scheduler`` and ``apiserver-kubelet-client`` certificates and the service-account key pair
    (``sa.key``/``sa.pub``)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("raas-test-ca"))
        .issuer_name(_name("raas-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(folder / "ca.key", ca_key)
    (folder / "ca.crt").write_bytes(ca_certificate.public_bytes(serialization.Encoding.PEM))
    authority = _Authority(ca_key, ca_certificate)
    service_ip = ipaddress.ip_network(SERVICE_CIDR)[1]
    dns_names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    dns_names.append("kubernetes.default.svc.cluster.local")
    authority.sign(
        folder,
        "apiserver",
        _name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(service_ip)]
        + [x509.DNSName(name) for name in dns_names],
    )
    client = ExtendedKeyUsageOID.CLIENT_AUTH
    authority.sign(folder, "admin", _name("raas-admin", "system:masters"), client)
    authority.sign(folder, "controller-manager", _name("system:kube-controller-manager"), client)
    authority.sign(folder, "scheduler", _name("system:kube-scheduler"), client)
    authority.sign(folder, "apiserver-kubelet-client", _name(KUBELET_CLIENT, "system:masters"), client)
    service_account_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(folder / "sa.key", service_account_key)
    (folder / "sa.pub").write_bytes(
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


# --- processes --------------------------------------------------------------------------------------


class ControlPlane:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler on 127.0.0.1 (module
    docstring). Use as a context manager, or call `start` and `stop`."""

    def __init__(self, binaries: Path | None = None, *, keep: bool = False) -> None:
        self.binaries = binaries if binaries is not None else binaries_folder()
        self.keep = keep
        self.work: Path | None = None
        self.api_port = 0
        self.etcd_port = 0
        self._processes: list[ServerProcess] = []

    # -- life cycle --

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def folder(self) -> Path:
        """The temp folder with the PKI, kubeconfigs and logs; only while started."""
        if self.work is None:
            raise ControlPlaneError("the control plane is not started: call start() or use it in a with block")
        return self.work

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin's kubeconfig (group system:masters)."""
        return self.folder / "admin.kubeconfig"

    def start(self) -> None:
        """Bring everything up and wait until it is ready; on failure nothing is left running."""
        if self.work is not None:
            return
        self.work = Path(tempfile.mkdtemp(prefix="raas-controlplane."))
        stop_at_exit(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        work = self.folder
        make_pki(work)
        etcd_port, peer_port, self.api_port, cm_port, scheduler_port = free_ports(5)
        self.etcd_port = etcd_port
        for user in ("admin", "controller-manager", "scheduler"):
            self._write_kubeconfig(user)
        etcd = self._spawn("etcd", self._etcd_flags(etcd_port, peer_port))
        self._wait(etcd, "/health", lambda: _get(f"http://127.0.0.1:{etcd_port}/health", None))
        apiserver = self._spawn("kube-apiserver", self._apiserver_flags(etcd_port))
        admin = self._admin_tls()
        self._wait(apiserver, "/readyz", lambda: _get(f"{self.server}/readyz", admin))
        manager = self._spawn("kube-controller-manager", self._controller_manager_flags(cm_port))
        scheduler = self._spawn("kube-scheduler", self._scheduler_flags(scheduler_port))
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # their serving certificates are self-signed at start
        self._wait(manager, "/healthz", lambda: _get(f"https://127.0.0.1:{cm_port}/healthz", insecure))
        self._wait(scheduler, "/healthz", lambda: _get(f"https://127.0.0.1:{scheduler_port}/healthz", insecure))

    def stop(self) -> None:
        """Stop every process in reverse start order, then remove the temp folder (unless `keep`)."""
        while self._processes:
            self._processes.pop().stop()
        if self.work is not None:
            if not self.keep:
                shutil.rmtree(self.work, ignore_errors=True)
            self.work = None
        forget(self)

    def logs(self) -> dict[str, str]:
        """The last lines of each process's log, by name (for failure messages)."""
        return {process.name: process.tail() for process in self._processes}

    # -- flags --

    def _etcd_flags(self, port: int, peer_port: int) -> list[str]:
        client, peer = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
        return [
            "--name=raas-test",
            f"--data-dir={self.folder / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=raas-test={peer}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_flags(self, etcd_port: int) -> list[str]:
        work = self.folder
        return [
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--tls-cert-file={work / 'apiserver.crt'}",
            f"--tls-private-key-file={work / 'apiserver.key'}",
            f"--client-ca-file={work / 'ca.crt'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={work / 'sa.pub'}",
            f"--service-account-signing-key-file={work / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--enable-admission-plugins={ADMISSION_PLUGINS}",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            f"--kubelet-client-certificate={work / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={work / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={work / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _controller_manager_flags(self, port: int) -> list[str]:
        work = self.folder
        return [
            *_component_flags(work / "controller-manager.kubeconfig", port),
            f"--service-account-private-key-file={work / 'sa.key'}",
            f"--root-ca-file={work / 'ca.crt'}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={work / 'ca.crt'}",
            f"--cluster-signing-key-file={work / 'ca.key'}",
            f"--node-monitor-period={NODE_MONITOR_PERIOD_S}s",
            f"--node-monitor-grace-period={NODE_MONITOR_GRACE_S}s",
        ]

    def _scheduler_flags(self, port: int) -> list[str]:
        return _component_flags(self.folder / "scheduler.kubeconfig", port)

    # -- helpers --

    def _write_kubeconfig(self, user: str) -> None:
        work = self.folder
        (work / f"{user}.kubeconfig").write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: raas-test
  cluster: {{server: "{self.server}", certificate-authority: "{work / "ca.crt"}"}}
users:
- name: {user}
  user: {{client-certificate: "{work / f"{user}.crt"}", client-key: "{work / f"{user}.key"}"}}
contexts:
- name: raas-test
  context: {{cluster: raas-test, user: {user}}}
current-context: raas-test
"""
        )

    def _spawn(self, name: str, flags: list[str]) -> ServerProcess:
        log = self.folder / f"{name}.log"
        with log.open("ab") as sink:  # (appended: a restarted server keeps its first run's log)
            popen = subprocess.Popen(
                [str(self.binaries / name), *flags],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl, async-signal-safe)
            )
        process = ServerProcess(name, popen, log, STOP_TIMEOUT_S, LOG_TAIL_LINES)
        self._processes.append(process)
        return process

    def _wait(self, process: ServerProcess, endpoint: str, probe: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not probe():
            if process.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{process.name} exited with status {process.popen.returncode} during start-up "
                    f"(a port taken or a bad flag; its log ends):\n{process.tail()}"
                )
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{process.name} did not answer {endpoint} within {START_TIMEOUT_S:.0f} s; its log ends:\n"
                    f"{process.tail()}"
                )
            time.sleep(0.25)

    def _admin_tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.folder / "ca.crt"))
        context.load_cert_chain(str(self.folder / "admin.crt"), str(self.folder / "admin.key"))
        return context

    # -- faults --

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver (SIGTERM, as a rolling upgrade or a crash-looping pod does) and start
        it again with the same flags on the same port; returns once ``/readyz`` answers. Meanwhile
        every client's connections and watches break; its watch cache starts afresh, so a watch
        resumed from a resourceVersion older than the restart may be answered 410 Gone."""
        index = next(i for i, process in enumerate(self._processes) if process.name == "kube-apiserver")
        self._processes[index].stop()
        self._processes.pop(index)
        apiserver = self._spawn("kube-apiserver", self._apiserver_flags(self.etcd_port))
        self._processes.insert(index, self._processes.pop())  # back in its place for the stop order
        admin = self._admin_tls()
        self._wait(apiserver, "/readyz", lambda: _get(f"{self.server}/readyz", admin))

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision (what the API server asks for every
        five minutes), through etcd's JSON gateway; returns that revision. A watch or list from an
        older resourceVersion that reaches etcd is then answered 410 Gone."""
        base = f"http://127.0.0.1:{self.etcd_port}/v3/kv"
        header = _post_json(f"{base}/range", {"key": "AA==", "limit": 1})["header"]  # (key: one zero byte)
        revision = int(header["revision"])
        _post_json(f"{base}/compaction", {"revision": revision, "physical": True})
        return revision

    # -- nodes --

    def node_credentials(self, name: str) -> NodeCredentials:
        """Certificates for node `name`, signed by the cluster CA (made once, under ``nodes/``):
        its client certificate (``system:node:<name>``, group ``system:nodes``) and its kubelet's
        serving certificate (IP 127.0.0.1, where the API server reaches it)."""
        folder = self.folder / "nodes" / name
        if not (folder / "serving.crt").exists():
            folder.mkdir(parents=True, exist_ok=True)
            authority = load_authority(self.folder)
            authority.sign(
                folder, "client", _name(f"system:node:{name}", "system:nodes"), ExtendedKeyUsageOID.CLIENT_AUTH
            )
            authority.sign(
                folder,
                "serving",
                _name(f"system:node:{name}", "system:nodes"),
                ExtendedKeyUsageOID.SERVER_AUTH,
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName(name)],
            )
        return NodeCredentials(
            name, folder / "client.crt", folder / "client.key", folder / "serving.crt", folder / "serving.key",
            self.folder / "ca.crt",
        )  # fmt: skip

    def node_client(self, name: str) -> kubernetes.client.ApiClient:
        """The official Python client as node `name` (its client certificate)."""
        credentials = self.node_credentials(name)
        configuration = kubernetes.client.Configuration()
        configuration.host = self.server
        configuration.ssl_ca_cert = str(credentials.certificate_authority)
        configuration.cert_file = str(credentials.client_certificate)
        configuration.key_file = str(credentials.client_key)
        return kubernetes.client.ApiClient(configuration)

    # -- clients --

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl as the admin; with `check`, a failure raises with its stderr."""
        return self._run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], input, check, os.environ.copy())

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the pinned helm as the admin, with its cache and config in the temp folder."""
        environment = os.environ.copy()
        environment.update(
            KUBECONFIG=str(self.kubeconfig),
            HELM_CACHE_HOME=str(self.folder / "helm" / "cache"),
            HELM_CONFIG_HOME=str(self.folder / "helm" / "config"),
            HELM_DATA_HOME=str(self.folder / "helm" / "data"),
        )
        return self._run(["helm", *args], None, check, environment)

    def _run(
        self, command: list[str], input_text: str | None, check: bool, environment: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binaries / command[0]), *command[1:]],
            input=input_text,
            capture_output=True,
            text=True,
            env=environment,
            check=False,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"`{' '.join(command)}` failed with status {result.returncode}:\n{result.stderr.strip()}"
            )
        return result

    def api_client(self, token: str | None = None) -> kubernetes.client.ApiClient:
        """The official Python client: as the admin (client certificate), or with a bearer `token`."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.server
        configuration.ssl_ca_cert = str(self.folder / "ca.crt")
        if token is None:
            configuration.cert_file = str(self.folder / "admin.crt")
            configuration.key_file = str(self.folder / "admin.key")
        else:
            configuration.api_key = {"authorization": token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        return kubernetes.client.ApiClient(configuration)

    @contextlib.contextmanager
    def namespace(self, name: str, labels: dict[str, str] | None = None) -> Iterator[str]:
        """Namespace `name` (with `labels`) for the span of the ``with``, ready for pods (its default
        ServiceAccount exists); deleted after (the controller manager empties it in the background)."""
        with self.api_client() as client:
            core = kubernetes.client.CoreV1Api(client)
            core.create_namespace(
                kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name, labels=labels))
            )
            try:
                # The ServiceAccount admission refuses pods until the controller manager made it.
                self.kubectl("-n", name, "wait", "--for=create", "--timeout=60s", "serviceaccount/default")
                yield name
            finally:
                with contextlib.suppress(kubernetes.client.ApiException):
                    core.delete_namespace(name)


def _get(url: str, context: ssl.SSLContext | None) -> bool:
    """Whether `url` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _post_json(url: str, body: dict[str, object]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return cast(dict[str, Any], json.loads(response.read()))


def _component_flags(kubeconfig: Path, port: int) -> list[str]:
    """The flags the controller manager and the scheduler share: one kubeconfig for talking to the
    API server and for checking its callers, a secure port on loopback, no leader election."""
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
    ]
