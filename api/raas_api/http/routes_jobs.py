"""``/api/v1/jobs``: submit, list, get, cancel, logs, results, trajectory, live state."""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from gym_raas.params import PendulumParams
from gym_raas.results.analysis import analyse
from gym_raas.results.layout import ResultFile, job_prefix, result_key
from gym_raas.results.store import ResultNotFoundError, StoreUnavailableError
from raas_api.http.deps import Caller, State
from raas_api.http.errors import AUTHENTICATED, error_responses, too_many_requests
from raas_api.http.listing import render_page
from raas_api.http.schemas import (
    JobList,
    JobSubmission,
    JobView,
    LiveState,
    ResultFileView,
    ResultManifest,
    SourceCheck,
    SourceCheckResult,
    TrajectoryView,
)
from raas_api.http.validation import check_git_url, check_source, check_time_limit
from raas_api.http.views import job_view
from raas_api.local.platform import QuotaExceededError, SubmissionRefusedError
from raas_api.stores.base import ConflictError, JobNotFoundError, JobRecord
from raas_node.agent.recorder import read_trajectory
from raas_node.runner.fetch import FetchError, fetch_git, resolve_ref
from raas_operator.jobs.model import JobSpec, Phase, RobotRequest

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=AUTHENTICATED)
_JOB = error_responses(404)
_STORE = error_responses(503)


