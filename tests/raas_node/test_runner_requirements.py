"""A user's requirements.txt: resolved while fetching, installed offline, cached by content hash."""

from __future__ import annotations

import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from wheels import make_wheel

from raas_node.runner.fetch import FetchError
from raas_node.runner.launch import RunRequest, RunVerdict, run_entrypoint
from raas_node.runner.requirements import build_wheelhouse, install_offline


@dataclass(frozen=True)
class TinyRequirements:
    """requirements.txt asking for a wheel that only a local folder (`index`) serves."""

    index: Path
    requirements: Path
    digest: str
    cache: Path

    @property
    def index_arguments(self) -> tuple[str, ...]:
        return ("--no-index", "--find-links", str(self.index))


@pytest.fixture
def tiny(tmp_path: Path) -> TinyRequirements:
    index = tmp_path / "index"
    make_wheel(index)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tinypkg==1.0\n")
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    return TinyRequirements(index, requirements, digest, tmp_path / "cache")


def test_requirements_are_installed_offline_and_importable_by_the_run(tmp_path: Path, tiny: TinyRequirements) -> None:
    requirements, digest, cache, index = tiny.requirements, tiny.digest, tiny.cache, tiny.index
    build_wheelhouse(requirements, digest, cache, index_arguments=tiny.index_arguments)
    shutil.rmtree(index)  # from here on, nothing but the wheelhouse is available
    site = install_offline(requirements, digest, cache)
    code = tmp_path / "code"
    code.mkdir()
    (code / "run.py").write_text("import tinypkg\nprint(tinypkg.GREETING)\n")
    outcome = run_entrypoint(
        RunRequest(code, "run.py", tmp_path / "scratch", tmp_path / "out.txt", tmp_path / "err.txt",
                   python_path=[site], python_executable=sys.executable, sandbox_uid=None)
    )  # fmt: skip
    assert outcome.verdict is RunVerdict.COMPLETED, outcome.message
    assert (tmp_path / "out.txt").read_text() == "hello from tinypkg 1.0\n"


def test_a_resubmission_with_the_same_requirements_pays_nothing(tiny: TinyRequirements) -> None:
    requirements, digest, cache, index = tiny.requirements, tiny.digest, tiny.cache, tiny.index
    arguments = tiny.index_arguments
    first = build_wheelhouse(requirements, digest, cache, index_arguments=arguments)
    site = install_offline(requirements, digest, cache)
    marker = site / "tinypkg" / "__init__.py"
    stamp = marker.stat().st_mtime_ns
    shutil.rmtree(index)
    assert build_wheelhouse(requirements, digest, cache, index_arguments=arguments) == first
    assert install_offline(requirements, digest, cache) == site
    assert marker.stat().st_mtime_ns == stamp


def test_an_unresolvable_requirement_is_a_clear_fetch_error(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-package-raas==9.9\n")
    with pytest.raises(FetchError, match="cannot be resolved") as caught:
        build_wheelhouse(requirements, "d" * 64, tmp_path / "cache", index_arguments=("--no-index",))
    assert caught.value.reason == "RequirementsFailed"
    with pytest.raises(FetchError, match="not resolved while fetching"):
        install_offline(requirements, "d" * 64, tmp_path / "cache")
