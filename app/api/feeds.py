"""Feeds over HTTP: ``POST /v1/feeds`` registers one, ``GET /v1/feeds`` lists them with each one's
last poll and error, ``DELETE /v1/feeds/{id}`` forgets one (its articles stay).

``router(settings)`` also brings a lifespan: it opens the feed registry and the fetcher (which
``POST /v1/articles`` with a url uses too) and, with NEWSDESK_WATCH_FEEDS on, polls the feeds in a
background thread (``app.feeds.Watcher``) once start-up has built the desk. The watcher never runs
on the event loop or in the answer slots, so it never holds up a question; its ingests take the
desk's write lock a batch at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.api.deps import FeedsDep, ServiceDep, guard
from app.api.errors import ApiError
from app.api.routes import ERRORS
from app.api.schemas import ErrorOut, Strict
from app.api.state import Startup
from app.article import Article
from app.config import Settings
from app.errors import NewsdeskError
from app.feeds import Feed, FeedRegistry, PollSummary, Watcher, format_interval, parse_interval
from app.fetch import Fetcher
from app.ingest import IngestReport

log = logging.getLogger("newsdesk.feeds")
READY_CHECK_S = 0.5
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorOut, "description": "No feed has that id."}}


class FeedIn(Strict):
    url: str = Field(min_length=1, max_length=2000, description="The feed's http(s) URL: RSS 0.9x to 2.0, or Atom.")
    every: str | None = Field(
        None, max_length=20, description="How often to poll it: 90s, 15m, 2h, 1d; default NEWSDESK_FEED_INTERVAL_S."
    )


class PollOut(BaseModel):
    at: datetime
    not_modified: bool = Field(description="The feed answered 304, or the same document: nothing was fetched.")
    entries: int = Field(description="Entries in the document.")
    skipped: int = Field(description="Entries seen before and unchanged: not fetched again.")
    fetched: int = Field(description="Pages requested.")
    added: int
    updated: int = Field(description="Articles whose page changed: stored as a new version.")
    unchanged: int
    from_summary: int = Field(description="Stored from the entry's own summary: the page could not be read.")
    failed: int = Field(description="Entries with neither a readable page nor a summary: nothing stored.")
    deferred: int = Field(description="Entries left for the next poll (a page that may come back).")
    problems: list[str] = Field(description="Malformed entries, pages that failed, and what was done instead.")
    seconds: float


class FeedOut(BaseModel):
    id: str
    url: str
    title: str = Field(description="The feed's own title, once polled.")
    every: str = Field(description="How often it is polled, e.g. 15m.")
    added_at: datetime
    status: Literal["new", "ok", "failing"] = Field(description="new: not polled yet; failing: the last poll failed.")
    error: str | None = Field(description="Why the last poll failed; it is retried with backoff.")
    failures: int = Field(description="Polls failed in a row.")
    polled_at: datetime | None
    next_poll_at: datetime
    entries_seen: int
    last_poll: PollOut | None = Field(description="The last poll that worked.")

    @classmethod
    def of(cls, feed: Feed) -> FeedOut:
        return cls(
            id=feed.id,
            url=feed.url,
            title=feed.title,
            every=format_interval(feed.interval_s),
            added_at=_utc(feed.added_at),
            status="failing" if feed.error else "new" if feed.polled_at is None else "ok",
            error=feed.error,
            failures=feed.failures,
            polled_at=_utc(feed.polled_at) if feed.polled_at is not None else None,
            next_poll_at=_utc(feed.next_at),
            entries_seen=feed.entries_seen,
            last_poll=_poll_out(feed.last_poll) if feed.last_poll else None,
        )


def _poll_out(poll: PollSummary) -> PollOut:
    return PollOut.model_validate({**vars(poll), "at": _utc(poll.at), "problems": list(poll.problems)})


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def router(settings: Settings) -> APIRouter:
    """The feed routes, with the lifespan that opens the registry and the fetcher and runs the watcher."""
    feeds = APIRouter(
        prefix="/v1",
        tags=["feeds"],
        dependencies=[Depends(guard)],
        responses=ERRORS,
        lifespan=partial(running, settings=settings),
    )

    @feeds.post(
        "/feeds",
        status_code=201,
        responses={200: {"model": FeedOut, "description": "Already registered: it takes the new interval."}},
    )
    async def add_feed(body: FeedIn, registry: FeedsDep, service: ServiceDep, response: Response) -> FeedOut:
        """Register an RSS or Atom feed; it is polled at once, then every ``every``. Each entry's page is
        fetched and ingested as an article (the entry's summary when the page cannot be read)."""
        interval = parse_interval(body.every) if body.every is not None else settings.feed_interval_s
        feed, created = await service.run(partial(registry.add, body.url, interval))
        response.status_code = 201 if created else 200
        return FeedOut.of(feed)

    @feeds.get("/feeds")
    async def list_feeds(registry: FeedsDep, service: ServiceDep) -> list[FeedOut]:
        """The feeds, oldest first, each with its last poll, its error (a failing feed) and its next poll."""
        return [FeedOut.of(feed) for feed in await service.run(registry.feeds)]

    @feeds.get("/feeds/{feed_id}", responses=NOT_FOUND)
    async def get_feed(feed_id: str, registry: FeedsDep, service: ServiceDep) -> FeedOut:
        """One feed: its last poll, its error, its next poll."""
        return FeedOut.of(_found(await service.run(partial(registry.find, feed_id)), feed_id))

    @feeds.delete("/feeds/{feed_id}", status_code=204, responses=NOT_FOUND)
    async def delete_feed(feed_id: str, registry: FeedsDep, service: ServiceDep) -> Response:
        """Stop polling a feed and forget its entries; the articles it brought stay."""
        _found(await service.run(partial(registry.remove, feed_id)), feed_id)
        return Response(status_code=204)

    return feeds


def _found(feed: Feed | None, feed_id: str) -> Feed:
    if feed is None:
        raise ApiError(
            404, f"no feed with id '{feed_id}' (see GET /v1/feeds)", kind="not_found_error", code="not_found"
        )
    return feed


@asynccontextmanager
async def running(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """The registry and the fetcher on ``app.state``, and the watcher's thread (NEWSDESK_WATCH_FEEDS)."""
    registry = await anyio.to_thread.run_sync(FeedRegistry.open, settings)
    fetcher = Fetcher(settings)
    app.state.feeds = registry
    app.state.fetcher = fetcher
    startup: Startup = app.state.startup
    watcher = Watcher(registry, fetcher, partial(_ingest, startup))
    thread = threading.Thread(target=_watch_once_ready, args=(startup, watcher), name="newsdesk-watch", daemon=True)
    if settings.watch_feeds:
        thread.start()
    try:
        yield
    finally:
        watcher.stop()
        if thread.is_alive():
            await anyio.to_thread.run_sync(thread.join)
        fetcher.close()
        registry.close()


def _ingest(startup: Startup, articles: Sequence[Article]) -> IngestReport:
    return startup.desk().ingest(articles)


def _watch_once_ready(startup: Startup, watcher: Watcher) -> None:
    """Wait for start-up to build the desk, then poll the feeds until the server stops."""
    while not watcher.stopping.wait(READY_CHECK_S):
        try:
            startup.desk()
        except ApiError as error:
            if error.code == "starting":
                continue
            return  # start-up failed: there is no store to ingest into
        break
    else:
        return
    log.info("watching %d feeds (newsdesk feeds add URL, or POST /v1/feeds, adds one)", len(watcher.registry.feeds()))
    try:
        watcher.run()
    except NewsdeskError as error:
        log.error("the feed watcher stopped: %s", error)
