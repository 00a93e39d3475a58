"""Checks on what users submit, beyond the model's syntax: where code may come from, limits."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import HTTPException, status

from raas_api.auth.tokens import TokenInfo
from raas_api.http.local_sources import allowed_local_path
from raas_api.settings import ApiSettings, Backend
from raas_operator.jobs.model import ArchiveSource, GitSource, LocalSource, Source


def check_source(source: Source, settings: ApiSettings, who: TokenInfo) -> Source:
    """The source as the job will use it, if it is allowed here (403/422 otherwise): git from an
    allowed scheme and host; a folder only for the session admin, below an allowed root, by its
    resolved path (`local_sources.allowed_local_path`); an earlier upload (by its sha256) only on
    a cluster."""
    if isinstance(source, LocalSource):
        return LocalSource(path=str(allowed_local_path(source.path, settings, who)))
    if isinstance(source, ArchiveSource):
        if settings.backend is not Backend.KUBERNETES:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "archive sources are for a cluster: upload with /jobs/upload"
            )
        return source
    check_git_url(source, settings)
    return source


def check_git_url(source: GitSource, settings: ApiSettings) -> None:
    parts = urlsplit(source.url)
    scheme = parts.scheme.lower()
    if scheme not in settings.allowed_git_schemes:
        allowed = ", ".join(settings.allowed_git_schemes)
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"git URL scheme {scheme or '(none)'!r} is not allowed here (allowed: {allowed})",
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the git URL has no host")
    if "*" not in settings.allowed_git_hosts and host not in settings.allowed_git_hosts:
        allowed = ", ".join(settings.allowed_git_hosts)
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"git host {host!r} is not allowed here (allowed: {allowed})"
        )
    if parts.username or parts.password:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "credentials in git URLs are not accepted")


def check_time_limit(time_limit_s: int | None, settings: ApiSettings) -> int:
    """The job's time limit: the default when omitted; 422 above the server's maximum."""
    if time_limit_s is None:
        return min(settings.default_time_limit_s, settings.max_time_limit_s)
    if time_limit_s > settings.max_time_limit_s:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"time_limit_s {time_limit_s} is above this server's maximum of {settings.max_time_limit_s} s",
        )
    return time_limit_s
