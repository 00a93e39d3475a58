"""Getting a user's code: a git commit or a local folder/archive, into a checked snapshot.

Fetching is the only step of a job with network access (in the cluster it runs in a throw-away
fetch pod). It resolves the ref to a commit, clones exactly that commit shallowly — no
submodules, no hooks, no local-file transport — within size and time limits, checks the
entrypoint is there, and packs the tree as ``code.tar.gz`` (the exact snapshot that runs and
that is stored with the results). Errors are `FetchError` with a reason a user can act on.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SHA_PATTERN = re.compile(r"^[0-9a-f]{40}$")


class FetchError(Exception):
    """The code could not be fetched; `reason` is a short CamelCase cause, str() the message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FetchLimits:
    """Bounds on what a user's repository may cost."""

    timeout_s: float = 60.0
    max_bytes: int = 50 * 1024 * 1024
    """Largest checked-out tree (and largest archive when unpacked)."""
    max_files: int = 5000


@dataclass(frozen=True)
class Snapshot:
    """A user's code, checked out and packed."""

    directory: Path
    """The tree (no .git)."""
    archive: Path
    """``code.tar.gz`` of the tree."""
    commit: str | None
    """Commit SHA for git sources; None for local sources."""
    requirements_sha256: str | None
    """Content hash of requirements.txt, when the code has one."""


