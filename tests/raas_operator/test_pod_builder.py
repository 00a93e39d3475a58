"""The pure pod builders: every hardening property, pinning, ownership and labels, asserted as data."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from raas_node.runner.image import IMAGE_PYTHON
from raas_operator.jobs.model import JobSpec
from raas_operator.pods import ContainerResources, PodSettings, fetch_pod, job_pod, session_secret
from raas_operator.pods.builder import DOWNLOAD_SCRIPT

SETTINGS = PodSettings(image="registry.lab/raas-runtime:1.0", controller=ContainerResources(cpu_limit="2"))
SPEC = JobSpec.model_validate(
    {
        "owner": "ada",
        "source": {"kind": "git", "url": "https://git.example/ada/c.git"},
        "entrypoint": "swingup/run.py",
        "time_limit_s": 90,
    }
)
COMMIT = "c" * 40
UID = "6f1c9a52-0000-4000-8000-000000000001"


def build(**changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "job_name": "swingup",
        "namespace": "lab",
        "job_uid": UID,
        "spec": SPEC,
        "robot": "pendulum-1",
        "commit": COMMIT,
        "code_url": "http://minio.raas:9000/results/swingup/code.tar.gz?X-Amz-Signature=abc",
        "settings": SETTINGS,
    }
    arguments.update(changes)
    return job_pod(**arguments)


WHEELS_URL = "http://minio.raas:9000/results/swingup/wheels.tar.gz?X-Amz-Signature=def"


@pytest.fixture(params=[None, WHEELS_URL], ids=["plain", "with-requirements"])
def pod(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A job pod, without and with a requirements.txt's install container: every rule of
    hardening holds for both."""
    return build(wheels_url=request.param)


