"""The results layout contract: one versioned prefix per job, fixed file names.

Every writer (the robot agent, the job runner, the operator, the local platform) and every
reader (web API, CLI, users' scripts) builds keys with these functions; nobody guesses paths::

    results/v1/<job-id>/metadata.json        job, source, commit, robot, calibration, phases, summary
    results/v1/<job-id>/trajectory.parquet   the agent's ground truth, one row per control step
    results/v1/<job-id>/stdout.txt
    results/v1/<job-id>/stderr.txt
    results/v1/<job-id>/code.tar.gz          the exact snapshot that ran
    results/v1/<job-id>/plot.png
    results/v1/<job-id>/animation.gif
    results/v1/<job-id>/session.json         (cluster) the robot agent's record of the session
    results/v1/<job-id>/wheels.tar.gz        (cluster) the wheels of the code's requirements.txt

In the cluster the robot agent uploads ``trajectory.parquet`` and ``session.json`` itself; the
operator adds the log and ``metadata.json``.
"""

from __future__ import annotations

import re
from enum import Enum

LAYOUT_VERSION = "v1"
RESULTS_ROOT = "results"
JOB_ID_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class ResultFile(str, Enum):
    """The files of a job's result bundle."""

    METADATA = "metadata.json"
    TRAJECTORY = "trajectory.parquet"
    STDOUT = "stdout.txt"
    STDERR = "stderr.txt"
    CODE = "code.tar.gz"
    PLOT = "plot.png"
    ANIMATION = "animation.gif"

    @property
    def content_type(self) -> str:
        """MIME type to store and serve the file with."""
        return _CONTENT_TYPES[self]


_CONTENT_TYPES = {
    ResultFile.METADATA: "application/json",
    ResultFile.TRAJECTORY: "application/vnd.apache.parquet",
    ResultFile.STDOUT: "text/plain; charset=utf-8",
    ResultFile.STDERR: "text/plain; charset=utf-8",
    ResultFile.CODE: "application/gzip",
    ResultFile.PLOT: "image/png",
    ResultFile.ANIMATION: "image/gif",
}


def check_job_id(job_id: str) -> str:
    """Return `job_id` if it is a valid job id (a DNS label), else raise ValueError."""
    if not JOB_ID_PATTERN.match(job_id):
        raise ValueError(f"job id {job_id!r} must be lowercase letters, digits and '-', at most 63 characters")
    return job_id


def job_prefix(job_id: str) -> str:
    """Key prefix of every result of a job (ends with '/')."""
    return f"{RESULTS_ROOT}/{LAYOUT_VERSION}/{check_job_id(job_id)}/"


def result_key(job_id: str, result: ResultFile) -> str:
    """Key of one result file of a job."""
    return job_prefix(job_id) + result.value


SESSION_FILE = "session.json"
"""The robot agent's own record of a session (outcome, steps, reward, misses, safety events)."""


def session_key(job_id: str) -> str:
    """Key of the agent's ``session.json`` of a job."""
    return job_prefix(job_id) + SESSION_FILE


UPLOADS_ROOT = "uploads"


def upload_key(sha256: str) -> str:
    """Where the web API keeps an uploaded job's code (a normalised ``code.tar.gz``) by its SHA-256,
    until the operator adopts it as the job's ``code.tar.gz``."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a SHA-256 digest: {sha256!r}")
    return f"{UPLOADS_ROOT}/{sha256}.tar.gz"


WHEELS_FILE = "wheels.tar.gz"
"""The wheels the fetch pod resolved for a job's requirements.txt, for the job pod to install."""


def wheels_key(job_id: str) -> str:
    """Key of a job's ``wheels.tar.gz``."""
    return job_prefix(job_id) + WHEELS_FILE
