"""The HTTP service: ``create_app(settings)`` builds the FastAPI app; ``newsdesk serve`` runs it.

Nothing is built at import time, and the port opens at once: the app's lifespan creates the
``Service`` (keys, limits, worker slots) and the ingest ``Jobs``, and starts building the one
``Newsdesk`` (store, models, engines; the bundled corpus ingested into an empty store) in a
background thread (``Startup``). Until it is ready, ``/healthz`` answers and ``/readyz`` and the
routes that need the desk answer 503 saying what start-up is doing. Routes receive all of them
through ``Depends``. ``/mcp`` serves the Model Context Protocol (``app.api.mcp``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.api import chat, feeds, routes, stories
from app.api.batching import for_server
from app.api.errors import install_error_handlers
from app.api.guard import BodyLimit, BodySizeLimit, too_large_message
from app.api.jobs import Jobs
from app.api.mcp import McpEndpoint
from app.api.metrics import Metrics, MetricsMiddleware
from app.api.state import Service, Startup
from app.config import CORPUS_DIR, Settings
from app.embed import Embedder, build_embedder
from app.parse import discover
from app.service import Newsdesk

if TYPE_CHECKING:
    from langchain_core.language_models.chat_models import BaseChatModel

log = logging.getLogger("newsdesk.serve")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# The body of an upload is the file plus multipart headers and boundaries: the body may be this much
# larger, the file is held to NEWSDESK_MAX_UPLOAD_BYTES itself (and both 413s state that setting).
UPLOAD_OVERHEAD_BYTES = 64 * 1024


def create_app(settings: Settings, *, embedder: Embedder | None = None, llm: BaseChatModel | None = None) -> FastAPI:
    """The app for these settings. ``embedder``: an already loaded model to share; ``llm``: the LLM
    engine's chat model (tests)."""
    metrics = Metrics()
    mcp = McpEndpoint(settings)

    def build(startup: Startup, jobs: Jobs) -> Newsdesk:
        startup.doing("opening the article store")
        shared = for_server(embedder or build_embedder(settings), metrics.count_embedding_cache)
        desk = Newsdesk(settings, embedder=shared, llm=llm, observer=metrics)
        metrics.watch_caches(desk.vector_caches)
        try:
            seed(desk, startup.doing)
            startup.doing("loading the models")
            desk.warm_up()
            desk.start_reading_ahead(busy=jobs.ingesting)
        except BaseException:
            desk.close()
            raise
        log.info("ready: %d articles, engine %s", desk.store.article_count(), desk.default_engine)
        return desk

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        startup = Startup()
        jobs = Jobs()
        app.state.startup = startup
        app.state.jobs = jobs
        app.state.service = Service(settings)
        app.state.metrics = metrics
        startup.begin(lambda startup: build(startup, jobs))
        try:
            async with mcp.running(startup, app.state.service):  # the MCP session manager
                yield
        finally:
            await anyio.to_thread.run_sync(jobs.close)
            await anyio.to_thread.run_sync(startup.stop)

    app = FastAPI(
        title="newsdesk",
        summary="News question answering and Quick Looks briefs over your own articles, with citations.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(routes.health)
    app.include_router(routes.metrics)
    app.include_router(routes.api)
    app.include_router(chat.router)
    app.include_router(stories.router)
    app.include_router(feeds.router(settings))
    app.add_route("/mcp", mcp, include_in_schema=False)  # type: ignore[arg-type]  # an ASGI app, served as one

    body = BodyLimit(settings.max_body_bytes, too_large_message(settings.max_body_bytes))
    upload = BodyLimit(
        max(settings.max_body_bytes, settings.max_upload_bytes + UPLOAD_OVERHEAD_BYTES),
        routes.upload_too_large_message(settings.max_upload_bytes),
    )

    def body_limit(path: str) -> BodyLimit:
        return upload if path.endswith("/articles/upload") else body

    app.add_middleware(BodySizeLimit, limit_for=body_limit)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_error_handlers(app)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def seed(desk: Newsdesk, doing: Callable[[str], None] = lambda what: None) -> None:
    """Ingest the bundled corpus into an empty store (``NEWSDESK_SEED_CORPUS``), a file at a time,
    telling ``doing`` how far it is ("ingesting the bundled corpus: 6/14") and logging the total."""
    settings = desk.settings
    if not (settings.seed_corpus and CORPUS_DIR.is_dir() and desk.store.article_count() == 0):
        return
    where = settings.chroma_host or settings.resolved_chroma_path
    log.info("the store (%s, %s) is empty: ingesting the bundled %s", where, settings.collection, CORPUS_DIR)
    files, _ = discover([CORPUS_DIR])
    started = time.perf_counter()
    articles = chunks = 0
    for done, path in enumerate(files):
        doing(f"ingesting the bundled corpus: {done}/{len(files)}")
        report = desk.ingest_paths([path])
        articles += report.articles
        chunks += report.chunks_embedded
    log.info(
        "ingested %d articles (%d chunks) in %.1f s; set NEWSDESK_SEED_CORPUS=false to start empty",
        articles,
        chunks,
        time.perf_counter() - started,
    )
