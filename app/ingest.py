"""Ingest: files -> articles -> chunks -> vectors -> store, idempotent and crash-safe.

Per article: skip when the live version has the same fingerprint (no model call);
otherwise write the chunks and sentence vectors that are not stored yet, commit the
registry record, then delete the previous version's records. A killed run is finished
by the next one, which reuses every chunk and sentence vector already written.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from app.article import Article, Chunk
from app.chunk import Chunker
from app.config import Settings
from app.embed import Embedder
from app.errors import ParseError
from app.parse import Format, discover, parse_file
from app.store import ArticleRecord, ArticleVersion, Store, chunk_id, sentence_id
from app.text.sentences import answer_sentences

log = logging.getLogger("newsdesk.ingest")


class IngestProgress(Protocol):
    def start(self, total_articles: int) -> None: ...

    def advance(self, articles: int, chunks: int) -> None: ...


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    sentences_embedded: int = 0
    errors: list[ParseError] = field(default_factory=list)
    seconds: float = 0.0
    embedding_seconds: float = 0.0

    @property
    def articles(self) -> int:
        return self.added + self.updated + self.unchanged


def build_ingestor(settings: Settings, embedder: Embedder, store: Store | None = None) -> Ingestor:
    return Ingestor(
        store or Store.open(settings, embedder),
        embedder,
        Chunker(settings.chunk_tokens, settings.chunk_overlap_tokens, settings.tokenizer),
        flush_chunks=settings.embedding_batch_size * 4,
    )


class Ingestor:
    def __init__(self, store: Store, embedder: Embedder, chunker: Chunker, flush_chunks: int = 128) -> None:
        """``flush_chunks``: chunks embedded per model call, and committed together after it."""
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        self.flush_chunks = flush_chunks

    def fingerprint(self, article: Article) -> str:
        """Same article, chunker and model: same fingerprint, so nothing to do."""
        key = f"{article.content_hash}|{self.chunker.fingerprint}|{self.embedder.name}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def ingest_paths(
        self, paths: Iterable[Path], *, fmt: Format = "auto", max_bytes: int, progress: IngestProgress | None = None
    ) -> IngestReport:
        files, errors = discover(paths)
        articles: list[Article] = []
        for path in files:
            parsed = parse_file(path, fmt=fmt, max_bytes=max_bytes)
            articles.extend(parsed.articles)
            errors.extend(parsed.errors)
        report = self.ingest(articles, progress=progress)
        report.errors[:0] = errors
        return report

    def ingest(self, articles: Sequence[Article], *, progress: IngestProgress | None = None) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        self.store.sweep()  # what an ingest killed since this store was opened left behind
        unique = self._unique(articles, report)
        if progress:
            progress.start(len(unique))
        records: dict[str, ArticleRecord] = {}
        for offset in range(0, len(unique), 500):
            records.update(self.store.records([a.id for a in unique[offset : offset + 500]]))

        pending: list[ArticleVersion] = []
        for article in unique:
            fingerprint = self.fingerprint(article)
            previous = records.get(article.id)
            if previous is not None and previous.fingerprint == fingerprint:
                if previous.needs_cleanup:  # a run was killed after its commit
                    self.store.delete_stale_chunks(article.id, fingerprint)
                report.unchanged += 1
                if progress:
                    progress.advance(1, 0)
                continue
            pending.append(ArticleVersion(article, fingerprint, self.chunker.chunk(article)))
            if sum(len(p.chunks) for p in pending) >= self.flush_chunks:
                self._flush(pending, records, report, progress)
                pending = []
        self._flush(pending, records, report, progress)
        report.seconds = time.perf_counter() - started
        return report

    def _unique(self, articles: Sequence[Article], report: IngestReport) -> list[Article]:
        seen: dict[str, Article] = {}
        for article in articles:
            first = seen.get(article.id)
            if first is None:
                seen[article.id] = article
            elif first.content_hash != article.content_hash:
                report.errors.append(
                    ParseError(
                        article.origin, f"article id '{article.id}' is also used by {first.origin}; kept that one"
                    )
                )
        return list(seen.values())

    def _flush(
        self,
        pending: list[ArticleVersion],
        previous: dict[str, ArticleRecord],
        report: IngestReport,
        progress: IngestProgress | None,
    ) -> None:
        if not pending:
            return
        self._write_vectors(pending, report)
        replacing = {v.article.id for v in pending if v.article.id in previous}
        self.store.commit(pending, replacing)
        for version in pending:
            article = version.article
            if article.id in replacing:
                self.store.delete_stale_chunks(article.id, version.fingerprint)
                report.updated += 1
            else:
                report.added += 1
            self._drop_earlier_version_of_file(article)
            log.info("committed %s (%d chunks)", article.id, len(version.chunks))
            if progress:
                progress.advance(1, len(version.chunks))

    def stage(
        self,
        article: Article,
        lock: AbstractContextManager[object],
        report: IngestReport,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        """Write the chunk and sentence vectors of an article's new version ahead of ``ingest``,
        ``flush_chunks`` chunks at a time: the model runs outside ``lock``, each write inside it, so
        other writers go in between. Nothing becomes live: ``ingest`` then finds the vectors stored
        and only commits. ``on_batch(chunks staged, chunks in all)`` is called after each batch."""
        fingerprint = self.fingerprint(article)
        live = self.store.records([article.id]).get(article.id)
        if live is not None and live.fingerprint == fingerprint:
            return
        chunks = self.chunker.chunk(article)
        for offset in range(0, len(chunks), self.flush_chunks):
            batch = ArticleVersion(article, fingerprint, chunks[offset : offset + self.flush_chunks])
            self._write_vectors([batch], report, lock)
            if on_batch:
                on_batch(offset + len(batch.chunks), len(chunks))

    def _write_vectors(
        self, pending: list[ArticleVersion], report: IngestReport, lock: AbstractContextManager[object] | None = None
    ) -> None:
        """Embed the chunks and sentences of ``pending`` that are not stored yet and write them (under
        ``lock``); they are not live until their versions are committed."""
        wanted = {chunk_id(v.article.id, v.fingerprint, c.index): (v.article, c) for v in pending for c in v.chunks}
        stored = self.store.existing_chunk_ids(list(wanted))
        missing = [cid for cid in wanted if cid not in stored]
        sentences = self._missing_sentences(pending)
        texts = [_embedding_text(*wanted[cid]) for cid in missing] + [text for _, _, text in sentences]
        embed_started = time.perf_counter()
        vectors = self.embedder.embed_documents(texts)  # one model call: chunks and sentences batch together
        report.embedding_seconds += time.perf_counter() - embed_started
        report.chunks_embedded += len(missing)
        report.chunks_reused += len(stored)
        report.sentences_embedded += len(sentences)
        with lock or nullcontext():
            self.store.write_chunks(pending, dict(zip(missing, vectors[: len(missing)], strict=True)))
            self.store.write_sentences(
                [(sid, fingerprint[0], fingerprint[1]) for sid, fingerprint, _ in sentences], vectors[len(missing) :]
            )

    def _missing_sentences(self, pending: Sequence[ArticleVersion]) -> list[tuple[str, tuple[str, str], str]]:
        """(sentence id, (article id, fingerprint), text) of the sentences not stored yet, once each."""
        if not self.store.keeps_sentences:
            return []
        found = {
            sid: ((version.article.id, version.fingerprint), text)
            for version in pending
            for sid, text in version_sentences(version).items()
        }
        stored = self.store.existing_sentence_ids(list(found))
        return [(sid, key, text) for sid, (key, text) in found.items() if sid not in stored]

    def _drop_earlier_version_of_file(self, article: Article) -> None:
        """A file with no id or URL gets a content-hash id; when it is edited, the
        article stored from the same file is the old version and goes."""
        if not article.id.startswith("h-") or not article.origin or ":" in Path(article.origin).name:
            return
        for record in self.store.records_with_origin(article.origin):
            if record.id != article.id:
                self.store.delete_article(record.id)
                log.info("replaced %s by %s (same file %s)", record.id, article.id, article.origin)


def version_sentences(version: ArticleVersion) -> dict[str, str]:
    """Sentence id -> text of the answer sentences in a version's chunks; a sentence in the
    overlap of two chunks has one id, so it appears once."""
    found: dict[str, str] = {}
    for chunk in version.chunks:
        cid = chunk_id(version.article.id, version.fingerprint, chunk.index)
        for sentence in answer_sentences(chunk.text):
            found.setdefault(sentence_id(cid, chunk.start + sentence.start), sentence.text)
    return found


def _embedding_text(article: Article, chunk: Chunk) -> str:
    return f"{article.title}\n{chunk.text}" if article.title else chunk.text
