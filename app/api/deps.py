"""Dependencies routes declare: the shared Service, and the guard (API key and rate limit)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.state import Service

_bearer = HTTPBearer(auto_error=False, description="One of NEWSDESK_API_KEYS (needed only when keys are set).")


def get_service(request: Request) -> Service:
    return cast(Service, request.app.state.service)


ServiceDep = Annotated[Service, Depends(get_service)]


async def guard(
    request: Request,
    service: ServiceDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 without a valid key (when keys are set), 429 over the caller's rate limit."""
    if service.keys.enabled:
        caller = service.keys.identify(request.headers.get("authorization"))
    else:
        caller = f"client-{request.client.host if request.client else 'unknown'}"
    service.limiter.hit(caller)
