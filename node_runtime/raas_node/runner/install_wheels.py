"""The job pod's second init container: ``python -m raas_node.runner.install_wheels <code> <target>``.

Runs only for a job whose code has a ``requirements.txt`` (the fetch pod stored its wheels). It
downloads ``wheels.tar.gz`` from the presigned URL in ``RAAS_WHEELS_URL``, unpacks the wheel
files (nothing else: plain ``*.whl`` members with no folders, within ``RAAS_WHEELS_MAX_BYTES``)
and installs ``<code>/requirements.txt`` from them into `<target>` with pip, with no index and no
network (the job pod has none). The controller container finds them on ``PYTHONPATH``.

Failures are written to the termination message as ``<Reason>: <message>`` (exit code 1), as
the fetch pod does: the user's requirements could not be installed on this robot.
"""

from __future__ import annotations

import functools
import os
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from raas_node.runner.fetch import FetchError
from raas_node.runner.requirements import pip_error_summary, run_pip
from raas_node.runner.termination import DEFAULT_TERMINATION_LOG, run_reported
from raas_node.runner.transfer import download

INSTALL_TIMEOUT_S = 600.0


def unpack_wheels(archive: Path, folder: Path, budget_bytes: int) -> list[Path]:
    """The wheel files of `archive`, written flat into `folder` (`FetchError` for anything else)."""
    wheels = []
    try:
        with tarfile.open(archive, "r:gz") as bundle:
            for member in bundle:
                name = PurePosixPath(member.name)
                if not member.isfile() or len(name.parts) != 1 or not name.name.endswith(".whl"):
                    raise FetchError("BadWheelhouse", f"wheels.tar.gz holds {member.name!r}, not a wheel file")
                budget_bytes -= member.size
                if budget_bytes < 0:
                    raise FetchError("RequirementsTooLarge", "the wheels are larger than the job pod's room for them")
                source = bundle.extractfile(member)
                if source is None:
                    continue
                target = folder / name.name
                with source, target.open("wb") as sink:
                    while chunk := source.read(1 << 20):
                        sink.write(chunk)
                wheels.append(target)
    except (tarfile.TarError, EOFError) as error:
        raise FetchError("BadWheelhouse", f"wheels.tar.gz cannot be read: {error}") from None
    return wheels


def install(code: Path, target: Path, environment: Mapping[str, str], scratch: Path) -> int:
    """Download, unpack and install; returns how many wheels the wheelhouse held."""
    archive = download(environment["RAAS_WHEELS_URL"], scratch / "wheels.tar.gz")
    wheelhouse = scratch / "wheels"
    wheelhouse.mkdir()
    budget = int(environment.get("RAAS_WHEELS_MAX_BYTES", str(512 * 1024 * 1024)))
    wheels = unpack_wheels(archive, wheelhouse, budget)
    archive.unlink()
    arguments = [
        "install", "--quiet", "--no-index", "--no-cache-dir", "--find-links", str(wheelhouse),
        "--target", str(target), "--requirement", str(code / "requirements.txt"),
    ]  # fmt: skip
    offline = {"PATH": environment.get("PATH", "/usr/bin:/bin"), "HOME": str(scratch), "TMPDIR": str(scratch)}
    result = run_pip(arguments, INSTALL_TIMEOUT_S, offline)
    if result.returncode != 0:
        detail = pip_error_summary(result.stderr)
        raise FetchError("RequirementsFailed", f"requirements.txt cannot be installed on this robot: {detail}")
    return len(wheels)


def main(argv: list[str] | None = None, environment: Mapping[str, str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    environment = os.environ if environment is None else environment
    report = Path(environment.get("RAAS_TERMINATION_LOG", DEFAULT_TERMINATION_LOG))
    if len(arguments) != 2:
        print("usage: python -m raas_node.runner.install_wheels <code folder> <target folder>", file=sys.stderr)
        return 2
    code, target = Path(arguments[0]), Path(arguments[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    # Scratch beside the target, on the volume sized for the wheels (the pod's /tmp is small).
    with tempfile.TemporaryDirectory(prefix="raas-wheels-", dir=target.parent) as scratch:
        step = functools.partial(install, code, target, environment, Path(scratch))
        count = run_reported(report, step, "InstallMisconfigured: the init container has no")
    if count is None:
        return 1
    print(f"installed the requirements from {count} wheels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
