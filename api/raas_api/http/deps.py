"""What every route needs: the platform, the settings, and who is calling (bearer token)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from raas_api.auth.tokens import Role, TokenInfo, Tokens
from raas_api.http.errors import too_many_requests
from raas_api.http.guard import INVALID_TOKEN, MISSING_TOKEN, TOKEN_STATE_KEY
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
    request: Request,
    state: Annotated[AppState, Depends(app_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenInfo:
    """The token's owner; 401 without a valid token, 429 over the per-token request rate.

    `guard.RequestGuard` has usually verified the token already (before the body was read) and
    left its record in the request's state."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, MISSING_TOKEN, challenge)
    verified = getattr(request.state, TOKEN_STATE_KEY, None)
    info = verified if isinstance(verified, TokenInfo) else state.tokens.verify(credentials.credentials)
    if info is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, INVALID_TOKEN, challenge)
    wait_s = state.request_limiter.acquire(info.token_id)
    if wait_s > 0:
        raise too_many_requests(f"too many requests: at most {state.settings.requests_per_second:g} per second", wait_s)
    return info


def admin(info: Annotated[TokenInfo, Depends(caller)]) -> TokenInfo:
    """The caller, who must be an admin (403 otherwise)."""
    if info.role is not Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs an admin token")
    return info


State = Annotated[AppState, Depends(app_state)]
Caller = Annotated[TokenInfo, Depends(caller)]
Admin = Annotated[TokenInfo, Depends(admin)]
