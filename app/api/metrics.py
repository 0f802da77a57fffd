"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.answer import EngineName
from app.embed import VectorCache
from app.ingest import IngestReport

DOC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
INGEST_OUTCOMES = ("added", "updated", "unchanged", "failed")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "newsdesk_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "newsdesk_http_request_duration_seconds",
            "HTTP request latency (streams: until the last byte) by route template and method.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retrieval = Histogram(
            "newsdesk_retrieval_seconds",
            "Hybrid retrieval time per question.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.generation = Histogram(
            "newsdesk_generation_seconds",
            "Answer time per question after retrieval (condensing the question and answering), by engine.",
            ["engine"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ingested_articles = Counter(
            "newsdesk_ingested_articles",
            "Articles ingested over HTTP or at start-up, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.ingested_chunks = Counter(
            "newsdesk_ingested_chunks", "Chunks embedded by ingests.", registry=self.registry
        )
        for outcome in INGEST_OUTCOMES:  # zero series exist from the start
            self.ingested_articles.labels(outcome)
        self.embedding_cache = Counter(
            "newsdesk_embedding_cache_texts",
            "Texts to embed at question time, by whether their vector was cached.",
            ["result"],
            registry=self.registry,
        )

    def watch_caches(self, caches: Callable[[], Mapping[str, VectorCache]]) -> None:
        """Report what these caches hold at each scrape (once the desk that owns them is built)."""
        self.registry.register(_CacheCollector(caches))

    def count_embedding_cache(self, hits: int, misses: int) -> None:
        self.embedding_cache.labels("hit").inc(hits)
        self.embedding_cache.labels("miss").inc(misses)

    # -- the desk's Observer ------------------------------------------------------------

    def retrieved(self, seconds: float) -> None:
        self.retrieval.observe(seconds)

    def generated(self, engine: EngineName, seconds: float) -> None:
        self.generation.labels(engine).observe(seconds)

    def ingested(self, report: IngestReport) -> None:
        counts = {"added": report.added, "updated": report.updated, "unchanged": report.unchanged}
        for outcome, count in (counts | {"failed": len(report.errors)}).items():
            self.ingested_articles.labels(outcome).inc(count)
        self.ingested_chunks.inc(report.chunks_embedded)


class _CacheCollector(Collector):
    def __init__(self, caches: Callable[[], Mapping[str, VectorCache]]) -> None:
        self.caches = caches

    def collect(self) -> Iterator[GaugeMetricFamily]:
        entries = GaugeMetricFamily("newsdesk_vector_cache_entries", "Vectors held by each cache.", labels=["cache"])
        held = GaugeMetricFamily(
            "newsdesk_vector_cache_bytes", "Bytes held by each cache's vectors and texts.", labels=["cache"]
        )
        for name, cache in self.caches().items():
            entries.add_metric([name], len(cache))
            held.add_metric([name], cache.nbytes())
        yield entries
        yield held


class MetricsMiddleware:
    """ASGI middleware counting every request by its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes the app becomes a 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            template = _template(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)


def _template(scope: Scope) -> str:
    """The route template of a request: '/v1/articles/{article_id}', never the raw path."""
    route = str(getattr(scope.get("route"), "path", ""))
    if route:
        return route
    path = str(scope.get("path", ""))
    if path in DOC_PATHS or path == "/mcp":  # FastAPI's own routes and the MCP endpoint do not set scope["route"]
        return path
    return "/static" if path.startswith("/static/") else "unmatched"