def controller(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    assert container["name"] == "controller"
    return container


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


# --- pinning to the robot --------------------------------------------------------------------------


def test_job_pod_is_pinned_to_its_robots_node(pod: dict[str, Any]) -> None:
    assert pod["spec"]["nodeSelector"] == {"raas.dev/robot": "pendulum-1"}


def test_job_pod_tolerates_only_its_robots_taint(pod: dict[str, Any]) -> None:
    assert pod["spec"]["tolerations"] == [
        {"key": "raas.dev/robot", "operator": "Equal", "value": "pendulum-1", "effect": "NoSchedule"}
    ]


# --- hardening: one property per test ----------------------------------------------------------------


def test_pod_runs_as_non_root_nobody(pod: dict[str, Any]) -> None:
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65534
    assert security["runAsGroup"] == 65534


def test_pod_volumes_belong_to_the_pods_group(pod: dict[str, Any]) -> None:
    assert pod["spec"]["securityContext"]["fsGroup"] == 65534


def test_pod_uses_the_runtime_default_seccomp_profile(pod: dict[str, Any]) -> None:
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_every_container_has_a_read_only_root_file_system(pod: dict[str, Any]) -> None:
    assert all(c["securityContext"]["readOnlyRootFilesystem"] is True for c in all_containers(pod))


def test_no_container_can_escalate_privileges(pod: dict[str, Any]) -> None:
    assert all(c["securityContext"]["allowPrivilegeEscalation"] is False for c in all_containers(pod))
    assert all(c["securityContext"]["privileged"] is False for c in all_containers(pod))


def test_every_container_drops_all_capabilities(pod: dict[str, Any]) -> None:
    for container in all_containers(pod):
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_every_container_runs_as_non_root(pod: dict[str, Any]) -> None:
    assert all(c["securityContext"]["runAsNonRoot"] is True for c in all_containers(pod))


def test_no_service_account_token_is_mounted(pod: dict[str, Any]) -> None:
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_no_service_link_variables_leak_cluster_addresses(pod: dict[str, Any]) -> None:
    assert pod["spec"]["enableServiceLinks"] is False


def test_the_pod_is_never_restarted(pod: dict[str, Any]) -> None:
    assert pod["spec"]["restartPolicy"] == "Never"


def test_the_pod_shares_nothing_with_the_host_but_the_agent_socket_folder(pod: dict[str, Any]) -> None:
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod["spec"].get(key)
    host_paths = [volume for volume in pod["spec"]["volumes"] if "hostPath" in volume]
    assert host_paths == [{"name": "agent", "hostPath": {"path": "/run/raas", "type": "Directory"}}]


def test_every_container_has_cpu_memory_and_ephemeral_storage_requests_and_limits(pod: dict[str, Any]) -> None:
    for container in all_containers(pod):
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory", "ephemeral-storage"}


def test_resources_come_from_the_settings(pod: dict[str, Any]) -> None:
    assert controller(pod)["resources"]["limits"]["cpu"] == "2"
    assert controller(pod)["resources"]["limits"]["memory"] == ContainerResources().memory_limit


def test_every_empty_dir_has_a_size_limit(pod: dict[str, Any]) -> None:
    empty_dirs = [volume["emptyDir"] for volume in pod["spec"]["volumes"] if "emptyDir" in volume]
    assert len(empty_dirs) == len(pod["spec"]["volumes"]) - 1  # all but the agent's socket folder
    assert all("sizeLimit" in empty_dir for empty_dir in empty_dirs)


def test_the_deadline_is_the_time_limit_plus_the_start_margin(pod: dict[str, Any]) -> None:
    assert pod["spec"]["activeDeadlineSeconds"] == 90 + SETTINGS.start_margin_s


# --- what runs ------------------------------------------------------------------------------------


def test_the_controller_runs_the_entrypoint_unbuffered_in_the_code_folder(pod: dict[str, Any]) -> None:
    assert controller(pod)["command"] == [SETTINGS.python, "-u", "swingup/run.py"]
    assert controller(pod)["workingDir"] == "/code"
    assert controller(pod)["image"] == SETTINGS.image


def test_the_controller_finds_the_agent_socket_and_knows_its_job(pod: dict[str, Any]) -> None:
    env = env_of(controller(pod))
    assert env["RAAS_AGENT_SOCKET"] == "/run/raas/agent.sock"
    assert env["RAAS_JOB"] == "swingup"
    assert env["RAAS_COMMIT"] == COMMIT


def test_the_session_token_comes_from_the_jobs_secret_not_the_pod_spec(pod: dict[str, Any]) -> None:
    env = env_of(controller(pod))
    assert env["RAAS_SESSION_TOKEN"] == {"secretKeyRef": {"name": "swingup-session", "key": "token"}}


def test_the_presigned_url_is_given_only_to_the_init_container(pod: dict[str, Any]) -> None:
    init = pod["spec"]["initContainers"][0]
    assert env_of(init)["RAAS_CODE_URL"].startswith("http://minio.raas:9000/")
    assert "RAAS_CODE_URL" not in env_of(controller(pod))


def test_the_code_is_read_only_and_home_and_tmp_are_writable_for_the_controller(pod: dict[str, Any]) -> None:
    mounts = {mount["mountPath"]: mount for mount in controller(pod)["volumeMounts"]}
    assert mounts["/code"]["readOnly"] is True
    assert mounts["/run/raas"]["readOnly"] is True
    assert not mounts["/home/raas"].get("readOnly")
    assert not mounts["/tmp"].get("readOnly")
    assert env_of(controller(pod))["HOME"] == "/home/raas"


def test_the_init_container_unpacks_into_the_code_volume(pod: dict[str, Any]) -> None:
    init = pod["spec"]["initContainers"][0]
    assert init["command"][:2] == [SETTINGS.python, "-c"]
    assert init["command"][-1] == "/code"
    assert {"name": "code", "mountPath": "/code"} in init["volumeMounts"]


def test_the_default_interpreter_is_the_runtime_images() -> None:
    assert PodSettings(image="x").python == IMAGE_PYTHON


# --- ownership, names and labels -------------------------------------------------------------------


def test_the_raasjob_owns_and_controls_the_pod(pod: dict[str, Any]) -> None:
    assert pod["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "raas.dev/v1alpha1",
            "kind": "RaasJob",
            "name": "swingup",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_the_pod_is_labelled_with_its_job_robot_and_manager(pod: dict[str, Any]) -> None:
    labels = pod["metadata"]["labels"]
    assert labels["raas.dev/job"] == "swingup"
    assert labels["raas.dev/robot"] == "pendulum-1"
    assert labels["app.kubernetes.io/managed-by"] == "raas-operator"
    assert "raas.dev/egress" not in labels


def test_each_attempt_gets_its_own_pod_name_in_the_jobs_namespace() -> None:
    first, second = build(), build(attempt=2, robot="pendulum-2")
    assert (first["metadata"]["name"], second["metadata"]["name"]) == ("swingup-1", "swingup-2")
    assert first["metadata"]["namespace"] == "lab"
    assert second["spec"]["nodeSelector"] == {"raas.dev/robot": "pendulum-2"}
    assert second["metadata"]["annotations"] == {"raas.dev/commit": COMMIT, "raas.dev/attempt": "2"}


def test_the_builder_is_pure(pod: dict[str, Any]) -> None:
    wheels_url = env_of(pod["spec"]["initContainers"][-1]).get("RAAS_WHEELS_URL")
    assert build(wheels_url=wheels_url) == pod
    assert build(wheels_url=wheels_url) is not pod


# --- session secret --------------------------------------------------------------------------------


def test_the_session_secret_holds_the_token_and_belongs_to_the_job() -> None:
    secret = session_secret("swingup", "lab", UID, "s3cr3t")
    assert (secret["apiVersion"], secret["kind"], secret["type"]) == ("v1", "Secret", "Opaque")
    assert secret["metadata"]["name"] == "swingup-session"
    assert secret["metadata"]["namespace"] == "lab"
    assert secret["stringData"] == {"token": "s3cr3t"}
    assert secret["immutable"] is True
    assert secret["metadata"]["ownerReferences"][0]["uid"] == UID
    assert secret["metadata"]["labels"]["raas.dev/job"] == "swingup"


# --- fetch pod -------------------------------------------------------------------------------------


@pytest.fixture
def fetcher() -> dict[str, Any]:
    return fetch_pod(
        job_name="swingup",
        namespace="lab",
        job_uid=UID,
        command=["python", "-m", "fetcher", "--ref", "main"],
        environment={"RAAS_UPLOAD_URL": "http://minio/put"},
        settings=SETTINGS,
    )


def test_the_fetch_pod_runs_the_given_command_with_the_given_environment(fetcher: dict[str, Any]) -> None:
    (container,) = fetcher["spec"]["containers"]
    assert container["command"] == ["python", "-m", "fetcher", "--ref", "main"]
    assert env_of(container)["RAAS_UPLOAD_URL"] == "http://minio/put"
    assert container["workingDir"] == "/work"


def test_the_fetch_pod_is_the_one_labelled_for_git_egress(fetcher: dict[str, Any]) -> None:
    assert fetcher["metadata"]["labels"]["raas.dev/egress"] == "git"
    assert fetcher["metadata"]["labels"]["raas.dev/job"] == "swingup"
    assert fetcher["metadata"]["name"] == "swingup-fetch"


def test_the_fetch_pod_is_not_pinned_to_a_robot(fetcher: dict[str, Any]) -> None:
    assert "nodeSelector" not in fetcher["spec"]
    assert "tolerations" not in fetcher["spec"]
    assert "raas.dev/robot" not in fetcher["metadata"]["labels"]


def test_the_fetch_pod_is_hardened_like_the_job_pod(fetcher: dict[str, Any], pod: dict[str, Any]) -> None:
    assert fetcher["spec"]["securityContext"] == pod["spec"]["securityContext"]
    assert fetcher["spec"]["containers"][0]["securityContext"] == controller(pod)["securityContext"]
    for key in ("automountServiceAccountToken", "enableServiceLinks", "restartPolicy"):
        assert fetcher["spec"][key] == pod["spec"][key]
    assert fetcher["spec"]["activeDeadlineSeconds"] == SETTINGS.fetch_deadline_s
    assert fetcher["metadata"]["ownerReferences"] == pod["metadata"]["ownerReferences"]


def test_a_fetch_pod_without_a_command_is_refused() -> None:
    with pytest.raises(ValueError, match="command"):
        fetch_pod(job_name="j", namespace="n", job_uid=UID, command=[], settings=SETTINGS)


# --- the init container's program, run for real ------------------------------------------------------


def tarball(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            bundle.addfile(info)
    return buffer.getvalue()


@pytest.fixture
def serve() -> Iterator[Any]:
    """Serve one body at http://127.0.0.1:<port>/code.tar.gz (a stand-in for the presigned URL)."""
    servers: list[ThreadingHTTPServer] = []

    def start(body: bytes) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/code.tar.gz"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run_download(url: str, destination: Path, max_bytes: int = 1 << 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", DOWNLOAD_SCRIPT, str(destination)],
        env={"RAAS_CODE_URL": url, "RAAS_CODE_MAX_BYTES": str(max_bytes)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_init_program_downloads_and_unpacks_the_code(serve: Any, tmp_path: Path) -> None:
    url = serve(tarball({"run.py": b"print('hi')\n", "ctl/pid.py": b"K = 1\n"}))
    result = run_download(url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run.py").read_text() == "print('hi')\n"
    assert (tmp_path / "ctl" / "pid.py").read_text() == "K = 1\n"


def test_the_init_program_refuses_members_that_escape_the_code_folder(serve: Any, tmp_path: Path) -> None:
    destination = tmp_path / "code"
    destination.mkdir()
    url = serve(tarball({"../escaped.py": b"x = 1\n"}))
    result = run_download(url, destination)
    assert result.returncode != 0
    assert not (tmp_path / "escaped.py").exists()


def test_the_init_program_refuses_links(serve: Any, tmp_path: Path) -> None:
    url = serve(tarball({"run.py": b"x = 1\n"}, links={"secrets.py": "/etc/shadow"}))
    result = run_download(url, tmp_path)
    assert result.returncode != 0
    assert "refusing member 'secrets.py'" in result.stderr
    assert not (tmp_path / "secrets.py").exists()


def test_the_init_program_refuses_code_over_the_byte_budget(serve: Any, tmp_path: Path) -> None:
    url = serve(tarball({"run.py": b"x = 1\n", "data.bin": bytes(4096)}))
    result = run_download(url, tmp_path, max_bytes=1000)
    assert result.returncode != 0
    assert "RAAS_CODE_MAX_BYTES" in result.stderr


def test_the_init_container_is_told_the_byte_budget(pod: dict[str, Any]) -> None:
    init = pod["spec"]["initContainers"][0]
    assert env_of(init)["RAAS_CODE_MAX_BYTES"] == str(SETTINGS.code_max_bytes)


# --- a requirements.txt ----------------------------------------------------------------------------


def test_without_requirements_there_is_no_install_step() -> None:
    plain = build()
    assert [container["name"] for container in plain["spec"]["initContainers"]] == ["fetch-code"]
    assert "PYTHONPATH" not in env_of(controller(plain))
    assert "packages" not in {volume["name"] for volume in plain["spec"]["volumes"]}


def test_requirements_are_installed_offline_after_the_code_and_found_by_the_controller() -> None:
    with_requirements = build(wheels_url=WHEELS_URL)
    fetch_code, install = with_requirements["spec"]["initContainers"]
    assert fetch_code["name"] == "fetch-code"  # the code first: the install reads its requirements.txt
    assert install["name"] == "install-requirements"
    assert install["command"] == [
        SETTINGS.python,
        "-m",
        "raas_node.runner.install_wheels",
        "/code",
        "/opt/packages/site",
    ]
    assert env_of(install)["RAAS_WHEELS_URL"] == WHEELS_URL
    assert "RAAS_WHEELS_URL" not in env_of(controller(with_requirements))
    install_mounts = {mount["mountPath"]: mount for mount in install["volumeMounts"]}
    assert install_mounts["/code"]["readOnly"] is True
    assert not install_mounts["/opt/packages"].get("readOnly")
    assert env_of(controller(with_requirements))["PYTHONPATH"] == "/opt/packages/site"
    mounts = {mount["mountPath"]: mount for mount in controller(with_requirements)["volumeMounts"]}
    assert mounts["/opt/packages"]["readOnly"] is True  # what runs is what was installed
    volumes = {volume["name"]: volume for volume in with_requirements["spec"]["volumes"]}
    assert volumes["packages"] == {"name": "packages", "emptyDir": {"sizeLimit": SETTINGS.packages_size_limit}}
