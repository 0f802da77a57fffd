"""What the routes share besides the desk: API keys, rate limits and worker slots; and the start-up.

Blocking work (embedding, Chroma, SQLite, the engines, LLM calls) runs in worker threads
through ``Service.run``, at most ``NEWSDESK_MAX_CONCURRENT_ANSWERS`` at once, so the event loop
keeps serving. The desk's shared parts are thread-safe: the lexical index serialises its SQLite
connection with a lock, the embedder guards model loading and merges concurrent calls
(``app.api.batching``), the verifier's cache takes a lock, ingests and deletions take the desk's.

The desk is built after the port opens (``Startup``, in a background thread): until it is
ready, routes that need it answer 503 with what start-up is doing and a Retry-After.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from app.api.errors import ApiError
from app.api.guard import KeyChecker, RateLimiter
from app.config import Settings
from app.errors import NewsdeskError
from app.service import Newsdesk

T = TypeVar("T")
log = logging.getLogger("newsdesk.serve")
STARTING_RETRY_AFTER_S = 5


class Service:
    def __init__(self, settings: Settings) -> None:
        self.keys = KeyChecker(settings.api_keys)
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.started = int(time.time())
        self._workers = settings.max_concurrent_answers
        self._slots: CapacityLimiter | None = None

    async def run(self, call: Callable[[], T]) -> T:
        """Run blocking work in a worker thread, a bounded number at once."""
        if self._slots is None:  # created inside the event loop that uses it
            self._slots = CapacityLimiter(self._workers)
        return await anyio.to_thread.run_sync(call, limiter=self._slots)


def unavailable(what: str, code: str, retry_after_s: int) -> ApiError:
    """A 503 that says what is going on and when to retry (also in Retry-After)."""
    return ApiError(
        503,
        f"{what}; retry in {retry_after_s} s",
        kind="service_unavailable",
        code=code,
        headers={"Retry-After": str(retry_after_s)},
    )


class StartupStopped(Exception):
    """Raised inside the start-up thread when the server shuts down before it finished."""


class Startup:
    """Builds the desk in a background thread and says what it is doing until it is ready."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._doing = "starting"
        self._desk: Newsdesk | None = None
        self._failed = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self, build: Callable[[Startup], Newsdesk]) -> None:
        """Run ``build(self)`` in a background thread; it tells ``doing`` what it is doing."""
        self._thread = threading.Thread(target=self._build, args=(build,), name="newsdesk-start-up", daemon=True)
        self._thread.start()

    def _build(self, build: Callable[[Startup], Newsdesk]) -> None:
        try:
            desk = build(self)
        except StartupStopped:
            return
        except NewsdeskError as error:  # says what to do: no traceback needed
            log.error("start-up failed: %s", error)
            self._failed = True
        except Exception:  # the thread's last word: the service reports it instead of dying silently
            log.exception("start-up failed")
            self._failed = True
        else:
            with self._lock:
                self._desk = desk

    def doing(self, what: str) -> None:
        """Start-up's next step; StartupStopped when the server is shutting down."""
        if self._stopping.is_set():
            raise StartupStopped
        with self._lock:
            self._doing = what

    def check_alive(self) -> None:
        """ApiError 503 when start-up failed: the process answers, but it will never serve."""
        if self._failed:
            raise ApiError(
                503,
                "newsdesk failed to start; the cause is in the server log: fix it and restart the service",
                kind="service_unavailable",
                code="start_up_failed",
            )

    def desk(self) -> Newsdesk:
        """The desk once ready; else ApiError 503 saying what start-up is doing (or that it failed)."""
        self.check_alive()
        with self._lock:
            if self._desk is not None:
                return self._desk
            doing = self._doing
        raise unavailable(f"newsdesk is starting ({doing})", "starting", STARTING_RETRY_AFTER_S)

    def stop(self) -> None:
        """Stop start-up at its next step (waiting for the step), then close the desk if it was built."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            desk, self._desk = self._desk, None
        if desk is not None:
            desk.close()
