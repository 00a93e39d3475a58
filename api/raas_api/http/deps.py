"""What every route needs: the platform, the settings, and who is calling (bearer token)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from raas_api.auth.tokens import Role, TokenInfo, Tokens
from raas_api.http.ratelimit import RateLimiter
from raas_api.platform import Platform
from raas_api.settings import ApiSettings


@dataclass
class AppState:
    """The objects one app instance serves."""

    platform: Platform
    tokens: Tokens
    settings: ApiSettings
    request_limiter: RateLimiter
    submission_limiter: RateLimiter
    trajectory_cache: dict[str, Any] = field(default_factory=dict)
    """Finished jobs' trajectories as served (they never change)."""


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.raas
    return state


_bearer = HTTPBearer(auto_error=False, description="An API token from `raas admin token create`.")


def caller(
    state: Annotated[AppState, Depends(app_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenInfo:
    """The token's owner; 401 without a valid token, 429 over the per-token request rate."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token (Authorization: Bearer <token>)", challenge
        )
    info = state.tokens.verify(credentials.credentials)
    if info is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked token", challenge)
    wait_s = state.request_limiter.acquire(info.token_id)
    if wait_s > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many requests: at most {state.settings.requests_per_second:g} per second; retry in {wait_s:.1f} s",
            {"Retry-After": str(max(1, round(wait_s)))},
        )
    return info


def admin(info: Annotated[TokenInfo, Depends(caller)]) -> TokenInfo:
    """The caller, who must be an admin (403 otherwise)."""
    if info.role is not Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs an admin token")
    return info


State = Annotated[AppState, Depends(app_state)]
Caller = Annotated[TokenInfo, Depends(caller)]
Admin = Annotated[TokenInfo, Depends(admin)]
