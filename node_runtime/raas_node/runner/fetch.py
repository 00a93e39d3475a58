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
import stat
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


MAX_MESSAGE_CHARS = 500
"""Longest message of a `FetchError` about a local source (paths and OS errors can be long)."""
_SKIPPED_NAMES = frozenset({".git", "__pycache__"})
_COPY_CHUNK = 1024 * 1024


def fetch_local(source: Path, entrypoint: str, workdir: Path, limits: FetchLimits = FetchLimits()) -> Snapshot:
    """Copy a folder, or safely unpack a .tar.gz/.tgz/.tar/.zip archive, into ``workdir/code``.

    A folder is copied file by file and counted against `limits` while it is copied, so that a
    folder that grows as it is read (one holding `workdir` itself) stops at the limit. Only regular
    files are read (never a FIFO or a device), ``.git`` and ``__pycache__`` are left out, the copy
    is never copied into itself, and a symlink is followed only when it leads to a file inside the
    folder: links out of it, and links to folders, are left out.
    """
    code = workdir / "code"
    try:
        if source.is_dir():
            _copy_tree(source, code, limits)
        elif source.is_file():
            code.mkdir(parents=True)
            unpack_archive(source, code, limits)
            _lift_single_folder(code, entrypoint)
        else:
            raise FetchError("SourceNotFound", f"{source} is neither a folder nor an archive")
    except FetchError as error:  # messages name the user's paths and archive members: keep them short
        raise FetchError(error.reason, _bounded(str(error))) from None
    except OSError as error:
        message = f"cannot read {source}: {error.strerror or error} ({error.filename or source})"
        raise FetchError("SourceUnreadable", _bounded(message)) from None
    return _finish(code, workdir, entrypoint, None, limits)


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 1] + "…"


class _Budget:
    """Files, folders and bytes of a tree so far; `FetchError` TooLarge the moment one passes `limits`."""

    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        self.files = self.folders = self.bytes = 0

    def add_file(self) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise FetchError("TooLarge", f"the code has more than {self.limits.max_files} files (the limit)")

    def add_folder(self) -> None:
        self.folders += 1
        if self.folders > self.limits.max_files:
            raise FetchError("TooLarge", f"the code has more than {self.limits.max_files} folders (the limit)")

    def add_bytes(self, count: int) -> None:
        self.bytes += count
        if self.bytes > self.limits.max_bytes:
            raise FetchError("TooLarge", f"the code is larger than {self.limits.max_bytes} bytes (the limit)")


def _copy_tree(source: Path, code: Path, limits: FetchLimits) -> None:
    """Copy the folder `source` into the new folder `code` (see `fetch_local` for the rules)."""
    root = source.resolve(strict=True)
    budget = _Budget(limits)
    code.mkdir(parents=True)
    copy = os.stat(code)
    pending = [(root, code)]
    while pending:  # a stack, not recursion: depth is the user's
        folder, target = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name in _SKIPPED_NAMES:
                    continue
                destination = target / entry.name
                if entry.is_symlink():
                    linked = _link_inside(Path(entry.path), root)
                    if linked is not None:
                        _copy_file(linked, destination, budget)
                elif entry.is_dir(follow_symlinks=False):
                    found = entry.stat(follow_symlinks=False)
                    if (found.st_dev, found.st_ino) == (copy.st_dev, copy.st_ino):
                        continue  # the source holds the work folder: never copy the copy
                    budget.add_folder()
                    destination.mkdir()
                    pending.append((Path(entry.path), destination))
                elif entry.is_file(follow_symlinks=False):
                    _copy_file(Path(entry.path), destination, budget)


def _link_inside(link: Path, root: Path) -> Path | None:
    """The file `link` leads to, if it is inside `root`; None for links out of it, to folders, or broken."""
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return target if target.is_relative_to(root) and target.is_file() else None


def _copy_file(path: Path, destination: Path, budget: _Budget) -> None:
    """Copy one regular file, counting it and its bytes as they are read; anything else is skipped."""
    # O_NOFOLLOW: a file swapped for a link after the walk saw it is not followed; O_NONBLOCK: a
    # FIFO does not block the open (and is then skipped as not a regular file).
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as source:
        found = os.fstat(source.fileno())
        if not stat.S_ISREG(found.st_mode):
            return
        budget.add_file()
        with destination.open("xb") as sink:
            while chunk := source.read(_COPY_CHUNK):
                budget.add_bytes(len(chunk))
                sink.write(chunk)
        destination.chmod(stat.S_IMODE(found.st_mode) & 0o777)


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
    """`FetchError` TooLarge if the tree's regular files (``.git`` aside) pass `limits`; stops at the
    first file over the limit and follows no links."""
    budget = _Budget(limits)
    pending = [tree]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != ".git":
                        budget.add_folder()
                        pending.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    budget.add_file()
                    budget.add_bytes(entry.stat(follow_symlinks=False).st_size)


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
