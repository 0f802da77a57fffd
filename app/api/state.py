"""What the routes share, built once at start-up: the Newsdesk pipeline, an ingestor, limits, metrics.

Blocking work (embedding, Chroma, SQLite, the extractive engine, LLM calls) runs in worker
threads through ``Service.run``, at most ``NEWSDESK_MAX_CONCURRENT_ANSWERS`` at once, so the
event loop keeps serving. The shared pieces are thread-safe: the lexical index serialises its
SQLite connection with a lock, the embedder guards model loading and merges concurrent calls
(``app.api.batching``), ingests and deletions take a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from app.answer import Answer, EngineName, Turn
from app.api.batching import for_server
from app.api.guard import KeyChecker, RateLimiter
from app.api.metrics import Metrics
from app.api.schemas import IngestOut
from app.article import Article
from app.brief import Brief
from app.chunk import Chunker
from app.config import CORPUS_DIR, Settings
from app.embed import Embedder, build_embedder
from app.ingest import Ingestor, IngestReport
from app.retrieve import Filters, Passage, Retriever
from app.service import ANSWER_PER_ARTICLE, Newsdesk

log = logging.getLogger("newsdesk.serve")
T = TypeVar("T")


class TimedRetriever(Retriever):
    """The desk's retriever, timing each retrieval (into Prometheus and for the calling thread)."""

    def __init__(self, inner: Retriever, metrics: Metrics) -> None:
        self.__dict__.update(vars(inner))
        self._metrics = metrics
        self._spent = threading.local()

    def retrieve(
        self, question: str, k: int = 8, filters: Filters | None = None, per_article: int | None = None
    ) -> list[Passage]:
        started = time.perf_counter()
        try:
            return super().retrieve(question, k, filters, per_article)
        finally:
            seconds = time.perf_counter() - started
            self._metrics.retrieval.observe(seconds)
            self._spent.seconds = self.spent() + seconds

    def spent(self) -> float:
        """Seconds this thread spent retrieving since ``reset``."""
        return float(getattr(self._spent, "seconds", 0.0))

    def reset(self) -> None:
        self._spent.seconds = 0.0


class Service:
    def __init__(self, settings: Settings, desk: Newsdesk, metrics: Metrics) -> None:
        self.settings = settings
        self.desk = desk
        self.metrics = metrics
        self.retriever = TimedRetriever(desk.retriever, metrics)
        desk.retriever = self.retriever
        self.ingestor = Ingestor(
            desk.store,
            desk.embedder,
            Chunker(settings.chunk_tokens, settings.chunk_overlap_tokens, settings.tokenizer),
            flush_chunks=settings.embedding_batch_size * 4,
        )
        self.keys = KeyChecker(settings.api_keys)
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.started = int(time.time())
        self._ingest_lock = threading.Lock()
        self._slots: CapacityLimiter | None = None

    @classmethod
    def start(cls, settings: Settings, metrics: Metrics, embedder: Embedder | None = None) -> Service:
        """Open the store, ingest the bundled corpus into an empty store, load the model (blocking)."""
        shared = for_server(embedder or build_embedder(settings), metrics.count_embedding_cache)
        service = cls(settings, Newsdesk(settings, shared), metrics)
        store = service.desk.store
        if settings.seed_corpus and CORPUS_DIR.is_dir() and store.article_count() == 0:
            where = settings.chroma_host or settings.resolved_chroma_path
            log.info("the store (%s, %s) is empty: ingesting the bundled %s", where, settings.collection, CORPUS_DIR)
            with service._ingest_lock:
                report = service.ingestor.ingest_paths([CORPUS_DIR], max_bytes=settings.max_file_bytes)
            service._count(report)
            log.info(
                "ingested %d articles (%d chunks) in %.1f s; set NEWSDESK_SEED_CORPUS=false to start empty",
                report.articles,
                report.chunks_embedded,
                report.seconds,
            )
        service.desk.embedder.embed_query("warm-up")  # load the model now, not on the first question
        service.desk.lexical.sync()
        log.info("ready: %d articles, engine %s", store.article_count(), settings.resolved_engine)
        return service

    def close(self) -> None:
        self.desk.close()

    async def run(self, call: Callable[[], T]) -> T:
        """Run blocking work in a worker thread, a bounded number at once."""
        if self._slots is None:
            self._slots = CapacityLimiter(self.settings.max_concurrent_answers)
        return await anyio.to_thread.run_sync(call, limiter=self._slots)

    # -- questions ----------------------------------------------------------------------

    def engine_name(self, engine: EngineName | None) -> EngineName:
        """The engine a request gets; ConfigError when it asks for an LLM that is not configured."""
        return self.desk.engine(engine).name

    def ask(
        self, question: str, history: Sequence[Turn], filters: Filters | None, engine: EngineName | None, k: int | None
    ) -> Answer:
        self.retriever.reset()
        started = time.perf_counter()
        answer = self.desk.ask(question, history=history, filters=filters, engine=engine, k=k)
        spent = time.perf_counter() - started - self.retriever.spent()
        self.metrics.generation.labels(answer.engine).observe(spent)
        return answer

    def passages_for(
        self, question: str, history: Sequence[Turn], filters: Filters | None, k: int | None
    ) -> tuple[str, list[Passage]]:
        """For a streamed LLM answer: the follow-up made standalone, and its passages."""
        standalone = self.desk.llm.condense(question, list(history))
        passages = self.retriever.retrieve(standalone, k or self.settings.top_k, filters, ANSWER_PER_ARTICLE)
        return standalone, passages

    def brief(
        self,
        *,
        article_id: str | None,
        topic: str | None,
        bullets: int | None,
        filters: Filters | None,
        engine: EngineName | None,
    ) -> Brief:
        return self.desk.brief(article_id=article_id, topic=topic, bullets=bullets, filters=filters, engine=engine)

    def search(self, query: str, k: int, filters: Filters | None) -> list[Passage]:
        return self.retriever.retrieve(query, k, filters)

    # -- articles -----------------------------------------------------------------------

    def ingest(self, article: Article) -> IngestOut:
        with self._ingest_lock:
            report = self.ingestor.ingest([article])
        self._count(report)
        if report.errors:  # one article cannot clash with itself; kept for safety
            raise report.errors[0]
        status = "added" if report.added else "updated" if report.updated else "unchanged"
        record = self.desk.store.records([article.id]).get(article.id)
        return IngestOut(id=article.id, title=article.title, status=status, chunks=record.chunk_count if record else 0)

    def delete(self, article_id: str) -> None:
        with self._ingest_lock:
            self.desk.store.delete_article(article_id)

    def _count(self, report: IngestReport) -> None:
        counts = {"added": report.added, "updated": report.updated, "unchanged": report.unchanged}
        for outcome, count in (counts | {"failed": len(report.errors)}).items():
            self.metrics.ingested.labels(outcome).inc(count)
        self.metrics.ingested_chunks.inc(report.chunks_embedded)
