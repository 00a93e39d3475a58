"""What every route needs: the platform, the settings, and who is calling (bearer token).

The dependencies are coroutines: they only read memory (the guard has verified the token), and a
plain function would cost every request a round trip through the thread pool for each of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from raas_api.auth.tokens import Role, TokenInfo, Tokens
from raas_api.http.errors import too_many_requests
from raas_api.http.guard import INVALID_TOKEN, MISSING_TOKEN, TOKEN_STATE_KEY
from raas_api.http.listing import ViewCache
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
    views: ViewCache = field(default_factory=ViewCache)
    """Jobs as listed, rendered (`listing.ViewCache`)."""


async def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.raas
    return state


_bearer = HTTPBearer(auto_error=False, description="An API token from `raas admin token create`.")


async def caller(
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
    if isinstance(verified, TokenInfo):
        info: TokenInfo | None = verified
    else:
        info = await anyio.to_thread.run_sync(state.tokens.verify, credentials.credentials)
    if info is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, INVALID_TOKEN, challenge)
    wait_s = state.request_limiter.acquire(info.token_id)
    if wait_s > 0:
        raise too_many_requests(f"too many requests: at most {state.settings.requests_per_second:g} per second", wait_s)
    return info


async def admin(info: Annotated[TokenInfo, Depends(caller)]) -> TokenInfo:
    """The caller, who must be an admin (403 otherwise)."""
    if info.role is not Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs an admin token")
    return info


State = Annotated[AppState, Depends(app_state)]
Caller = Annotated[TokenInfo, Depends(caller)]
Admin = Annotated[TokenInfo, Depends(admin)]
