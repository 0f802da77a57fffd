"""The pipeline: ``Newsdesk`` builds every part once from Settings and is the only way in.

The CLI, the HTTP app and the evals all call it. Each part (the embedder, the store, the LLM's
chat model) can be handed to the constructor instead (a shared model, a fake in tests);
nothing is replaced afterwards. What happens to a question:

    condense (follow-up -> standalone) -> retrieve (hybrid) -> answer or stream -> verify

An LLM failure falls back to the extractive engine, marked ``degraded``, when
``NEWSDESK_LLM_FALLBACK_EXTRACTIVE`` is on: one path for ``ask``, ``stream`` and ``brief``.
Timings and ingest outcomes go to an ``Observer`` (the server's Prometheus metrics).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio.to_thread

from app.answer import Answer, Engine, EngineName, Turn
from app.answer.extractive import ExtractiveEngine, reader_inputs
from app.article import Article
from app.brief import Brief, BriefKind, Document
from app.brief.extractive import ExtractiveBriefEngine
from app.config import Settings
from app.embed import Embedder, VectorCache, build_embedder
from app.errors import InputError, LLMUnavailableError, NewsdeskError, NotConfiguredError
from app.ingest import IngestProgress, IngestReport, build_ingestor
from app.lexical import LexicalIndex
from app.parse import Format
from app.reader import LearnedReader, SavedVectors, build_reader
from app.retrieve import Filters, Passage, Retriever
from app.store import ArticleRecord, Store
from app.stories import Story, StoryIndex
from app.verify import Verifier, check_answer

if TYPE_CHECKING:
    from langchain_core.language_models.chat_models import BaseChatModel

    from app.answer.llm import LLMEngine
    from app.brief.llm import LLMBriefEngine

log = logging.getLogger("newsdesk.ask")
T = TypeVar("T")
R = TypeVar("R", Answer, Brief)
# Ranking puts one chunk per article first; an answer may need a neighbouring chunk of the same article.
ANSWER_PER_ARTICLE = 3
STREAM_PIECE_WORDS = 3  # a finished (extractive) answer is streamed this many words at a time
_PIECE = re.compile(r"\S+\s*|\s+")

Run = Callable[[Callable[[], T]], Awaitable[T]]


class Observer(Protocol):
    """Told what the desk did; the server turns it into metrics."""

    def retrieved(self, seconds: float) -> None: ...

    def generated(self, engine: EngineName, seconds: float) -> None:
        """Seconds an engine spent on one answer (condensing, answering, verifying; retrieval aside)."""
        ...

    def ingested(self, report: IngestReport) -> None: ...


class _Unobserved:
    def retrieved(self, seconds: float) -> None:
        pass

    def generated(self, engine: EngineName, seconds: float) -> None:
        pass

    def ingested(self, report: IngestReport) -> None:
        pass


@dataclass(frozen=True)
class Stats:
    """Where the store is, which model filled it, how much it holds."""

    mode: str
    location: str
    collection: str
    embedding_model: str | None
    articles: int
    chunks: int
    sentences: int
    orphan_chunks: int  # stored, but of no live version: an ingest in flight, or killed before its commit


@dataclass(frozen=True)
class _LLM:
    answers: LLMEngine
    briefs: LLMBriefEngine


class Newsdesk:
    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: Store | None = None,
        llm: BaseChatModel | None = None,
        observer: Observer | None = None,
    ) -> None:
        """``llm``: the chat model of the LLM engine (default: ``ChatOpenAI`` for the configured server)."""
        self.settings = settings
        self.observer: Observer = observer or _Unobserved()
        self.embedder = embedder or build_embedder(settings)
        self.store = store or Store.open(settings, self.embedder)
        self.lexical = LexicalIndex(settings.data_dir / f"lexical-{settings.collection}.sqlite", self.store)
        self.stories = StoryIndex(settings.data_dir / f"stories-{settings.collection}.sqlite", self.store)
        self.retriever = Retriever(self.store, self.lexical, self.embedder, stories=self.stories)
        self.ingestor = build_ingestor(settings, self.embedder, self.store)
        self.verifier = Verifier(self.embedder)
        self.reader = build_reader(settings)
        self.extractive = ExtractiveEngine(self.embedder, self.lexical, self.store, self.reader)
        self.extractive_brief = ExtractiveBriefEngine(
            self.embedder,
            self.verifier,
            max_words=settings.brief_max_words,
            window_tokens=settings.brief_window_tokens,
            encoding=settings.tokenizer,
        )
        self._chat_model = llm
        self._llm: _LLM | None = None  # built on first use: an extractive-only run never reads the prompts
        self._llm_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._read_fingerprints: dict[str, str] = {}  # the articles read ahead, as they were
        self._reading_ahead: _ReadingAhead | None = None
        self._answering = 0
        self._read_ahead_lock = threading.Lock()
        self._answering_lock = threading.Lock()

    # -- engines -------------------------------------------------------------------------

    @property
    def llm_available(self) -> bool:
        return self._chat_model is not None or self.settings.llm_configured

    @property
    def default_engine(self) -> EngineName:
        if self.settings.engine == "auto":
            return "llm" if self.llm_available else "extractive"
        return self.settings.engine

    def engine_name(self, name: EngineName | None = None) -> EngineName:
        """The engine a request gets; ``NotConfiguredError`` for the LLM when none is configured."""
        chosen = name or self.default_engine
        if chosen == "llm" and not self.llm_available:
            raise NotConfiguredError(
                "no LLM is configured: set NEWSDESK_LLM_BASE_URL (any OpenAI-compatible server) "
                "and/or NEWSDESK_LLM_API_KEY, or use the extractive engine"
            )
        return chosen

    def engine(self, name: EngineName | None = None) -> Engine:
        return self._llm_engines().answers if self.engine_name(name) == "llm" else self.extractive

    def _llm_engines(self) -> _LLM:
        with self._llm_lock:
            if self._llm is None:
                from app.answer.llm import LLMEngine
                from app.brief.llm import LLMBriefEngine

                answers = LLMEngine(self.settings, self._chat_model)
                self._llm = _LLM(answers, LLMBriefEngine(self.settings, self.verifier, answers))
            return self._llm

    def _fallback(self, error: LLMUnavailableError, what: str, extractive: Callable[[], R]) -> R:
        """The extractive result, marked degraded, when the settings allow it; else the error."""
        if not self.settings.llm_fallback_extractive:
            raise error
        result = extractive()
        result.degraded = True
        result.notes.append(f"the LLM failed ({error}); this is the extractive {what}")
        return result

    # -- questions -----------------------------------------------------------------------

    def search(self, query: str, k: int, filters: Filters | None = None) -> list[Passage]:
        """Top passages by hybrid retrieval (dense and BM25)."""
        return self._retrieve(query, k, filters, None)

    def _retrieve(self, query: str, k: int, filters: Filters | None, per_article: int | None) -> list[Passage]:
        started = time.perf_counter()
        try:
            return self.retriever.retrieve(query, k, filters, per_article)
        finally:
            self.observer.retrieved(time.perf_counter() - started)

    def ask(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        filters: Filters | None = None,
        engine: EngineName | None = None,
        k: int | None = None,
    ) -> Answer:
        chosen = self.engine(engine)
        with self._answering_one():
            try:
                return self._ask(chosen, question, history, filters, k)
            except LLMUnavailableError as error:
                if chosen is self.extractive:
                    raise
                extractive = self.extractive
                return self._fallback(error, "answer", lambda: self._ask(extractive, question, history, filters, k))

    @property
    def answering(self) -> bool:
        """Whether a question is being answered (reading ahead makes way for it)."""
        return self._answering > 0

    @contextmanager
    def _answering_one(self) -> Iterator[None]:
        with self._answering_lock:
            self._answering += 1
        try:
            yield
        finally:
            with self._answering_lock:
                self._answering -= 1

    def _ask(
        self, engine: Engine, question: str, history: Sequence[Turn], filters: Filters | None, k: int | None
    ) -> Answer:
        started = time.perf_counter()
        standalone, passages, retrieving = self._question(engine, question, history, filters, k)
        answer = engine.answer(standalone, passages)
        self._finish(answer, question, standalone)
        self.observer.generated(answer.engine, time.perf_counter() - started - retrieving)
        return answer

    def _question(
        self, engine: Engine, question: str, history: Sequence[Turn], filters: Filters | None, k: int | None
    ) -> tuple[str, list[Passage], float]:
        """The follow-up made standalone by ``engine``, its passages, and the seconds retrieval took."""
        standalone = engine.condense(question, list(history))
        started = time.perf_counter()
        passages = self._retrieve(standalone, k or self.settings.top_k, filters, ANSWER_PER_ARTICLE)
        log.info("question %r -> %r; chunks %s", question, standalone, [p.chunk_id for p in passages])
        return standalone, passages, time.perf_counter() - started

    def _finish(self, answer: Answer, question: str, standalone: str) -> None:
        answer.question = question
        answer.standalone_question = standalone
        answer.notes += [f"[{c.number}] {c.reported_by}" for c in answer.citations if c.also_reported_by]
        if answer.engine == "llm":
            check_answer(answer, self.verifier)  # flags sentences their cited sources do not support

    async def stream(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        filters: Filters | None = None,
        engine: EngineName | None = None,
        k: int | None = None,
        run: Run[object] | None = None,
    ) -> AsyncIterator[str | Answer]:
        """Text deltas, then the final ``Answer``, verified like ``ask``'s. The LLM engine's tokens come as
        it writes them; a finished (extractive or fallback) answer comes a few words at a time.
        ``run`` runs blocking work (retrieval, the extractive engine, verification) off the event loop."""
        call = run or anyio.to_thread.run_sync
        chosen = self.engine(engine)
        extractive = partial(self._ask, self.extractive, question, history, filters, k)
        if chosen is self.extractive:
            async for item in _pieces(await _call(call, extractive)):
                yield item
            return
        started = time.perf_counter()
        final: Answer | None = None
        failed: LLMUnavailableError | None = None
        sent = False
        try:
            standalone, passages, retrieving = await _call(
                call, partial(self._question, chosen, question, history, filters, k)
            )
            async for item in self._llm_engines().answers.stream(standalone, passages):
                if isinstance(item, Answer):
                    final = item
                elif item:
                    sent = True
                    yield item
        except LLMUnavailableError as error:
            if sent:  # the text already went out: the error ends the stream
                raise
            failed = error
        if failed is not None:
            async for item in _pieces(await _call(call, partial(self._fallback, failed, "answer", extractive))):
                yield item
            return
        assert final is not None
        await _call(call, partial(self._finish, final, question, standalone))
        self.observer.generated("llm", time.perf_counter() - started - retrieving)
        yield final

    def brief(
        self,
        *,
        article_id: str | None = None,
        path: Path | None = None,
        topic: str | None = None,
        bullets: int | None = None,
        filters: Filters | None = None,
        engine: EngineName | None = None,
    ) -> Brief:
        """A Quick Looks brief of one stored article, a file (parsed, not ingested) or a topic."""
        if sum(x is not None for x in (article_id, path, topic)) != 1:
            raise InputError("brief one thing: an article id, a file, or a topic")
        chosen = self.engine_name(engine)
        kind: BriefKind
        if article_id is not None:
            kind, subject, documents = "article", article_id, [Document(self.store.get_article(article_id))]
        elif path is not None:
            kind, subject, documents = "file", str(path), [Document(_parse_one(path, self.settings.max_file_bytes))]
        else:
            assert topic is not None
            if not topic.strip():
                raise InputError("the topic is empty")
            kind, subject, documents = "topic", topic, self._topic_documents(topic, filters)
            if not documents:
                return Brief(
                    topic, "topic", "extractive", [], notes=["no stored article matches the topic"], covered=False
                )
        count = bullets or self.settings.brief_bullets
        return self.brief_documents(documents, bullets=count, kind=kind, subject=subject, engine=chosen)

    def brief_documents(
        self,
        documents: list[Document],
        *,
        bullets: int | None,
        kind: BriefKind,
        subject: str,
        engine: EngineName | None,
    ) -> Brief:
        """A brief of these documents (articles or ranges of them) by the chosen engine; ``bullets`` None:
        as many as the documents' length calls for (4 to 8, ``app.brief.length``)."""

        def extractive() -> Brief:
            return self.extractive_brief.brief(documents, bullets=bullets, kind=kind, subject=subject)

        if self.engine_name(engine) == "extractive":
            return extractive()
        try:
            return self._llm_engines().briefs.brief(documents, bullets=bullets, kind=kind, subject=subject)
        except LLMUnavailableError as error:
            return self._fallback(error, "brief", extractive)

    def _topic_documents(self, topic: str, filters: Filters | None) -> list[Document]:
        """The retrieved passages, grouped per article (in ranked order), as ranges of each article's text;
        after each story's lead article, its copies' best-matching chunks, so the brief merges their facts
        and a copy giving another figure is a disagreement."""
        passages = self._retrieve(topic, self.settings.brief_topic_k, filters, ANSWER_PER_ARTICLE)
        copies = [i for p in passages for i in p.copies]
        if filters is not None:
            records = self.store.records(copies)
            copies = [
                i for i in copies if i in records and filters.admits(i, records[i].source, records[i].published_at)
            ]
        copy_chunks = self.lexical.best_chunks(topic, copies) if copies else {}
        ranges: dict[str, list[tuple[int, int]]] = {}
        for passage in passages:
            ranges.setdefault(passage.article_id, []).append((passage.start, passage.end))
            for copy in passage.copies:
                if copy in copy_chunks and copy not in ranges:
                    ranges[copy] = [(copy_chunks[copy].start, copy_chunks[copy].end)]
        articles = {a.id: a for a in self.store.get_articles(list(ranges))}
        return [
            Document(articles[i], tuple(_merge_ranges(spans)), relevance_query=topic)
            for i, spans in ranges.items()
            if i in articles
        ]

    # -- articles ------------------------------------------------------------------------

    def ingest(self, articles: Sequence[Article]) -> IngestReport:
        """Ingest these articles together, holding the write lock throughout (batches them best)."""
        with self._write_lock:
            report = self.ingestor.ingest(articles)
            self.stories.sync()
        self.observer.ingested(report)
        self._nudge_read_ahead()
        return report

    def ingest_article(self, article: Article, on_batch: Callable[[int, int], None] | None = None) -> IngestReport:
        """Ingest one article without holding the write lock for long, so concurrent ingests and deletions
        wait seconds, not minutes: its vectors are staged (embedded outside the lock, written a batch at a
        time under it), then it is committed under the lock, atomically. ``on_batch(staged, total)``: chunks."""
        started = time.perf_counter()
        staged = IngestReport()
        self.ingestor.stage(article, self._write_lock, staged, on_batch)
        with self._write_lock:
            report = self.ingestor.ingest([article])  # finds the staged vectors: commits without the model
            self.stories.sync()
        report.chunks_embedded += staged.chunks_embedded
        report.chunks_reused = max(0, report.chunks_reused - staged.chunks_embedded)
        report.sentences_embedded += staged.sentences_embedded
        report.embedding_seconds += staged.embedding_seconds
        report.seconds = time.perf_counter() - started
        self.observer.ingested(report)
        self._nudge_read_ahead()
        return report

    def ingest_paths(
        self, paths: Sequence[Path], *, fmt: Format = "auto", progress: IngestProgress | None = None
    ) -> IngestReport:
        """Parse files or folders, chunk, embed, store; inputs that fail are in the report's errors."""
        with self._write_lock:
            report = self.ingestor.ingest_paths(
                list(paths), fmt=fmt, max_bytes=self.settings.max_file_bytes, progress=progress
            )
            self.stories.sync()
        self.observer.ingested(report)
        self._nudge_read_ahead()
        return report

    def _nudge_read_ahead(self) -> None:
        if self._reading_ahead is not None:
            self._reading_ahead.wake.set()

    def delete(self, article_id: str) -> None:
        with self._write_lock:
            self.store.delete_article(article_id)
            self.stories.sync()

    def articles(self, limit: int | None = None, offset: int = 0) -> list[ArticleRecord]:
        """Stored articles, newest first."""
        return self.store.list_articles(limit, offset)

    def article(self, article_id: str) -> Article:
        return self.store.get_article(article_id)

    def story_list(self, since: date | None = None) -> list[Story]:
        """Stories (near-duplicate articles grouped), newest first; ``since``: with an article from that day on."""
        return self.stories.stories(since)

    def stats(self) -> Stats:
        settings = self.settings
        return Stats(
            mode="server" if settings.chroma_host else "embedded",
            location=f"{settings.chroma_host}:{settings.chroma_port}"
            if settings.chroma_host
            else str(settings.resolved_chroma_path),
            collection=settings.collection,
            embedding_model=self.store.embedding_model,
            **vars(self.store.counts()),
        )

    def vector_caches(self) -> dict[str, VectorCache]:
        """The in-memory vector caches by name, each bounded by its size (``/metrics`` reports them)."""
        caches = {"queries": self.embedder.query_cache, "verifier": self.verifier.cache}
        inner = getattr(self.embedder.embeddings, "cache", None)  # the server's BatchingEmbeddings
        if isinstance(inner, VectorCache):
            caches["texts"] = inner
        if self.reader is not None:
            caches["reader"] = self.reader.cache
        return caches

    def warm_up(self) -> None:
        """Load the models, the lexical index and the stories now, not on the first question."""
        self.embedder.embed_query("warm-up")
        if self.reader is not None:
            self.reader.load()
        self.lexical.sync()
        self.stories.sync()

    # -- reading ahead -------------------------------------------------------------------

    def read_ahead(self, on_batch: Callable[[int, int], None] | None = None) -> int:
        """Run the candidate sentences of the articles not read yet through the learned reader, saving
        their vectors (``NEWSDESK_READ_AHEAD``), so a question about them runs only the question; the
        first call also drops the vectors of articles since deleted. How many sentences were read."""
        reader = self.reader
        if reader is None or reader.saved is None:
            return 0
        with self._read_ahead_lock:
            return self._read_unread(reader, reader.saved, on_batch)

    def _read_unread(
        self, reader: LearnedReader, saved: SavedVectors, on_batch: Callable[[int, int], None] | None
    ) -> int:
        first = not self._read_fingerprints
        live = self.store.live_fingerprints()
        read = self._read_fingerprints
        unread = [article_id for article_id, fingerprint in live.items() if read.get(article_id) != fingerprint]
        texts: list[str] = []
        for start in range(0, len(unread), 200):
            for hit, _ in self.store.live_chunks(unread[start : start + 200]):
                texts.extend(reader_inputs(hit.title, hit.text))
        if first:
            dropped = saved.keep_only(texts)
            if dropped:
                log.info("dropped the reader's vectors of %d sentences no article holds now", dropped)
        encoded = reader.read_ahead(texts, on_batch)
        read.update((article_id, live[article_id]) for article_id in unread)
        return encoded

    def start_reading_ahead(self, busy: Callable[[], bool] = lambda: False) -> None:
        """Read ahead in a background thread now and after every ingest, pausing between batches
        while ``busy()`` (an ingest is running); ``close`` stops it."""
        if self.reader is not None and self.reader.saved is not None and self._reading_ahead is None:
            self._reading_ahead = _ReadingAhead(self, busy)

    def close(self) -> None:
        if self._reading_ahead is not None:
            self._reading_ahead.stop()
        self.lexical.close()
        self.stories.close()
        if self.reader is not None and self.reader.saved is not None:
            self.reader.saved.close()


