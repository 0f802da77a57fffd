"""Dependencies routes declare: the desk (503 until start-up has built it), the start-up, the Service
(keys, limits, worker slots), the ingest jobs, the metrics, the fetcher and the feed registry, and the guard."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.jobs import Jobs
from app.api.metrics import Metrics
from app.api.state import Service, Startup
from app.feeds import FeedRegistry
from app.fetch import Fetcher
from app.service import Newsdesk

_bearer = HTTPBearer(auto_error=False, description="One of NEWSDESK_API_KEYS (needed only when keys are set).")


def get_service(request: Request) -> Service:
    return cast(Service, request.app.state.service)


def get_startup(request: Request) -> Startup:
    return cast(Startup, request.app.state.startup)


def get_desk(request: Request) -> Newsdesk:
    """The desk; ApiError 503 with Retry-After while start-up is still building it."""
    return get_startup(request).desk()


def get_jobs(request: Request) -> Jobs:
    return cast(Jobs, request.app.state.jobs)


def get_metrics(request: Request) -> Metrics:
    return cast(Metrics, request.app.state.metrics)


def get_fetcher(request: Request) -> Fetcher:
    return cast(Fetcher, request.app.state.fetcher)


def get_feeds(request: Request) -> FeedRegistry:
    return cast(FeedRegistry, request.app.state.feeds)


ServiceDep = Annotated[Service, Depends(get_service)]
DeskDep = Annotated[Newsdesk, Depends(get_desk)]
StartupDep = Annotated[Startup, Depends(get_startup)]
JobsDep = Annotated[Jobs, Depends(get_jobs)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
FetcherDep = Annotated[Fetcher, Depends(get_fetcher)]
FeedsDep = Annotated[FeedRegistry, Depends(get_feeds)]


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
