"""The HTTP service: ``create_app(settings)`` builds the FastAPI app; ``newsdesk serve`` runs it.

Nothing is built at import time. The app's lifespan builds the one ``Newsdesk`` (store,
models, engines; the bundled corpus ingested into an empty store) in a worker thread, and the
``Service`` (keys, limits, worker slots); routes receive both through ``Depends``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.api import chat, routes
from app.api.batching import for_server
from app.api.errors import install_error_handlers
from app.api.guard import BodySizeLimit
from app.api.metrics import Metrics, MetricsMiddleware
from app.api.state import Service
from app.config import CORPUS_DIR, Settings
from app.embed import Embedder, build_embedder
from app.service import Newsdesk

if TYPE_CHECKING:
    from langchain_core.language_models.chat_models import BaseChatModel

log = logging.getLogger("newsdesk.serve")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
UPLOAD_OVERHEAD_BYTES = 64 * 1024  # multipart headers and boundaries around an uploaded file


def create_app(settings: Settings, *, embedder: Embedder | None = None, llm: BaseChatModel | None = None) -> FastAPI:
    """The app for these settings. ``embedder``: an already loaded model to share; ``llm``: the LLM
    engine's chat model (tests)."""
    metrics = Metrics()

    def start() -> Newsdesk:
        shared = for_server(embedder or build_embedder(settings), metrics.count_embedding_cache)
        desk = Newsdesk(settings, embedder=shared, llm=llm, observer=metrics)
        try:
            seed(desk)
            desk.warm_up()
        except BaseException:
            desk.close()
            raise
        log.info("ready: %d articles, engine %s", desk.store.article_count(), desk.default_engine)
        return desk

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        desk = await anyio.to_thread.run_sync(start)
        app.state.desk = desk
        app.state.service = Service(settings)
        app.state.metrics = metrics
        try:
            yield
        finally:
            desk.close()

    app = FastAPI(
        title="newsdesk",
        summary="News question answering and Quick Looks briefs over your own articles, with citations.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(routes.health)
    app.include_router(routes.metrics)
    app.include_router(routes.api)
    app.include_router(chat.router)

    def body_limit(path: str) -> int:
        if path.endswith("/articles/upload"):
            return max(settings.max_body_bytes, settings.max_upload_bytes + UPLOAD_OVERHEAD_BYTES)
        return settings.max_body_bytes

    app.add_middleware(BodySizeLimit, limit_for=body_limit)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def seed(desk: Newsdesk) -> None:
    """Ingest the bundled corpus into an empty store (``NEWSDESK_SEED_CORPUS``), logging as it goes."""
    settings = desk.settings
    if not (settings.seed_corpus and CORPUS_DIR.is_dir() and desk.store.article_count() == 0):
        return
    where = settings.chroma_host or settings.resolved_chroma_path
    log.info("the store (%s, %s) is empty: ingesting the bundled %s", where, settings.collection, CORPUS_DIR)
    report = desk.ingest_paths([CORPUS_DIR])
    log.info(
        "ingested %d articles (%d chunks) in %.1f s; set NEWSDESK_SEED_CORPUS=false to start empty",
        report.articles,
        report.chunks_embedded,
        report.seconds,
    )