class _ReadingAhead:
    """The thread behind ``Newsdesk.start_reading_ahead``: woken by every ingest."""

    PAUSE_S = 0.5  # how often a paused read-ahead looks whether the ingest is over

    def __init__(self, desk: Newsdesk, busy: Callable[[], bool]) -> None:
        self.desk = desk
        self.busy = busy
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.wake.set()
        self.thread = threading.Thread(target=self._run, name="newsdesk-read-ahead", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.wake.wait() and not self.stopping.is_set():
            self.wake.clear()
            started = time.perf_counter()
            try:
                read = self.desk.read_ahead(self._between_batches)
            except _Stopped:
                return
            except NewsdeskError as error:  # the store is unreachable: questions still work, only slower
                log.warning("reading ahead stopped: %s", error)
                continue
            if read:
                log.info("read %d sentences ahead in %.1f s", read, time.perf_counter() - started)

    def _between_batches(self, done: int, total: int) -> None:
        while not self.stopping.is_set() and (self.busy() or self.desk.answering):
            self.stopping.wait(self.PAUSE_S)
        if self.stopping.is_set():
            raise _Stopped

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join()


class _Stopped(Exception):
    """Ends a read-ahead at its next batch when the desk closes."""


async def _call(run: Run[object], work: Callable[[], T]) -> T:
    return await run(work)  # type: ignore[return-value]


async def _pieces(answer: Answer) -> AsyncIterator[str | Answer]:
    words = _PIECE.findall(answer.answer)
    for start in range(0, len(words), STREAM_PIECE_WORDS):
        yield "".join(words[start : start + STREAM_PIECE_WORDS])
    yield answer


def _parse_one(path: Path, max_bytes: int) -> Article:
    from app.parse import parse_file

    parsed = parse_file(path, max_bytes=max_bytes)
    if parsed.errors:
        raise parsed.errors[0]
    if len(parsed.articles) != 1:
        raise InputError(f"{path}: holds {len(parsed.articles)} articles; brief one article per file")
    return parsed.articles[0]


def _merge_ranges(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping chunk spans (chunks share sentences) as disjoint ranges, in text order."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
