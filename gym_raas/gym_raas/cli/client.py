"""A typed client of the RaaS HTTP API (``/api/v1``), and where the ``raas`` CLI finds its server.

`RaasClient` has one method per endpoint; every method raises `RaasApiError` when the server
answers with an error (``{"detail": ...}``, 4xx/5xx) and `RaasConnectionError` when it cannot be
reached at all. Responses are plain JSON mappings typed as `TypedDict` s that mirror the server's
pydantic models (``raas_api.http.schemas``); this package never imports the server.

Connection settings are resolved by `resolve_connection`: command-line flags first, then the
environment (``RAAS_SERVER``, ``RAAS_TOKEN``), then the config file
``$XDG_CONFIG_HOME/raas/config.json`` (keys ``server`` and ``token``), then the default server
``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NotRequired, TypedDict, cast
from urllib.parse import quote, urljoin, urlsplit

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8000"
SERVER_ENV = "RAAS_SERVER"
TOKEN_ENV = "RAAS_TOKEN"
API_PREFIX = "/api/v1"
SKIPPED_FOLDERS = frozenset({".git", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
"""Folders `pack_folder` leaves out of an upload: version control, caches, virtual environments."""

CANCEL_TIMEOUT_S = 90.0
"""How long ``cancel_job`` waits: the server answers when the job has stopped (within 60 s)."""

Stream = Literal["stdout", "stderr"]


class RaasError(Exception):
    """Anything the ``raas`` CLI reports as one line: API errors, unreachable server, bad config."""


class RaasApiError(RaasError):
    """The server answered with an error status; `detail` is its one-sentence explanation."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{detail} (HTTP {status})")
        self.status = status
        self.detail = detail


class RaasConnectionError(RaasError):
    """The server could not be reached (refused, timed out, bad URL, connection dropped)."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"cannot reach the RaaS server at {server}: {reason}")
        self.server = server
        self.reason = reason


class RaasConfigError(RaasError):
    """The config file exists but cannot be used."""


# --- Response bodies (mirrors of raas_api.http.schemas) -------------------------------------------


class JobSummary(TypedDict):
    """What a finished run achieved."""

    steps: int
    total_reward: float | None
    swing_up_time_s: float | None
    deadline_misses: int
    sim_to_real_rmse_rad: float | None


class PhaseChange(TypedDict):
    phase: str
    at: str
    reason: str
    message: str


class JobView(TypedDict):
    """A job: ``phase`` is one of Pending, Fetching, Queued, Starting, Running, Uploading,
    Succeeded, Failed, Cancelled, TimedOut; ``steps`` counts control steps while Running."""

    id: str
    owner: str
    phase: str
    reason: str
    message: str
    failure_class: str | None
    created_at: str
    source: dict[str, Any]
    entrypoint: str
    time_limit_s: int
    priority: int
    control_hz: NotRequired[float]
    """The job's control rate (Hz); servers before it existed leave it out."""
    robot_request: dict[str, Any]
    robot: str | None
    commit: str | None
    attempts: int
    queue_position: int | None
    estimated_start: str | None
    steps: int | None
    summary: JobSummary | None
    results_pending: int
    history: list[PhaseChange]


class JobList(TypedDict):
    """One page of jobs; pass ``next_cursor`` back for the next page (null on the last)."""

    jobs: list[JobView]
    next_cursor: str | None


class ResultFileView(TypedDict):
    name: str
    content_type: str
    size: int | None
    url: str
    """Absolute (e.g. presigned S3) or relative to the server (``/api/v1/jobs/{id}/results/{name}``)."""


class ResultManifest(TypedDict):
    job: str
    phase: str
    results_pending: int
    """Files still being uploaded; the manifest grows until this is 0."""
    files: list[ResultFileView]


class TrajectoryView(TypedDict):
    job: str
    time_s: list[float]
    theta_rad: list[float]
    theta_dot_rad_per_s: list[float]
    command: list[float]
    reward: list[float]
    simulated_theta_rad: list[float] | None
    summary: dict[str, Any]


class RobotView(TypedDict):
    """A robot: ``reasons`` says why it is not ready; ``calibration`` holds its parameters."""

    name: str
    type: str
    state: str
    ready: bool
    schedulable: bool
    reasons: list[str]
    current_job: str | None
    temperature_celsius: float | None
    last_reset: dict[str, Any] | None
    calibration: dict[str, Any]
    labels: dict[str, str]
    supported_control_hz: NotRequired[list[float]]
    """Control rates (Hz) the robot runs jobs at; servers before it existed leave it out."""


class Identity(TypedDict):
    owner: str
    role: Literal["user", "admin"]


TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Cancelled", "TimedOut"})


# --- Connection settings ------------------------------------------------------------------------


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/raas/config.json`` (XDG default: ``~/.config``)."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "raas" / "config.json"


