"""The ``raas`` subcommands that talk to a RaaS server: submit, status, list, logs, results, cancel,
robots and calibration.

Each takes ``--server URL`` and ``--token TOKEN`` (else ``RAAS_SERVER``/``RAAS_TOKEN``, else
``$XDG_CONFIG_HOME/raas/config.json``, else ``http://127.0.0.1:8000``). Whatever goes wrong — an
error from the server, a server that cannot be reached, a file that cannot be written — is one
line on stderr (``raas: error: ...``) and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from gym_raas.cli.client import (
    API_PREFIX,
    TERMINAL_PHASES,
    JobView,
    RaasClient,
    RaasError,
    Stream,
    pack_folder,
    resolve_connection,
)
from gym_raas.params import CALIBRATION_FORMAT, CalibrationError, PendulumParams, calibration_from_document

PHASES = (
    "Pending",
    "Fetching",
    "Queued",
    "Starting",
    "Running",
    "Uploading",
    "Succeeded",
    "Failed",
    "Cancelled",
    "TimedOut",
)
GIT_URL = re.compile(r"^(https?|git|ssh)://|^[\w.-]+@[\w.-]+:")
"""What `raas submit` treats as a git repository: a URL with one of these schemes, or scp-style."""
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
POLL_INTERVAL_S = 0.5
"""How often ``raas submit --wait`` asks for the job's progress."""

Handler = Callable[[argparse.Namespace], int]


def add_parsers(subcommands: Any) -> None:
    """Register the server subcommands on `subcommands` (an argparse subparsers action).

    A name an installed plugin already registered is left to the plugin (argparse refuses two
    subcommands with one name).
    """
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("server")
    group.add_argument(
        "--server", metavar="URL", help="RaaS server (default: $RAAS_SERVER, config file, localhost:8000)"
    )
    group.add_argument("--token", metavar="TOKEN", help="API token (default: $RAAS_TOKEN, then the config file)")
    taken = set(subcommands.choices)
    for name, build in _BUILDERS.items():
        if name not in taken:
            build(subcommands, [connection])


# --- Parsers ------------------------------------------------------------------------------------


def _add_submit(subcommands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "submit", parents=parents, help="run a controller (a git repository or a local folder) on a robot"
    )
    parser.add_argument("source", help="git URL (https, http, git, ssh) or a folder (.tar.gz/.zip also accepted)")
    parser.add_argument("--ref", default=None, help="git branch, tag or commit (default: HEAD; git URLs only)")
    parser.add_argument("--entrypoint", default="run.py", help="Python file to run (default: run.py)")
    parser.add_argument("--robot", default=None, metavar="NAME", help="run on exactly this robot")
    parser.add_argument("--time-limit", type=int, default=None, metavar="S", help="wall-clock limit in seconds")
    parser.add_argument("--priority", type=int, default=0, help="higher runs first, -100..100 (default: 0)")
    parser.add_argument(
        "--control-hz",
        type=float,
        default=None,
        metavar="HZ",
        help="control rate, one the robots run at (raas robots lists them; default: 20)",
    )
    parser.add_argument("--wait", action="store_true", help="show progress until the job ends, then its summary")
    parser.set_defaults(handler=handle_submit)


