"""Embedding for the server: a cache of recent texts, and concurrent calls run together.

Each question costs two small model calls (the query, then the candidate sentences of the
retrieved passages). Article sentences come back question after question, so vectors of
recent texts are kept (an LRU of float32 vectors, ``cache_size`` texts). What is not cached
goes to the model: threads hand their texts to whichever thread is running the model; it
embeds everything that queued while the previous call ran, in one call, and hands the
vectors back. No thread waits for a timer: alone, a request is embedded at once; under
load, calls grow by themselves, and on a CPU most of a small call is fixed overhead. A call
of ``solo_texts`` or more (an ingest's batch of chunks and sentences, a long brief) gains
nothing from merging and runs on its own, beside the queue: queued behind it, a question
waited as long as the whole batch took (20 s for an upload's 492 texts on 2 busy cores).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from langchain_core.embeddings import Embeddings

from app.embed import Embedder, VectorCache


@dataclass
class _Job:
    texts: list[str]
    vectors: list[list[float]] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


class BatchingEmbeddings(Embeddings):
    """``Embeddings`` that merges concurrent calls into one call of ``inner`` (at most ``max_texts``)."""

    def __init__(
        self,
        inner: Embeddings,
        max_texts: int = 512,
        cache_size: int = 20_000,
        on_lookup: Callable[[int, int], None] | None = None,
        solo_texts: int = 64,
    ) -> None:
        """``on_lookup(hits, misses)`` is told the cache outcome of every call."""
        self.inner = inner
        self.max_texts = max_texts
        self.solo_texts = solo_texts
        self.on_lookup = on_lookup
        self.cache = VectorCache(cache_size)
        self._changed = threading.Condition()
        self._queue: list[_Job] = []
        self._running = False

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if len(texts) >= self.max_texts:  # an ingest: nothing to merge, nothing worth caching
            return self.inner.embed_documents(texts)
        found = {text: vector.tolist() for text, vector in self.cache.get(texts).items()}
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if self.on_lookup:
            self.on_lookup(len(texts) - len(missing), len(missing))
        if missing:
            vectors = self.inner.embed_documents(missing) if len(missing) >= self.solo_texts else self._embed(missing)
            found.update(zip(missing, vectors, strict=True))
            self.cache.put(missing, vectors)
        return [found[text] for text in texts]

    def _embed(self, texts: list[str]) -> list[list[float]]:
        job = _Job(texts)
        with self._changed:
            self._queue.append(job)
            while not job.done and self._running:
                self._changed.wait()
            if not job.done:
                self._running = True  # this thread runs the model for everyone queued
        if not job.done:
            self._run_queued()
        if job.error is not None:
            raise job.error
        return job.vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def _run_queued(self) -> None:
        with self._changed:
            batch: list[_Job] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_texts):
                job = self._queue.pop(0)
                batch.append(job)
                size += len(job.texts)
        vectors: list[list[float]] = []
        error: Exception | None = None
        try:
            vectors = self.inner.embed_documents([text for job in batch for text in job.texts])
        except Exception as caught:  # every caller in the batch re-raises it
            error = caught
        finally:
            if error is None and len(vectors) != sum(len(job.texts) for job in batch):
                error = RuntimeError("the embedding call was interrupted")
            with self._changed:
                offset = 0
                for job in batch:
                    job.error = error
                    job.vectors = vectors[offset : offset + len(job.texts)] if error is None else []
                    offset += len(job.texts)
                    job.done = True
                self._running = False  # a waiting thread whose job is still queued takes over
                self._changed.notify_all()


def for_server(embedder: Embedder, on_lookup: Callable[[int, int], None] | None = None) -> Embedder:
    """The same model and identity, with a cache of recent texts and concurrent calls merged."""
    embeddings = BatchingEmbeddings(embedder.embeddings, on_lookup=on_lookup)
    return Embedder(embedder.name, embeddings, embedder.dimension)