def read_config(path: Path) -> dict[str, str]:
    """The ``server`` and ``token`` of a config file; empty if the file does not exist."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RaasConfigError(f"config file {path} is not readable JSON ({error}); fix or delete it") from None
    if not isinstance(document, dict):
        raise RaasConfigError(f"config file {path} must hold a JSON object with 'server' and 'token'")
    return {key: str(document[key]) for key in ("server", "token") if document.get(key)}


def resolve_connection(
    server: str | None, token: str | None, *, environ: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """The server URL and token to use: flags, then environment, then config file, then default.

    Each setting is resolved on its own (a ``--server`` flag with a token from the config file is
    fine). The config file is read only when a flag and the environment leave something open.
    """
    environ = os.environ if environ is None else environ
    resolved_server = server or environ.get(SERVER_ENV) or None
    resolved_token = token or environ.get(TOKEN_ENV) or None
    if resolved_server is None or resolved_token is None:
        config = read_config(config_path(environ))
        resolved_server = resolved_server or config.get("server")
        resolved_token = resolved_token or config.get("token")
    return (resolved_server or DEFAULT_SERVER).rstrip("/"), resolved_token


# --- Uploads ------------------------------------------------------------------------------------


def pack_folder(folder: Path) -> bytes:
    """The folder as a gzipped tar archive in memory, files at its root, caches and ``.git`` left out."""
    if not folder.is_dir():
        raise RaasError(f"{folder} is not a folder")

    def keep(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(member.name).parts
        return None if any(part in SKIPPED_FOLDERS for part in parts) or member.name.endswith(".pyc") else member

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for child in sorted(folder.iterdir()):
            archive.add(child, arcname=child.name, filter=keep)
    return buffer.getvalue()


# --- The client ---------------------------------------------------------------------------------


class RaasClient:
    """The RaaS API at `server` (e.g. ``http://127.0.0.1:8000``), authenticated with `token`.

    Use as a context manager, or call `close`. `timeout_s` bounds every request except followed
    logs, which stream for as long as the job runs.
    """

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.server + API_PREFIX,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport,
        )

    def __enter__(self) -> RaasClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # Jobs

    def submit_git(
        self,
        url: str,
        *,
        ref: str = "HEAD",
        entrypoint: str = "run.py",
        robot: str | None = None,
        time_limit_s: int | None = None,
        priority: int = 0,
        control_hz: float | None = None,
    ) -> JobView:
        """``POST /jobs``: run `entrypoint` of the git repository `url` at `ref`.

        `robot` asks for exactly that robot; `time_limit_s` defaults to the server's limit;
        `control_hz` (the control rate, one the robots run at) to 20 Hz.
        """
        body: dict[str, Any] = {
            "source": {"kind": "git", "url": url, "ref": ref},
            "entrypoint": entrypoint,
            "robot": {"name": robot} if robot else {},
            "priority": priority,
        }
        if time_limit_s is not None:
            body["time_limit_s"] = time_limit_s
        if control_hz is not None:
            body["control_hz"] = control_hz
        return cast(JobView, self._json("POST", "/jobs", json=body))

    def submit_archive(
        self,
        archive: bytes,
        *,
        filename: str = "code.tar.gz",
        entrypoint: str = "run.py",
        robot: str | None = None,
        time_limit_s: int | None = None,
        priority: int = 0,
        control_hz: float | None = None,
    ) -> JobView:
        """``POST /jobs/upload``: run `entrypoint` of an uploaded .tar.gz or .zip (see `pack_folder`)."""
        form = {"entrypoint": entrypoint, "priority": str(priority)}
        if robot:
            form["robot"] = robot
        if time_limit_s is not None:
            form["time_limit_s"] = str(time_limit_s)
        if control_hz is not None:
            form["control_hz"] = repr(float(control_hz))
        content_type = "application/zip" if filename.endswith(".zip") else "application/gzip"
        files = {"archive": (filename, archive, content_type)}
        return cast(JobView, self._json("POST", "/jobs/upload", data=form, files=files))

    def list_jobs(
        self,
        *,
        owner: str | None = None,
        phase: str | None = None,
        robot: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        """``GET /jobs``: one page of jobs, newest first, filtered by owner, phase and robot."""
        query = {"owner": owner, "phase": phase, "robot": robot, "limit": limit, "cursor": cursor}
        params = {key: value for key, value in query.items() if value is not None}
        return cast(JobList, self._json("GET", "/jobs", params=params))

    def iter_jobs(
        self, *, owner: str | None = None, phase: str | None = None, robot: str | None = None, limit: int | None = None
    ) -> Iterator[JobView]:
        """Every job matching the filters, page after page (`limit` is the page size)."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(owner=owner, phase=phase, robot=robot, limit=limit, cursor=cursor)
            yield from page["jobs"]
            cursor = page["next_cursor"]
            if not cursor or not page["jobs"]:
                return

    def get_job(self, job: str) -> JobView:
        """``GET /jobs/{job}``."""
        return cast(JobView, self._json("GET", f"/jobs/{_segment(job)}"))

    def cancel_job(self, job: str) -> JobView:
        """``POST /jobs/{job}/cancel``: stop a job; a finished job is returned unchanged.

        The server answers once a running job has stopped, which can take up to a minute.
        """
        return cast(JobView, self._json("POST", f"/jobs/{_segment(job)}/cancel", timeout=CANCEL_TIMEOUT_S))

    def logs(self, job: str, stream: Stream = "stdout") -> str:
        """``GET /jobs/{job}/logs``: what the controller wrote to `stream` so far."""
        response = self._send("GET", f"/jobs/{_segment(job)}/logs", params={"stream": stream, "follow": "false"})
        return response.text

    def follow_logs(self, job: str, stream: Stream = "stdout") -> Iterator[str]:
        """``GET /jobs/{job}/logs?follow=true``: `stream` as it is written, until the job ends."""
        path = f"/jobs/{_segment(job)}/logs"
        params = {"stream": stream, "follow": "true"}
        timeout = httpx.Timeout(None, connect=self._http.timeout.connect)
        with self._guard(), self._http.stream("GET", path, params=params, timeout=timeout) as response:
            if response.is_error:
                response.read()
                raise _api_error(response)
            yield from response.iter_text()

    def results(self, job: str) -> ResultManifest:
        """``GET /jobs/{job}/results``: the result files uploaded so far, with download links."""
        return cast(ResultManifest, self._json("GET", f"/jobs/{_segment(job)}/results"))

    def download(self, url: str, target: Path) -> Path:
        """Save the file at `url` (absolute, or relative to the server) to `target`.

        The bearer token is sent only to this server, never to another host (a presigned link).
        """
        absolute = urljoin(self.server + "/", url)
        request = self._http.build_request("GET", absolute)
        if _origin(absolute) != _origin(self.server):
            request.headers.pop("Authorization", None)
        with self._guard():
            response = self._http.send(request, stream=True)
            try:
                if response.is_error:
                    response.read()
                    raise _api_error(response)
                partial = target.with_name(target.name + ".part")
                with partial.open("wb") as output:
                    for chunk in response.iter_bytes():
                        output.write(chunk)
                partial.replace(target)
            finally:
                response.close()
        return target

    def trajectory(self, job: str) -> TrajectoryView:
        """``GET /jobs/{job}/trajectory``: the recorded run as columns, with the sim-to-real replay."""
        return cast(TrajectoryView, self._json("GET", f"/jobs/{_segment(job)}/trajectory"))

    # Robots and identity

    def robots(self) -> list[RobotView]:
        """``GET /robots``: every robot with its state, health and current job."""
        return cast(list[RobotView], self._json("GET", "/robots"))

    def robot(self, name: str) -> RobotView:
        """``GET /robots/{name}``."""
        return cast(RobotView, self._json("GET", f"/robots/{_segment(name)}"))

    def calibration(self, name: str) -> dict[str, Any]:
        """``GET /robots/{name}/calibration``: the robot's calibration document (JSON)."""
        return cast(dict[str, Any], self._json("GET", f"/robots/{_segment(name)}/calibration"))

    def whoami(self) -> Identity:
        """``GET /whoami``: who the token belongs to."""
        return cast(Identity, self._json("GET", "/whoami"))

    # Plumbing

    def _json(self, method: str, path: str, **request: Any) -> Any:
        response = self._send(method, path, **request)
        try:
            return response.json()
        except ValueError:
            raise RaasApiError(response.status_code, f"the server sent a non-JSON answer to {method} {path}") from None

    def _send(self, method: str, path: str, **request: Any) -> httpx.Response:
        with self._guard():
            response = self._http.request(method, path, **request)
        if response.is_error:
            raise _api_error(response)
        return response

    def _guard(self) -> _TransportGuard:
        return _TransportGuard(self.server)


class _TransportGuard:
    """Turns httpx's transport failures into one `RaasConnectionError`."""

    def __init__(self, server: str) -> None:
        self.server = server

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if isinstance(error, httpx.TimeoutException):
            raise RaasConnectionError(self.server, "no answer in time") from error
        if isinstance(error, (httpx.TransportError, httpx.InvalidURL)):
            raise RaasConnectionError(self.server, str(error) or type(error).__name__) from error


def _segment(value: str) -> str:
    """`value` as one URL path segment (a job id or robot name cannot escape its place)."""
    return quote(value, safe="")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _api_error(response: httpx.Response) -> RaasApiError:
    """The server's ``detail`` (or a readable stand-in) with the status."""
    return RaasApiError(response.status_code, _detail(response))


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail:  # FastAPI's request validation errors
        return "; ".join(_validation_problem(problem) for problem in detail)
    text = response.text.strip().splitlines()
    return text[0][:200] if text else (response.reason_phrase or "error")


def _validation_problem(problem: Any) -> str:
    if not isinstance(problem, dict):
        return str(problem)
    location = [str(part) for part in problem.get("loc", ()) if part not in ("body", "query", "path")]
    message = str(problem.get("msg", "invalid"))
    return f"{'.'.join(location)}: {message}" if location else message
