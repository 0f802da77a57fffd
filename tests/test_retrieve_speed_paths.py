"""The shortcuts of the retrieval hot path: the query-vector cache, the generation check that
skips Chroma while nothing changed, and the dense leg that takes live chunks from the lexical index."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import app.store as store_module
from app.config import Settings
from app.embed import Embedder
from app.ingest import Ingestor
from app.service import Newsdesk
from app.store import Store, connect

from .conftest import CORPUS, CountingEmbeddings, make_ingestor
from .test_store import ORCHARD, PORT

pytestmark = pytest.mark.slow


def count_generation_reads(store: Store) -> list[str]:
    """Record every read of the generation record (the store keeps it in its ``-meta`` collection)."""
    meta = store._meta
    assert meta is not None
    reads: list[str] = []
    real_get = meta.get

    def get(*args: Any, **kwargs: Any) -> Any:
        reads.append("get")
        return real_get(*args, **kwargs)

    meta.get = get  # type: ignore[method-assign]
    return reads


def test_a_repeated_query_runs_the_model_once(embedder: Embedder) -> None:
    counting = CountingEmbeddings(embedder)
    cached = Embedder(embedder.name, counting, query_cache_size=2)  # type: ignore[arg-type]
    first = cached.embed_query("Who won the election?")
    first.append(99.0)  # a caller changing its list does not change the cache
    again = cached.embed_query("Who won the election?")
    assert counting.texts == ["Who won the election?"], "the second call is served from the cache"
    assert again == embedder.embed_documents(["Who won the election?"])[0]

    cached.embed_query("How many drones?")
    cached.embed_query("Where was the summit?")  # the cache holds two: the election question goes
    cached.embed_query("Who won the election?")
    assert counting.texts.count("Who won the election?") == 2
    cached.forget_queries()
    cached.embed_query("Where was the summit?")
    assert counting.texts.count("Where was the summit?") == 2


def test_retrieval_then_answer_embed_the_question_once(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path)
    make_ingestor(settings, embedder).ingest_paths([CORPUS / "2025-04-26-russia-kursk-control.txt"], max_bytes=10**6)
    counting = CountingEmbeddings(embedder)
    desk = Newsdesk(settings, embedder=Embedder(embedder.name, counting))  # type: ignore[arg-type]
    question = "Who commanded the Russian forces in Kursk?"
    desk.retriever.retrieve(question, k=4)
    assert desk.embedder.embed_query(question) == embedder.embed_documents([question])[0]
    assert counting.texts == [question]


def test_generation_is_read_from_chroma_only_after_a_write(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path)
    make_ingestor(settings, embedder).ingest([PORT])
    store = Store.open(settings, embedder)
    reads = count_generation_reads(store)
    time.sleep(2 * store_module.STAMP_MARGIN_S)
    token = store.generation()
    assert store.generation() == token and store.generation() == token
    assert len(reads) == 1, "nothing was written since the first read: Chroma is not asked again"

    make_ingestor(settings, embedder).ingest([ORCHARD])  # another Store (as another process would) writes
    changed = store.generation()
    assert changed != token and changed == Store.open(settings, embedder).generation()
    assert len(reads) == 2


def test_a_read_right_after_a_write_is_not_reused(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path)
    make_ingestor(settings, embedder).ingest([PORT])
    monkeypatch.setattr(store_module, "STAMP_MARGIN_S", 3600.0)  # every write counts as "just now"
    store = Store.open(settings, embedder)
    reads = count_generation_reads(store)
    store.generation()
    store.generation()
    assert len(reads) == 2, "a write in the same clock tick could hide behind an unchanged file time"


def test_dense_leg_from_the_lexical_index_equals_the_store_query(settings: Settings, embedder: Embedder) -> None:
    ingestor = make_ingestor(settings, embedder)
    ingestor.ingest([PORT, ORCHARD])
    desk = Newsdesk(settings, embedder=embedder)
    desk.lexical.sync()
    vector = embedder.embed_query("how many ships were diverted by the strike")
    old = desk.store.nearest(vector, 10)
    assert len(old) == 2 and all(-1.0 <= score <= 1.0 for _, score in old)

    def fields(hits: list) -> list[tuple[object, ...]]:  # type: ignore[type-arg]
        return [(h.chunk_id, h.article_id, h.title, h.start, h.end, h.text, round(h.score, 6)) for h in hits]

    assert fields(desk.lexical.indexed_chunks(old)) == fields(desk.store.query(vector, 2))

    changed = replace(PORT, text=PORT.text + " The strike ended on Friday after a new offer.")
    changed = replace(changed, sections=[replace(PORT.sections[0], end=len(changed.text))])
    ingestor.ingest([changed])
    desk.lexical.sync()
    new = desk.store.nearest(vector, 10)
    live = desk.lexical.indexed_chunks(old + new)
    assert {h.chunk_id for h in live} == {i for i, _ in new}, "the replaced version's chunk is dropped"
    port = next(h for h in live if h.article_id == "port-1")
    assert port.text == changed.text[port.start : port.end] and "Friday" in port.text
    assert fields(desk.lexical.indexed_chunks(new)) == fields(desk.store.query(vector, 2))


def test_a_store_opened_without_sentences_writes_none(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path, reader="heuristic")  # the scorer that reads sentence vectors
    store = Store(connect(settings), settings.collection, embedder, sentences=False)
    report = Ingestor(store, embedder, make_ingestor(settings, embedder).chunker).ingest([PORT])
    assert store.chunk_count() == 1
    assert report.sentences_embedded == 0 and report.chunks_embedded == 1, "no sentence is embedded to be dropped"
    assert Store.open(settings, embedder).sentence_count() == 0
    make_ingestor(settings, embedder).ingest([ORCHARD])
    assert Store.open(settings, embedder).sentence_count() > 0
