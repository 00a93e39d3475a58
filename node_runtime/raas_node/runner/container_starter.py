"""The starter: a container's first program, which waits for its one job and becomes it.

A run container is started before its job is known (a warm container waits for the next job on
its robot; a cold one gets its job at once). Its first program is `STARTER_SOURCE`, run as
``python -I -S -c`` by the image's interpreter, so it needs nothing from the image but the
standard library (an image built from older sources runs it too). It speaks through the pipes
``podman run --interactive`` attaches:

1. it writes `READY` on stdout: the container is up and waiting;
2. the runner writes the job on stdin (`encode_job`): an 8-byte big-endian length, a JSON header
   (``entrypoint``, ``environment``, ``python``), then a tar stream of the code, and closes stdin;
3. the starter unpacks the code into `WORK_FOLDER` (on the container's size-limited scratch
   tmpfs), points stdin at ``/dev/null``, writes `STARTED` on stdout and execs
   ``python -s -u <entrypoint>`` with exactly the header's environment. From then on stdout and
   stderr are the user's; the markers come before any of it and are never copied to the logs.

When the code cannot be unpacked (e.g. it does not fit the scratch space) the starter writes
``FAILED <reason>`` instead of `STARTED` and exits with `STARTER_FAILED_STATUS`; when stdin
ends before a job arrives (the runner went away) it exits with status 0 at once, so an idle
container never outlives its runner. The session token travels only through the pipe: it is in
neither podman's command line nor the container's configuration (``podman inspect``).
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

READY = b"raas-starter ready\n"
STARTED = b"raas-starter started\n"
FAILED = b"raas-starter failed "
STARTER_FAILED_STATUS = 121
WORK_FOLDER = "/scratch/work"
_MARKER_MAX_BYTES = 4096

STARTER_SOURCE = f"""
import json, os, struct, sys, tarfile

def failed(reason):
    os.write(1, {FAILED!r} + reason.encode("utf-8", "replace").replace(b"\\n", b" ") + b"\\n")
    os._exit({STARTER_FAILED_STATUS})

def read_exactly(count):
    data = b""
    while len(data) < count:
        chunk = os.read(0, count - len(data))
        if not chunk:
            os._exit(0)  # the runner went away before handing over a job
        data += chunk
    return data

os.write(1, {READY!r})
(size,) = struct.unpack(">Q", read_exactly(8))
header = json.loads(read_exactly(size))
try:
    os.makedirs({WORK_FOLDER!r}, exist_ok=True)
    with os.fdopen(0, "rb", closefd=False) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
        archive.extractall({WORK_FOLDER!r})
    os.chdir({WORK_FOLDER!r})
except (OSError, tarfile.TarError) as error:
    if getattr(error, "errno", None) == 28:
        failed("the job's code does not fit its scratch space")
    failed(f"cannot unpack the job's code: {{error}}")
null = os.open("/dev/null", os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
os.write(1, {STARTED!r})
python = header["python"]
try:
    os.execve(python, [python, "-s", "-u", header["entrypoint"]], header["environment"])
except OSError as error:
    os.write(2, f"cannot start {{python}}: {{error}}\\n".encode())
    os._exit(127)
"""


def encode_job(entrypoint: str, environment: Mapping[str, str], python: str, code_dir: Path) -> bytes:
    """The bytes the starter reads: the length-prefixed JSON header, then a tar of `code_dir`.

    Symbolic links are archived as links (never followed on the host); owners are dropped (the
    starter's files belong to the container's user).
    """
    header = json.dumps({"entrypoint": entrypoint, "environment": dict(environment), "python": python}).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(Path(code_dir).rglob("*")):
            tar.add(path, arcname=str(path.relative_to(code_dir)), recursive=False, filter=_anonymous)
    return struct.pack(">Q", len(header)) + header + archive.getvalue()


def _anonymous(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def read_marker(stream: IO[bytes], timeout_s: float) -> bytes | None:
    """The next line of `stream` (at most 4 KiB), or None when none came within `timeout_s`.

    The read goes through `stream`'s buffer, so bytes after the line stay there for the next
    reader (the output copier). After a timeout the read is still pending: the caller must end
    the container (closing the pipe) and not read `stream` again.
    """
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline(_MARKER_MAX_BYTES)), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return line[0] if line else None