def _add_status(subcommands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("status", parents=parents, help="show a job's phase, robot, progress and summary")
    parser.add_argument("job", help="job id (job-...)")
    parser.add_argument("--json", action="store_true", help="print the job as JSON")
    parser.set_defaults(handler=handle_status)


def _add_list(subcommands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("list", parents=parents, help="list jobs, newest first")
    parser.add_argument("--owner", default=None, help="only this owner's jobs")
    parser.add_argument("--phase", default=None, choices=PHASES, help="only jobs in this phase")
    parser.add_argument("--robot", default=None, metavar="NAME", help="only jobs on this robot")
    parser.add_argument("--limit", type=int, default=None, help="jobs per page (default: the server's)")
    parser.add_argument("--all", action="store_true", help="every page, not just the first")
    parser.set_defaults(handler=handle_list)


def _add_logs(subcommands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("logs", parents=parents, help="print a job's stdout (or stderr)")
    parser.add_argument("job", help="job id (job-...)")
    parser.add_argument("--stderr", action="store_true", help="the controller's stderr instead of its stdout")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    parser.set_defaults(handler=handle_logs)


def _add_results(subcommands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("results", parents=parents, help="list (or download) a job's result files")
    parser.add_argument("job", help="job id (job-...)")
    parser.add_argument("--download", type=Path, default=None, metavar="DIR", help="download every file into DIR")
    parser.set_defaults(handler=handle_results)


def _add_cancel(subcommands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("cancel", parents=parents, help="stop a job")
    parser.add_argument("job", help="job id (job-...)")
    parser.set_defaults(handler=handle_cancel)


def _add_robots(subcommands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("robots", parents=parents, help="list robots: state, readiness, job, temperature")
    parser.set_defaults(handler=handle_robots)


def _add_calibration(subcommands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "calibration", parents=parents, help="save a robot's calibration to simulate it locally with gym_raas"
    )
    parser.add_argument("robot", help="robot name")
    parser.add_argument(
        "-o", "--output", type=Path, default=None, metavar="FILE", help="file to write (default: stdout)"
    )
    parser.set_defaults(handler=handle_calibration)


_BUILDERS: dict[str, Callable[[Any, list[argparse.ArgumentParser]], None]] = {
    "submit": _add_submit,
    "status": _add_status,
    "list": _add_list,
    "logs": _add_logs,
    "results": _add_results,
    "cancel": _add_cancel,
    "robots": _add_robots,
    "calibration": _add_calibration,
}


# --- Handlers -----------------------------------------------------------------------------------


def _one_line_errors(handler: Callable[[argparse.Namespace, RaasClient], int]) -> Handler:
    """Connect to the server, run `handler`, and report any failure as one line with exit code 1."""

    @functools.wraps(handler)
    def run(arguments: argparse.Namespace) -> int:
        try:
            server, token = resolve_connection(arguments.server, arguments.token)
            with RaasClient(server, token) as client:
                return handler(arguments, client)
        except RaasError as error:
            return _fail(str(error))
        except BrokenPipeError:  # the reader went away (`raas list | head`): nothing left to say
            _silence_stdout()
            return 1
        except OSError as error:  # a file that cannot be read or written
            return _fail(f"{error.strerror or error}: {error.filename}" if error.filename else str(error))

    return run


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not hit the broken pipe again."""
    with contextlib.suppress(OSError, ValueError):  # no real file descriptor (captured output)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _fail(message: str) -> int:
    print(f"raas: error: {message}", file=sys.stderr)
    return 1


@_one_line_errors
def handle_submit(arguments: argparse.Namespace, client: RaasClient) -> int:
    """``raas submit``: send the code; with ``--wait``, follow it and print its summary."""
    options: dict[str, Any] = {
        "entrypoint": arguments.entrypoint,
        "robot": arguments.robot,
        "time_limit_s": arguments.time_limit,
        "priority": arguments.priority,
        "control_hz": arguments.control_hz,
    }
    source: str = arguments.source
    path = Path(source)
    if GIT_URL.match(source) and not path.exists():
        job = client.submit_git(source, ref=arguments.ref or "HEAD", **options)
    elif arguments.ref is not None:
        raise RaasError(f"--ref applies to git URLs only, not to {source}")
    elif path.is_dir():
        job = client.submit_archive(pack_folder(path), filename=f"{path.resolve().name or 'code'}.tar.gz", **options)
    elif path.is_file() and source.endswith(ARCHIVE_SUFFIXES):
        job = client.submit_archive(path.read_bytes(), filename=path.name, **options)
    else:
        raise RaasError(f"{source} is neither a folder nor a git URL (https://, http://, git://, ssh://)")
    print(f"submitted {job['id']} ({job['phase']})", flush=True)
    if not arguments.wait:
        print(f"follow it with: raas status {job['id']}")
        return 0
    try:
        job = wait_for(client, job["id"], sys.stderr)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; {job['id']} keeps going (raas cancel {job['id']} stops it)", file=sys.stderr)
        return 130
    print_summary(job, client.server)
    return 0 if job["phase"] == "Succeeded" else 1


def wait_for(client: RaasClient, job_id: str, display: TextIO, poll_interval_s: float = POLL_INTERVAL_S) -> JobView:
    """Poll the job until it ends, showing its progress on `display`; the final job.

    On a terminal the progress line is rewritten in place; elsewhere each change is a new line.
    """
    in_place = display.isatty()
    shown = ""
    try:
        while True:
            job = client.get_job(job_id)
            if job["phase"] in TERMINAL_PHASES:
                return job
            line = progress_line(job)
            if line != shown:
                display.write(f"\r{line}\x1b[K" if in_place else f"{line}\n")
                display.flush()
                shown = line
            time.sleep(poll_interval_s)
    finally:
        if in_place and shown:
            display.write("\n")
            display.flush()


def progress_line(job: JobView) -> str:
    """One line of progress: the queue position while queued, the steps run while running."""
    line = f"{job['id']}: {job['phase']}"
    if job["phase"] == "Queued" and job.get("queue_position") is not None:
        line += f", position {job['queue_position']} in the queue"
        if job.get("estimated_start"):
            line += f" (starts about {_time(job['estimated_start'])})"
    elif job["phase"] == "Running":
        line += f" on {job['robot']}" if job.get("robot") else ""
        line += f", {job['steps'] or 0} steps" if job.get("steps") is not None else ""
    elif job.get("robot"):
        line += f" on {job['robot']}"
    return line


def print_summary(job: JobView, server: str) -> None:
    """The end of ``raas submit --wait``: phase, robot, what the run achieved, the results link."""
    summary: dict[str, Any] = dict(job.get("summary") or {})
    swing = summary.get("swing_up_time_s")
    rmse = summary.get("sim_to_real_rmse_rad")
    reward = summary.get("total_reward")
    rows = [
        ("phase", job["phase"] + (f" ({job['failure_class']})" if job.get("failure_class") else "")),
        ("robot", job.get("robot") or "-"),
        ("steps", str(summary.get("steps", job.get("steps") or 0))),
        ("total reward", f"{reward:.1f}" if reward is not None else "-"),
        ("swing-up time", f"{swing:.2f} s" if swing is not None else "never"),
        ("sim-to-real", f"{rmse:.4f} rad RMSE" if rmse is not None else "-"),
        ("results", f"{server}{API_PREFIX}/jobs/{job['id']}/results"),
    ]
    message = job.get("message") or job.get("reason")
    if message and job["phase"] != "Succeeded":
        rows.insert(1, ("why", message))
    _print_fields(rows)


@_one_line_errors
def handle_status(arguments: argparse.Namespace, client: RaasClient) -> int:
    """``raas status``: everything known about one job."""
    job = client.get_job(arguments.job)
    if arguments.json:
        print(json.dumps(job, indent=2))
        return 0
    rows = [
        ("job", job["id"]),
        ("owner", job["owner"]),
        ("phase", job["phase"] + (f" ({job['failure_class']})" if job.get("failure_class") else "")),
        ("reason", " — ".join(part for part in (job.get("reason"), job.get("message")) if part) or "-"),
        ("source", _source(job)),
        ("entrypoint", job["entrypoint"]),
        ("commit", job.get("commit") or "-"),
        ("robot", job.get("robot") or "-"),
        ("created", _time(job["created_at"])),
        ("time limit", f"{job['time_limit_s']} s"),
        ("control rate", f"{job.get('control_hz', 20.0):g} Hz"),
        ("attempts", str(job.get("attempts", 0))),
    ]
    if job.get("queue_position") is not None:
        rows.append(("queue position", str(job["queue_position"])))
    if job.get("estimated_start"):
        rows.append(("estimated start", _time(job["estimated_start"])))
    if job.get("steps") is not None:
        rows.append(("steps", str(job["steps"])))
    summary = job.get("summary")
    if summary:
        swing = summary.get("swing_up_time_s")
        rows += [
            ("steps run", str(summary.get("steps"))),
            ("total reward", _number(summary.get("total_reward"), ".1f")),
            ("swing-up time", f"{swing:.2f} s" if swing is not None else "never"),
            ("sim-to-real", _number(summary.get("sim_to_real_rmse_rad"), ".4f", " rad RMSE")),
            ("deadline misses", str(summary.get("deadline_misses", 0))),
        ]
    if job.get("results_pending"):
        rows.append(("results pending", f"{job['results_pending']} files still uploading"))
    _print_fields(rows)
    history = job.get("history") or []
    if history:
        print("history:")
        for change in history:
            note = " — ".join(part for part in (change.get("reason"), change.get("message")) if part)
            print(f"  {_time(change['at'])}  {change['phase']:<10} {note}".rstrip())
    return 0


@_one_line_errors
def handle_list(arguments: argparse.Namespace, client: RaasClient) -> int:
    """``raas list``: a table of jobs (the first page, or ``--all``)."""
    filters = {"owner": arguments.owner, "phase": arguments.phase, "robot": arguments.robot, "limit": arguments.limit}
    more = False
    if arguments.all:
        jobs = list(client.iter_jobs(**filters))
    else:
        page = client.list_jobs(**filters)
        jobs, more = page["jobs"], bool(page["next_cursor"])
    rows = [
        [
            job["id"],
            job["owner"],
            job["phase"],
            job.get("robot") or "-",
            _steps(job),
            _time(job["created_at"]),
            _source(job),
        ]
        for job in jobs
    ]
    print_table(["JOB", "OWNER", "PHASE", "ROBOT", "STEPS", "CREATED", "SOURCE"], rows)
    if more:
        print("(more jobs: raas list --all)", file=sys.stderr)
    return 0


@_one_line_errors
def handle_logs(arguments: argparse.Namespace, client: RaasClient) -> int:
    """``raas logs``: the controller's stdout (or ``--stderr``), optionally followed live."""
    stream: Stream = "stderr" if arguments.stderr else "stdout"
    if arguments.follow:
        for chunk in client.follow_logs(arguments.job, stream):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    else:
        sys.stdout.write(client.logs(arguments.job, stream))
    return 0


@_one_line_errors
def handle_results(arguments: argparse.Namespace, client: RaasClient) -> int:
    """``raas results``: the manifest; with ``--download DIR``, every file saved into DIR."""
    manifest = client.results(arguments.job)
    files = manifest["files"]
    print(f"{manifest['job']}: {manifest['phase']}, {len(files)} result files")
    if manifest.get("results_pending"):
        print(f"({manifest['results_pending']} files still uploading; run this again later)", file=sys.stderr)
    target: Path | None = arguments.download
    if target is None:
        rows = [
            [item["name"], _size(item.get("size")), item["content_type"], _absolute(client, item["url"])]
            for item in files
        ]
        print_table(["NAME", "SIZE", "TYPE", "URL"], rows)
        return 0
    target.mkdir(parents=True, exist_ok=True)
    for item in files:
        name = item["name"]
        if Path(name).name != name or name in ("", ".", ".."):
            raise RaasError(f"the server sent a result file name that is not a plain file name: {name!r}")
        saved = client.download(item["url"], target / name)
        print(f"  {saved}  ({_size(saved.stat().st_size)})")
    return 0


@_one_line_errors
def handle_cancel(arguments: argparse.Namespace, client: RaasClient) -> int:
    """``raas cancel``: stop a job; prints the phase it is in afterwards."""
    job = client.cancel_job(arguments.job)
    print(f"{job['id']}: {job['phase']}")
    return 0


@_one_line_errors
def handle_robots(arguments: argparse.Namespace, client: RaasClient) -> int:
    """``raas robots``: every robot's state, readiness, current job and motor temperature."""
    rows = [
        [
            robot["name"],
            robot["state"],
            "yes" if robot["ready"] else "no",
            robot.get("current_job") or "-",
            _number(robot.get("temperature_celsius"), ".1f", " °C"),
            ", ".join(f"{hz:g}" for hz in robot.get("supported_control_hz", [20.0])),
            "; ".join(robot.get("reasons") or []),
        ]
        for robot in client.robots()
    ]
    print_table(["NAME", "STATE", "READY", "JOB", "TEMPERATURE", "RATES (HZ)", "NOT READY BECAUSE"], rows)
    return 0


@_one_line_errors
def handle_calibration(arguments: argparse.Namespace, client: RaasClient) -> int:
    """``raas calibration``: the robot's calibration file, loadable by ``gym.make(..., calibration=FILE)``."""
    document = client.calibration(arguments.robot)
    try:
        if document.get("format") != CALIBRATION_FORMAT:  # a bare parameter mapping: wrap it
            PendulumParams.from_dict(document.get("params", document))
            document = {
                "format": CALIBRATION_FORMAT,
                "robot": arguments.robot,
                "params": document.get("params", document),
            }
        calibration_from_document(document, origin=f"{arguments.robot}'s calibration")
    except CalibrationError as error:
        raise RaasError(f"the server sent a calibration gym_raas cannot use: {error}") from None
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    output: Path | None = arguments.output
    if output is None:
        sys.stdout.write(text)
        return 0
    output.write_text(text, encoding="utf-8")
    print(f"saved {arguments.robot}'s calibration to {output}")
    print(f'simulate it: gym.make("RaasPendulum-v0", calibration="{output}")')
    return 0


# --- Formatting ---------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns, as wide as their widest cell, two spaces apart."""
    widths = [max([len(header)] + [len(row[column]) for row in rows]) for column, header in enumerate(headers)]
    for row in [list(headers), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _print_fields(rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        print(f"  {label + ':':<{width}} {value}")


def _source(job: JobView) -> str:
    source = job.get("source") or {}
    if source.get("kind") == "git":
        return f"{source.get('url')}@{source.get('ref', 'HEAD')}"
    path = source.get("path")
    return f"upload {Path(str(path)).name}" if path else str(source.get("kind", "-"))


def _steps(job: JobView) -> str:
    if job.get("steps") is not None:
        return str(job["steps"])
    summary = job.get("summary")
    return str(summary["steps"]) if summary else "-"


def _time(iso: str | None) -> str:
    """``2024-05-01T12:00:03.123+00:00`` → ``2024-05-01 12:00:03``."""
    return iso.replace("T", " ")[:19] if iso else "-"


def _number(value: float | None, spec: str, unit: str = "") -> str:
    return f"{value:{spec}}{unit}" if value is not None else "-"


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 1000:
        return f"{size} B"
    return f"{size / 1000:.1f} kB" if size < 1_000_000 else f"{size / 1_000_000:.1f} MB"


def _absolute(client: RaasClient, url: str) -> str:
    return url if "://" in url else client.server + url