def _git(*args: str, cwd: Path | None = None, timeout_s: float) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_ALLOW_PROTOCOL": "http:https:git:ssh",
        "LC_ALL": "C",
    }
    command = ["git", "-c", "core.hooksPath=/dev/null", "-c", "protocol.file.allow=never", *args]
    try:
        return subprocess.run(
            command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise FetchError("FetchTimeout", f"git did not finish within {timeout_s:.0f} s (git {args[0]})") from None


def resolve_ref(url: str, ref: str, limits: FetchLimits = FetchLimits()) -> str:
    """The commit SHA that `ref` (branch, tag, HEAD or a full SHA) names in the repository."""
    if SHA_PATTERN.match(ref):
        return ref
    result = _git("ls-remote", "--", url, ref, timeout_s=limits.timeout_s)
    if result.returncode != 0:
        raise FetchError("RepositoryNotFound", f"repository {url} cannot be read: {_last_line(result.stderr)}")
    candidates = {}
    for line in result.stdout.splitlines():
        sha, _, name = line.partition("\t")
        candidates[name] = sha
    for name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"):
        if name in candidates:
            return candidates[name]
    raise FetchError("RefNotFound", f"ref {ref!r} does not exist in {url}")


def fetch_git(url: str, commit: str, entrypoint: str, workdir: Path, limits: FetchLimits = FetchLimits()) -> Snapshot:
    """Shallow-clone exactly `commit` into ``workdir/code`` and pack it into ``workdir/code.tar.gz``."""
    if not SHA_PATTERN.match(commit):
        raise FetchError("RefNotFound", f"{commit!r} is not a full commit SHA")
    checkout = workdir / "checkout"
    checkout.mkdir(parents=True)
    _git("init", "--quiet", str(checkout), timeout_s=limits.timeout_s)
    fetched = _git(
        "fetch", "--quiet", "--depth", "1", "--no-tags", "--no-recurse-submodules", "--", url, commit,
        cwd=checkout, timeout_s=limits.timeout_s,
    )  # fmt: skip
    if fetched.returncode != 0:
        reason = (
            "RefNotFound"
            if "not our ref" in fetched.stderr or "couldn't find remote ref" in fetched.stderr
            else ("RepositoryNotFound")
        )
        raise FetchError(reason, f"cannot fetch {commit[:12]} from {url}: {_last_line(fetched.stderr)}")
    checked = _git("checkout", "--quiet", "FETCH_HEAD", cwd=checkout, timeout_s=limits.timeout_s)
    if checked.returncode != 0:
        raise FetchError("CheckoutFailed", f"cannot check out {commit[:12]}: {_last_line(checked.stderr)}")
    shutil.rmtree(checkout / ".git")
    code = workdir / "code"
    checkout.rename(code)
    return _finish(code, workdir, entrypoint, commit, limits)


def fetch_local(source: Path, entrypoint: str, workdir: Path, limits: FetchLimits = FetchLimits()) -> Snapshot:
    """Copy a folder, or safely unpack a .tar.gz/.tgz/.tar/.zip archive, into ``workdir/code``."""
    code = workdir / "code"
    if source.is_dir():
        _check_tree_size(source, limits)
        shutil.copytree(source, code, symlinks=False, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    elif source.is_file():
        code.mkdir(parents=True)
        unpack_archive(source, code, limits)
        _lift_single_folder(code, entrypoint)
    else:
        raise FetchError("SourceNotFound", f"{source} is neither a folder nor an archive")
    return _finish(code, workdir, entrypoint, None, limits)


def _lift_single_folder(code: Path, entrypoint: str) -> None:
    """An archive of a folder (``zip -r ctl.zip ctl/``, a desktop's "compress") holds one top folder:
    when the entrypoint is inside it rather than at the top, its contents become the code."""
    children = list(code.iterdir())
    if (code / entrypoint).exists() or len(children) != 1 or not children[0].is_dir():
        return
    folder = children[0]
    if not (folder / entrypoint).is_file():
        return
    lifted = code.with_name(code.name + ".lifted")
    folder.rename(lifted)
    code.rmdir()
    lifted.rename(code)


def unpack_archive(archive: Path, destination: Path, limits: FetchLimits = FetchLimits()) -> None:
    """Unpack a user's archive without letting it write outside `destination` or explode."""
    entries: list[tuple[PurePosixPath, int]]
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                infos = [info for info in bundle.infolist() if not info.is_dir()]
                entries = [(PurePosixPath(info.filename), info.file_size) for info in infos]
                _check_entries(entries, limits)
                for info in infos:
                    target = destination / _safe_relative(PurePosixPath(info.filename))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with bundle.open(info) as source, target.open("wb") as sink:
                        shutil.copyfileobj(source, sink)
            return
        with tarfile.open(archive) as bundle:
            members = [member for member in bundle.getmembers() if member.isfile()]
            if any(member.issym() or member.islnk() or member.isdev() for member in bundle.getmembers()):
                raise FetchError("UnsafeArchive", "the archive contains links or device files; pack plain files only")
            entries = [(PurePosixPath(member.name), member.size) for member in members]
            _check_entries(entries, limits)
            for member in members:  # plain files only, paths checked: no tarfile extraction filter needed
                target = destination / _safe_relative(PurePosixPath(member.name))
                target.parent.mkdir(parents=True, exist_ok=True)
                content = bundle.extractfile(member)
                if content is None:
                    continue
                with content, target.open("wb") as sink:
                    shutil.copyfileobj(content, sink)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as error:
        raise FetchError("BadArchive", f"{archive.name} is not a readable .tar.gz or .zip archive: {error}") from None


def _check_entries(entries: list[tuple[PurePosixPath, int]], limits: FetchLimits) -> None:
    if len(entries) > limits.max_files:
        raise FetchError("TooLarge", f"the archive has {len(entries)} files (limit {limits.max_files})")
    total = sum(size for _, size in entries)
    if total > limits.max_bytes:
        raise FetchError("TooLarge", f"the archive unpacks to {total} bytes (limit {limits.max_bytes})")
    for path, _ in entries:
        _safe_relative(path)


def _safe_relative(path: PurePosixPath) -> PurePosixPath:
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise FetchError("UnsafeArchive", f"archive member {str(path)!r} would land outside the code folder")
    return path


def _check_tree_size(tree: Path, limits: FetchLimits) -> None:
    files = [path for path in tree.rglob("*") if path.is_file() and ".git" not in path.relative_to(tree).parts]
    if len(files) > limits.max_files:
        raise FetchError("TooLarge", f"the code has {len(files)} files (limit {limits.max_files})")
    total = sum(path.stat().st_size for path in files)
    if total > limits.max_bytes:
        raise FetchError("TooLarge", f"the code is {total} bytes (limit {limits.max_bytes})")


def _finish(code: Path, workdir: Path, entrypoint: str, commit: str | None, limits: FetchLimits) -> Snapshot:
    _check_tree_size(code, limits)
    entry = code / entrypoint
    if not entry.resolve().is_relative_to(code.resolve()) or not entry.is_file():
        raise FetchError("EntrypointNotFound", f"{entrypoint} is not in the code; add it or set the entrypoint")
    archive = workdir / "code.tar.gz"
    pack_tree(code, archive)
    requirements = code / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest() if requirements.is_file() else None
    return Snapshot(directory=code, archive=archive, commit=commit, requirements_sha256=digest)


def pack_tree(tree: Path, archive: Path) -> None:
    """Pack a folder as a reproducible .tar.gz (sorted names, zeroed owners and times, and a gzip
    header without a time stamp or file name: tarfile's own ``w:gz`` writes the current time)."""

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with (
        archive.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w") as bundle,
    ):
        for path in sorted(tree.rglob("*")):
            if path.is_file() and not path.is_symlink():
                bundle.add(path, arcname=str(path.relative_to(tree)), filter=normalise)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no details"
