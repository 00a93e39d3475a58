"""The job pod's install-requirements init container (`raas_node.runner.install_wheels`): the
fetch pod's wheels installed with pip, offline, into the folder the controller's PYTHONPATH
names. The wheelhouse is read from a file:// URL (urllib, as the pod reads its presigned URL)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from wheels import make_wheel

from raas_node.runner.install_wheels import main
from raas_node.runner.wheels import pack_wheelhouse


def code_folder(tmp_path: Path, requirements: str) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "run.py").write_text("import tinypkg\nprint(tinypkg.GREETING)\n")
    (code / "requirements.txt").write_text(requirements)
    return code


def test_the_wheels_are_installed_offline_where_the_controller_finds_them(tmp_path: Path) -> None:
    code = code_folder(tmp_path, "tinypkg==1.0\n")
    wheelhouse = pack_wheelhouse([make_wheel(tmp_path / "built", "tinypkg")], tmp_path / "wheels.tar.gz")
    target, report = tmp_path / "packages" / "site", tmp_path / "termination-log"
    environment = {"RAAS_WHEELS_URL": wheelhouse.as_uri(), "RAAS_TERMINATION_LOG": str(report), "PATH": "/usr/bin"}
    assert main([str(code), str(target)], environment) == 0
    run = subprocess.run(
        [sys.executable, "run.py"],
        cwd=code,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.stdout.strip() == "hello from tinypkg 1.0", run.stderr


def test_a_requirement_the_wheels_do_not_hold_is_reported_not_fetched(tmp_path: Path) -> None:
    code = code_folder(tmp_path, "tinypkg==1.0\nothermod\n")
    wheelhouse = pack_wheelhouse([make_wheel(tmp_path / "built", "tinypkg")], tmp_path / "wheels.tar.gz")
    report = tmp_path / "termination-log"
    environment = {"RAAS_WHEELS_URL": wheelhouse.as_uri(), "RAAS_TERMINATION_LOG": str(report)}
    assert main([str(code), str(tmp_path / "site")], environment) == 1
    assert report.read_text().startswith("RequirementsFailed: requirements.txt cannot be installed on this robot: ")
    assert "othermod" in report.read_text()


@pytest.mark.parametrize(
    ("member", "reason"),
    [("../escape.whl", "BadWheelhouse"), ("lib/inner.whl", "BadWheelhouse"), ("setup.py", "BadWheelhouse")],
)
def test_a_wheelhouse_with_anything_but_wheel_files_is_refused(tmp_path: Path, member: str, reason: str) -> None:
    code = code_folder(tmp_path, "tinypkg\n")
    archive = tmp_path / "wheels.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        data = b"not a wheel"
        info = tarfile.TarInfo(member)
        info.size = len(data)
        bundle.addfile(info, io.BytesIO(data))
    report = tmp_path / "termination-log"
    environment = {"RAAS_WHEELS_URL": archive.as_uri(), "RAAS_TERMINATION_LOG": str(report)}
    assert main([str(code), str(tmp_path / "site")], environment) == 1
    assert report.read_text().startswith(f"{reason}: ")
    assert not (tmp_path / "escape.whl").exists()


def test_a_wheelhouse_over_the_budget_is_refused(tmp_path: Path) -> None:
    code = code_folder(tmp_path, "tinypkg\n")
    wheelhouse = pack_wheelhouse([make_wheel(tmp_path / "built", "tinypkg")], tmp_path / "wheels.tar.gz")
    report = tmp_path / "termination-log"
    environment = {
        "RAAS_WHEELS_URL": wheelhouse.as_uri(),
        "RAAS_WHEELS_MAX_BYTES": "100",
        "RAAS_TERMINATION_LOG": str(report),
    }
    assert main([str(code), str(tmp_path / "site")], environment) == 1
    assert report.read_text().startswith("RequirementsTooLarge: ")


def test_a_missing_wheelhouse_or_setting_is_a_clear_failure(tmp_path: Path) -> None:
    code = code_folder(tmp_path, "tinypkg\n")
    report = tmp_path / "termination-log"
    missing = (tmp_path / "nowhere.tar.gz").as_uri()
    assert (
        main([str(code), str(tmp_path / "site")], {"RAAS_WHEELS_URL": missing, "RAAS_TERMINATION_LOG": str(report)})
        == 1
    )
    assert report.read_text().startswith("DownloadFailed: ")
    assert main([str(code), str(tmp_path / "site")], {"RAAS_TERMINATION_LOG": str(report)}) == 1
    assert report.read_text() == "InstallMisconfigured: the init container has no RAAS_WHEELS_URL"