def _binary(*media_types: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 response documented with its media types (FastAPI documents only JSON by itself)."""
    content = {
        media_type: {"schema": {"type": "object"} if media_type == "application/json" else {"type": "string"}}
        for media_type in media_types
    }
    return {200: {"description": description, "content": content}}


_RESULT_TYPES = sorted({result.content_type for result in ResultFile})
_SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["state", "end"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
    "required": ["event", "data"],
}
"""One Server-Sent Event as schema checkers read the stream (OpenAPI 3.1 has no event model)."""

_UPLOAD_CHUNK = 1024 * 1024
_ARCHIVE_MAGIC = {b"PK\x03\x04": ".zip", b"\x1f\x8b": ".tar.gz"}


def _owned(state: State, who: Caller, job_id: str) -> JobRecord:
    """The job if the caller may see it (its owner, or an admin); 404 otherwise."""
    try:
        record = state.platform.get(job_id)
    except (JobNotFoundError, ValueError):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}") from None
    if record.spec.owner != who.owner and who.role.value != "admin":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    return record


def _submit(state: State, who: Caller, spec_fields: dict[str, object]) -> JobView:
    wait_s = state.submission_limiter.acquire(who.owner)
    if wait_s > 0:
        raise too_many_requests(
            f"too many submissions: at most {state.settings.submissions_per_minute:g} a minute", wait_s
        )
    try:
        spec = JobSpec.model_validate({"owner": who.owner, **spec_fields})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{where}: {first['msg']}") from None
    try:
        record = state.platform.submit(spec)
    except QuotaExceededError as error:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(error)) from None
    except SubmissionRefusedError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    return job_view(record, state.platform)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a job",
    response_model=JobView,
    responses=error_responses(403),
)
def submit_job(body: JobSubmission, state: State, who: Caller) -> Response:
    source = check_source(body.source, state.settings, who)
    fields = body.model_dump(exclude={"time_limit_s"})
    fields["source"] = source.model_dump()
    fields["time_limit_s"] = check_time_limit(body.time_limit_s, state.settings)
    # Sent as serialised: FastAPI would validate the view it was just built from again.
    view = _submit(state, who, fields)
    return Response(view.model_dump_json(), status.HTTP_201_CREATED, media_type="application/json")


@router.post("/upload", status_code=status.HTTP_201_CREATED, summary="Submit a job from an uploaded archive")
def upload_job(
    state: State,
    who: Caller,
    archive: Annotated[UploadFile, File(description="A .zip or .tar.gz of the code folder.")],
    entrypoint: Annotated[str, Form()] = "run.py",
    robot: Annotated[str | None, Form(description="Run on this robot.")] = None,
    time_limit_s: Annotated[int | None, Form(ge=1)] = None,
    priority: Annotated[int, Form(ge=-100, le=100)] = 0,
    control_hz: Annotated[float | None, Form(description="Control rate (Hz); 20 if omitted.")] = None,
) -> JobView:
    limit = state.settings.max_upload_bytes
    uploads = state.settings.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    head = archive.file.read(4)
    suffix = next((ending for magic, ending in _ARCHIVE_MAGIC.items() if head.startswith(magic)), None)
    if suffix is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the upload must be a .zip or .tar.gz archive")
    original = Path(archive.filename or "").name
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", original)[:80] if original.endswith(suffix) else f"upload{suffix}"
    target = uploads / f"{secrets.token_hex(6)}-{readable}"
    size = len(head)
    with target.open("wb") as sink:
        sink.write(head)
        while chunk := archive.file.read(_UPLOAD_CHUNK):
            size += len(chunk)
            if size > limit:
                sink.close()
                target.unlink(missing_ok=True)
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"the archive is larger than this server's limit of {limit} bytes",
                )
            sink.write(chunk)
    request = RobotRequest(name=robot) if robot else RobotRequest()
    try:
        source = state.platform.source_from_upload(target.resolve(), entrypoint)
    except SubmissionRefusedError as error:
        target.unlink(missing_ok=True)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    fields: dict[str, object] = {
        "source": source,
        "entrypoint": entrypoint,
        "robot": request.model_dump(),
        "time_limit_s": check_time_limit(time_limit_s, state.settings),
        "priority": priority,
    }
    if control_hz is not None:  # checked (finite, within bounds) by JobSpec with the rest
        fields["control_hz"] = control_hz
    try:
        return _submit(state, who, fields)
    except HTTPException:
        target.unlink(missing_ok=True)
        raise


@router.post("/check", summary="Check that a git source can be fetched and has its entrypoint")
def check_job_source(body: SourceCheck, state: State, who: Caller) -> SourceCheckResult:
    check_git_url(body.source, state.settings)
    try:
        commit = resolve_ref(body.source.url, body.source.ref)
        with tempfile.TemporaryDirectory(prefix="raas-check-") as scratch:
            fetch_git(body.source.url, commit, body.entrypoint, Path(scratch))
    except FetchError as error:
        return SourceCheckResult(ok=False, message=str(error))
    return SourceCheckResult(ok=True, commit=commit, message=f"{body.entrypoint} found at {commit[:12]}")


@router.get("", summary="List jobs (newest first)", response_model=JobList, responses=error_responses(400, 403))
def list_jobs(
    state: State,
    who: Caller,
    owner: Annotated[str | None, Query(max_length=63)] = None,
    phase: Annotated[list[Phase] | None, Query()] = None,
    robot: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    if who.role.value != "admin":
        if owner is not None and owner != who.owner:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "only admins can list other owners' jobs")
        owner = who.owner
    try:
        page = state.platform.store.list_jobs(owner=owner, phases=phase, robot=robot, limit=limit, cursor=cursor)
    except ValueError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"bad cursor: {error}") from None
    # Sent as rendered: FastAPI would validate the (already valid) page again, and each job is
    # rendered once per version rather than per request (`listing.ViewCache`).
    return Response(
        render_page(page.jobs, page.next_cursor, state.platform, state.views), media_type="application/json"
    )


@router.get("/{job_id}", summary="A job's status", responses=_JOB)
def get_job(job_id: str, state: State, who: Caller) -> JobView:
    return job_view(_owned(state, who, job_id), state.platform)


@router.post(
    "/{job_id}/cancel",
    summary="Cancel a job (a running one stops at once)",
    responses={**_JOB, **error_responses(409)},
)
def cancel_job(job_id: str, state: State, who: Caller) -> JobView:
    _owned(state, who, job_id)
    try:
        cancelled = state.platform.cancel(job_id)
    except ConflictError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"job {job_id} kept changing while it was being cancelled; cancel it again"
        ) from None
    return job_view(cancelled, state.platform)


@router.get(
    "/{job_id}/logs",
    summary="stdout or stderr (followable while the job runs)",
    response_class=Response,
    responses={**_binary("text/plain; charset=utf-8", description="The log so far (or as written)."), **_JOB},
)
def job_logs(
    job_id: str,
    state: State,
    who: Caller,
    stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
    follow: bool = False,
) -> Response:
    _owned(state, who, job_id)
    platform = state.platform
    if not follow:
        return Response(platform.read_log(job_id, stream), media_type="text/plain; charset=utf-8")

    def chunks() -> Iterator[bytes]:
        sent = 0
        while True:
            finished = platform.get(job_id).status.phase.is_terminal
            text = platform.read_log(job_id, stream)
            if len(text) > sent:
                yield text[sent:]
                sent = len(text)
            if finished:
                return
            time.sleep(0.25)

    return StreamingResponse(chunks(), media_type="text/plain; charset=utf-8")


@router.get("/{job_id}/results", summary="The job's result files, with download links", responses={**_JOB, **_STORE})
def job_results(job_id: str, state: State, who: Caller) -> ResultManifest:
    record = _owned(state, who, job_id)
    store = state.platform.results
    try:
        keys = store.list_keys(job_prefix(job_id))
    except StoreUnavailableError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    known = {result.value: result for result in ResultFile}
    files = []
    for key in keys:
        name = key.rsplit("/", 1)[-1]
        if name not in known:
            continue
        link = store.download_url(key) if state.settings.presigned_result_links else ""
        url = link if link.startswith(("http://", "https://")) else f"/api/v1/jobs/{job_id}/results/{name}"
        path_of = getattr(store, "path_of", None)
        size = path_of(key).stat().st_size if path_of is not None else None
        files.append(ResultFileView(name=name, content_type=known[name].content_type, size=size, url=url))
    return ResultManifest(
        job=job_id, phase=record.status.phase, results_pending=record.status.results_pending, files=files
    )


@router.get(
    "/{job_id}/results/{name}",
    summary="Download one result file",
    response_class=Response,
    responses={**_binary(*_RESULT_TYPES, description="The file, with its own media type."), **_JOB, **_STORE},
)
def job_result_file(job_id: str, name: str, state: State, who: Caller) -> Response:
    _owned(state, who, job_id)
    result = next((result for result in ResultFile if result.value == name), None)
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no result file {name!r}")
    try:
        data = state.platform.results.get_bytes(result_key(job_id, result))
    except ResultNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no {name} (yet)") from None
    except StoreUnavailableError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(data, media_type=result.content_type, headers=headers)


@router.get("/{job_id}/trajectory", summary="The recorded run as columns, for plots", responses={**_JOB, **_STORE})
def job_trajectory(job_id: str, state: State, who: Caller) -> TrajectoryView:
    _owned(state, who, job_id)
    cache: dict[str, TrajectoryView] = state.trajectory_cache
    if job_id in cache:
        return cache[job_id]
    store = state.platform.results
    try:
        recording = store.get_bytes(result_key(job_id, ResultFile.TRAJECTORY))
        metadata = json.loads(store.get_bytes(result_key(job_id, ResultFile.METADATA)))
    except ResultNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no recorded trajectory (yet)") from None
    except StoreUnavailableError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    with tempfile.NamedTemporaryFile(suffix=".parquet") as handle:
        handle.write(recording)
        handle.flush()
        columns = read_trajectory(Path(handle.name))
    params = PendulumParams.from_dict(metadata.get("calibration") or {})
    analysis = analyse(columns, params)
    viewing = analysis.viewing
    view = TrajectoryView(
        job=job_id,
        time_s=list(viewing.time_s),
        theta_rad=list(viewing.theta_rad),
        theta_dot_rad_per_s=list(viewing.theta_dot_rad_per_s),
        command=list(viewing.command),
        reward=list(viewing.reward),
        simulated_theta_rad=[float(value) for value in analysis.simulated_theta_rad],
        summary=analysis.summary,
    )
    if len(cache) > 64:
        cache.pop(next(iter(cache)))
    cache[job_id] = view
    return view


@router.get(
    "/{job_id}/live",
    summary="Live state while the job runs (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "``state`` events (data: a `LiveState` as JSON), then one ``end`` event.",
            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
        },
        **_JOB,
    },
)
def job_live(job_id: str, state: State, who: Caller) -> StreamingResponse:
    record = _owned(state, who, job_id)
    platform = state.platform
    deadline = time.monotonic() + record.spec.time_limit_s + 3600

    def events() -> Iterator[str]:
        while time.monotonic() < deadline:
            now = platform.get(job_id)
            status_now, live = now.status, platform.live_state(now)
            event = LiveState(
                job=job_id,
                phase=status_now.phase,
                queue_position=status_now.queue_position,
                steps=None if live is None else live.steps,
                time_s=None if live is None else live.time_s,
                theta_rad=None if live is None else live.theta_rad,
                theta_dot_rad_per_s=None if live is None else live.theta_dot_rad_per_s,
                command=None if live is None else live.command,
            )
            yield f"event: state\ndata: {event.model_dump_json()}\n\n"
            if status_now.phase.is_terminal:
                yield f"event: end\ndata: {json.dumps({'job': job_id, 'phase': status_now.phase.value})}\n\n"
                return
            time.sleep(0.1 if status_now.phase is Phase.RUNNING else 0.5)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
