"""Who may run a folder of the server's disk, and which folders: `allowed_local_path`.

A folder source makes the server pack whatever the path names and serve it back as the job's
``code.tar.gz``, with the server's own permissions. So it is only for the admin token of the
``raas serve`` session (the person who started the server, on its own disk), only in local mode
on the local backend, only below ``settings.local_source_roots``, checked on the fully resolved
path (symlinks followed), and never the data folder, anything inside it (other users' uploads,
tokens, results) or anything containing it. The fetch step (`raas_node.runner.fetch.fetch_local`) then copies the
folder without following links out of it, within a size and file-count limit.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import HTTPException, status

from raas_api.auth.tokens import Role, TokenInfo
from raas_api.http.errors import bounded
from raas_api.settings import SESSION_OWNER, ApiSettings, Backend


def _refuse(code: int, detail: str) -> HTTPException:
    return HTTPException(code, bounded(detail))


def allowed_local_path(path: str, settings: ApiSettings, who: TokenInfo) -> Path:
    """The resolved folder or archive `path` names, if `who` may run it here; 403/422 otherwise."""
    if not settings.local_mode or settings.backend is not Backend.LOCAL:
        raise _refuse(status.HTTP_422_UNPROCESSABLE_CONTENT, "local folders are accepted only in local mode")
    if who.owner != SESSION_OWNER or who.role is not Role.ADMIN:
        raise _refuse(
            status.HTTP_403_FORBIDDEN,
            "folders of the server's disk are only for the admin token of the raas serve session;"
            " upload the folder as an archive with /api/v1/jobs/upload instead",
        )
    roots = [root.resolve() for root in settings.local_source_roots]
    if not roots:
        raise _refuse(
            status.HTTP_403_FORBIDDEN,
            "this server allows no folder sources: set RAAS_LOCAL_SOURCE_ROOTS (local_source_roots) to the"
            " folders jobs may come from, or upload the folder with /api/v1/jobs/upload",
        )
    try:
        resolved = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
        raise _refuse(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{path} does not exist on the server") from None
    data_dir = settings.data_dir.resolve()
    if resolved.is_relative_to(data_dir) or data_dir.is_relative_to(resolved):
        raise _refuse(
            status.HTTP_403_FORBIDDEN,
            f"{path} is, holds or is inside the server's data folder, which cannot be a job's code;"
            " pick another folder",
        )
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise _refuse(
            status.HTTP_403_FORBIDDEN,
            f"{path} is not below a folder this server allows jobs from ({allowed}); move the code there or upload it",
        )
    return resolved
