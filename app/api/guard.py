"""Protection at the HTTP edge: API keys, a per-key rate limit and a request-body size limit."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import SecretStr
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import ApiError, edge_error


class KeyChecker:
    """Bearer keys compared in constant time; the caller learns only which key matched (by index)."""

    def __init__(self, keys: Sequence[SecretStr]) -> None:
        self._digests = [hashlib.sha256(k.get_secret_value().encode()).digest() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def identify(self, authorization: str | None) -> str:
        """The caller's identity (``key-<n>``) for a valid ``Authorization: Bearer <key>``; else ApiError 401."""
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError(
                401,
                "missing API key: send the header 'Authorization: Bearer <key>' (keys are set by NEWSDESK_API_KEYS)",
                kind="authentication_error",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        digest = hashlib.sha256(presented.strip().encode()).digest()
        found = -1
        for index, known in enumerate(self._digests):  # no early exit: the time does not depend on which key
            if hmac.compare_digest(digest, known):
                found = index
        if found < 0:
            raise ApiError(
                401,
                "invalid API key: check the key you send in 'Authorization: Bearer <key>'",
                kind="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return f"key-{found}"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per caller: ``per_minute`` requests, refilled evenly; bursts up to ``per_minute``."""

    MAX_CALLERS = 10_000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def hit(self, caller: str) -> None:
        """Take one request from the caller's bucket; ApiError 429 with Retry-After when it is empty."""
        if self.per_minute <= 0:
            return
        now = self.clock()
        rate = self.per_minute / 60.0
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= self.MAX_CALLERS:
                self._forget_idle(now, rate)
            bucket = self._buckets[caller] = _Bucket(float(self.per_minute), now)
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = max(1, math.ceil((1.0 - bucket.tokens) / rate))
        raise ApiError(
            429,
            f"rate limit of {self.per_minute} requests per minute reached; retry in {wait} s "
            "(the limit is NEWSDESK_RATE_LIMIT_PER_MINUTE)",
            kind="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(wait)},
        )

    def _forget_idle(self, now: float, rate: float) -> None:
        full = [c for c, b in self._buckets.items() if b.tokens + (now - b.updated) * rate >= self.per_minute]
        for caller in full:
            del self._buckets[caller]
        if len(self._buckets) >= self.MAX_CALLERS:  # all busy: drop the longest idle
            oldest = min(self._buckets, key=lambda c: self._buckets[c].updated)
            del self._buckets[oldest]


@dataclass(frozen=True)
class BodyLimit:
    """The bytes of body a path accepts, and what a larger one is told (the setting, as configured)."""

    bytes: int
    message: str


class BodySizeLimit:
    """ASGI middleware: 413 for a body over the limit, told by Content-Length or counted as it arrives
    (both the same ``edge_error`` body, code ``body_too_large``)."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], BodyLimit]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(str(scope.get("path", "")))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit.bytes:
            await edge_error(413, limit.message).response()(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.bytes:
                    raise HTTPException(413, limit.message)  # FastAPI makes any other error here a 400
            return message

        await self.app(scope, counting_receive, send)


def too_large_message(limit: int) -> str:
    return f"request body is over the {limit:,}-byte limit (NEWSDESK_MAX_BODY_BYTES)"
