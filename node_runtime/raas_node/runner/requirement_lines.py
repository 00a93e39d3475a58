"""What a user's requirements.txt may say: packages, versions, markers and hashes, nothing else.

pip reads a requirements file as a small command line: ``--index-url`` or ``--extra-index-url``
send it to any server, ``-f``/``--find-links`` to any folder or page, ``-r``/``-c`` into other
files, ``-e`` and ``name @ URL`` or bare URLs and paths to any code, past the allowed git hosts
and the lab's package index. `check_requirement_lines` refuses every such line before pip runs,
naming the line: a requirements file is ``name[extras] specifiers ; markers`` lines (parsed by
`packaging`, pip's own parser), each optionally followed by ``--hash=<algorithm>:<hex>`` options,
plus blank lines and comments. Where the packages come from is the platform's choice (the
operator's ``fetchPipEnvironment``, e.g. a lab mirror), never the user's.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from raas_node.runner.fetch import FetchError

MAX_LINES = 500
"""More lines than any real controller needs (a bound on what is parsed)."""
_HASH = re.compile(r"--hash[= ](?:sha256|sha384|sha512):[0-9a-fA-F]{64,128}")


def check_requirement_lines(requirements: Path) -> list[Requirement]:
    """The requirements of `requirements`, or `FetchError` ``UnsafeRequirements`` naming the
    first line that is not a plain requirement (an option, a URL, a path, an editable install)."""
    try:
        text = requirements.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FetchError("UnsafeRequirements", f"requirements.txt cannot be read as UTF-8 text: {error}") from None
    logical = _logical_lines(text)
    if len(logical) > MAX_LINES:
        raise FetchError("UnsafeRequirements", f"requirements.txt has more than {MAX_LINES} lines")
    found: list[Requirement] = []
    for number, line in logical:
        body = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not body:
            continue
        found.append(_requirement(number, body))
    return found


def _requirement(number: int, body: str) -> Requirement:
    rest = _HASH.sub("", body).strip()  # (a malformed --hash stays, and fails to parse below)
    refuse = f"requirements.txt line {number}: {body[:120]!r}"
    if not rest or rest.startswith("-"):
        raise FetchError(
            "UnsafeRequirements",
            f"{refuse} is a pip option; only package requirements (name, version, markers, --hash) are allowed: "
            "the platform chooses the package index",
        )
    try:
        requirement = Requirement(rest)
    except InvalidRequirement as error:
        raise FetchError("UnsafeRequirements", f"{refuse} is not a package requirement ({error})") from None
    if requirement.url is not None:
        raise FetchError(
            "UnsafeRequirements", f"{refuse} installs from a URL; name a package from the index (and a version)"
        )
    return requirement


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with backslash continuations joined, as pip reads them."""
    lines: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        start, sofar = pending if pending is not None else (number, "")
        if raw.endswith("\\"):
            pending = (start, sofar + raw[:-1] + " ")
            continue
        pending = None
        lines.append((start, sofar + raw))
    if pending is not None:
        lines.append(pending)
    return lines
