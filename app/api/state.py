"""What the routes share besides the desk: API keys, rate limits and worker slots.

Blocking work (embedding, Chroma, SQLite, the engines, LLM calls) runs in worker threads
through ``Service.run``, at most ``NEWSDESK_MAX_CONCURRENT_ANSWERS`` at once, so the event loop
keeps serving. The desk's shared parts are thread-safe: the lexical index serialises its SQLite
connection with a lock, the embedder guards model loading and merges concurrent calls
(``app.api.batching``), the verifier's cache takes a lock, ingests and deletions take the desk's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from app.api.guard import KeyChecker, RateLimiter
from app.config import Settings

T = TypeVar("T")


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
