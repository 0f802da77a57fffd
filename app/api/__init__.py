"""The HTTP service: ``create_app(settings)`` builds the FastAPI app; ``newsdesk serve`` runs it.

Nothing is built at import time. The app's lifespan builds the one ``Service`` (store,
models, engines; the bundled corpus ingested into an empty store) in a worker thread,
and routes receive it through ``Depends``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.api import chat, routes
from app.api.errors import install_error_handlers
from app.api.guard import BodySizeLimit
from app.api.metrics import Metrics, MetricsMiddleware
from app.api.state import Service
from app.config import Settings
from app.embed import Embedder

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
UPLOAD_OVERHEAD_BYTES = 64 * 1024  # multipart headers and boundaries around an uploaded file


def create_app(settings: Settings, *, embedder: Embedder | None = None) -> FastAPI:
    """The app for these settings. ``embedder``: an already loaded model to share (tests)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await anyio.to_thread.run_sync(lambda: Service.start(settings, metrics, embedder))
        app.state.service = service
        try:
            yield
        finally:
            service.close()

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
