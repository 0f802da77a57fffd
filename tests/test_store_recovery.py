"""A store with chunks that no commit made live: an ingest killed before its commit, or one still
writing. Search never returns them and is never starved by them, stats count live data only, and
the chunks of a killed ingest are swept when the store opens, once a second run could no longer
want to reuse them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import app.store as store_module
from app.article import Article, Section
from app.chunk import Chunker
from app.config import Settings
from app.embed import Embedder
from app.ingest import version_sentences
from app.retrieve import DENSE_CANDIDATES
from app.service import Newsdesk
from app.store import ArticleVersion, Store

from .conftest import REPO, make_ingestor

pytestmark = pytest.mark.slow

WORD = "lighthouse"
QUERY = "the lighthouse keeper in the storm"
ISLANDS = ("Arran", "Bute", "Islay", "Jura", "Mull")
STORMS = ("shook", "battered", "lashed", "rattled", "soaked", "pounded", "drenched")
# Small chunks, so a modest article has far more chunks than the dense leg's candidate list.
CHUNK_TOKENS = 64
OVERLAP_TOKENS = 8
CANDIDATE_LIST = DENSE_CANDIDATES * 2 + 8  # how many nearest chunks the dense leg asked Chroma for

# Run by a real Python process: the real `newsdesk ingest`, killed by SIGKILL as it is about to
# commit, so every chunk and sentence of the article is written and no registry record is.
KILLED_INGEST = """
import os, signal, sys
from app import cli
from app.store import Store

def die_before_committing(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

Store.commit = die_before_committing
sys.argv = ["newsdesk", "ingest", *sys.argv[1:]]
cli.main()
"""


def article(article_id: str, title: str, sentences: list[str]) -> Article:
    text = " ".join(sentences)
    return Article(id=article_id, title=title, text=text, sections=[Section("body", 0, len(text))])


# Live: every chunk mentions the lighthouse, none is about its keeper in a storm.
FERRY = article(
    "ferry-timetable",
    "Island ferry timetable",
    [
        f"Ferry notice {i}: the morning boat to {ISLANDS[i % 5]} leaves the pier beside the old "
        f"{WORD} at {6 + i % 12} o'clock."
        for i in range(60)
    ],
)
HARBOUR = article(
    "harbour-dues",
    "Harbour dues rise",
    [f"Berth {i} at the harbour will cost {20 + i} pounds a night from May." for i in range(12)],
)
# Never committed: its chunks are far nearer the query than any live chunk, and there are more
# of them than the dense leg's candidate list holds.
STORM = article(
    "lighthouse-storm",
    "The lighthouse keeper's storm log",
    [
        f"Keeper's log {i}: the {WORD} keeper climbed the {WORD} tower as the storm "
        f"{STORMS[i % 7]} the {WORD} lamp on night {i}."
        for i in range(420)
    ],
)
PREVIOUS = (FERRY, HARBOUR)


def recovery_settings(data_dir: Path) -> Settings:
    """The heuristic reader's store keeps sentence vectors: their recovery is tested too."""
    return Settings(
        data_dir=data_dir, chunk_tokens=CHUNK_TOKENS, chunk_overlap_tokens=OVERLAP_TOKENS, reader="heuristic"
    )


def markdown(target: Path, item: Article) -> Path:
    target.write_text(f"---\nid: {item.id}\ntitle: {item.title}\n---\n{item.text}\n", encoding="utf-8")
    return target


def newsdesk(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "NEWSDESK_DATA_DIR": str(data_dir),
        "NEWSDESK_CHUNK_TOKENS": str(CHUNK_TOKENS),
        "NEWSDESK_CHUNK_OVERLAP_TOKENS": str(OVERLAP_TOKENS),
        "NEWSDESK_READER": "heuristic",
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(args, capture_output=True, text=True, env=environment, cwd=REPO, timeout=600, check=False)


def live_sentence_count(articles: tuple[Article, ...], desk: Newsdesk) -> int:
    fingerprints = desk.store.live_fingerprints()
    chunker = Chunker(CHUNK_TOKENS, OVERLAP_TOKENS, desk.settings.tokenizer)
    versions = [ArticleVersion(a, fingerprints[a.id], chunker.chunk(a)) for a in articles]
    return sum(len(version_sentences(v)) for v in versions)


def assert_search_finds_live_chunks_only(desk: Newsdesk, embedder: Embedder) -> None:
    """Dense search alone, and hybrid search, give live chunks with the word, none of the storm log."""
    dense = desk.store.query(embedder.embed_query(QUERY), k=8)
    assert len(dense) == 8, "the dense leg is not starved by chunks that are not live"
    assert {h.article_id for h in dense} == {FERRY.id} and all(WORD in h.text for h in dense)

    passages = desk.search(QUERY, k=8)
    assert passages and STORM.id not in {p.article_id for p in passages}
    from_dense = [p for p in passages if p.dense_rank is not None]
    assert from_dense and all(p.article_id in {a.id for a in PREVIOUS} for p in from_dense)
    assert any(WORD in p.text for p in from_dense), "hybrid search has its dense leg"
    lexical = desk.lexical.search(QUERY, 1000)
    assert lexical and STORM.id not in {h.article_id for h in lexical}


def test_an_ingest_killed_before_its_commit_starves_no_search_and_is_swept_in_time(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    (tmp_path / "previous").mkdir()
    for item in PREVIOUS:
        markdown(tmp_path / "previous" / f"{item.id}.md", item)
    first = newsdesk([sys.executable, "-m", "app", "ingest", str(tmp_path / "previous")], data)
    assert first.returncode == 0, first.stderr

    script = tmp_path / "killed_ingest.py"
    script.write_text(KILLED_INGEST, encoding="utf-8")
    killed = newsdesk([sys.executable, str(script), str(markdown(tmp_path / "storm.md", STORM))], data)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    settings = recovery_settings(data)
    desk = Newsdesk(settings, embedder=embedder)
    records = desk.store.list_articles()
    assert sorted(r.id for r in records) == sorted(a.id for a in PREVIOUS), "the storm log was never committed"
    live_chunks = sum(r.chunk_count for r in records)
    storm_chunks = len(Chunker(CHUNK_TOKENS, OVERLAP_TOKENS, settings.tokenizer).chunk(STORM))
    assert storm_chunks > CANDIDATE_LIST
    assert desk.store.chunk_count() == live_chunks + storm_chunks, "kept for a second run to reuse"

    stats = desk.stats()
    assert (stats.articles, stats.chunks, stats.orphan_chunks) == (2, live_chunks, storm_chunks)
    assert stats.sentences == live_sentence_count(PREVIOUS, desk)
    assert_search_finds_live_chunks_only(desk, embedder)
    for item in PREVIOUS:
        assert desk.article(item.id).text == item.text, "previous articles are unharmed"
        stored = desk.store.live_chunks([item.id])
        assert len(stored) == desk.store.records([item.id])[item.id].chunk_count
        assert all(item.text[h.start : h.end] == h.text for h, _ in stored)

    monkeypatch.setattr(store_module, "PENDING_WRITE_RETENTION_S", 0.0)  # an hour later
    swept = Store.open(settings, embedder)
    assert swept.chunk_count() == live_chunks, "opening the store swept the killed run's chunks"
    assert swept.sentence_count() == live_sentence_count(PREVIOUS, desk)
    stats = desk.stats()
    assert (stats.articles, stats.chunks, stats.orphan_chunks) == (2, live_chunks, 0)
    assert_search_finds_live_chunks_only(desk, embedder)


def test_search_and_stats_ignore_an_ingest_still_writing_and_no_sweep_touches_it(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = recovery_settings(tmp_path)
    make_ingestor(settings, embedder).ingest(list(PREVIOUS))
    writer = make_ingestor(settings, embedder)  # another thread's ingest, stopped just before its commit
    real_commit = writer.store.commit
    written, release = threading.Event(), threading.Event()

    def commit_when_released(*args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        written.set()
        assert release.wait(timeout=600)
        real_commit(*args, **kwargs)

    writer.store.commit = commit_when_released  # type: ignore[method-assign]
    ingest = threading.Thread(target=writer.ingest, args=([STORM],))
    ingest.start()
    try:
        assert written.wait(timeout=600), "the ingest reached its commit"
        monkeypatch.setattr(store_module, "PENDING_WRITE_RETENTION_S", 0.0)  # only a live writer protects it
        desk = Newsdesk(settings, embedder=embedder)
        nearest = desk.store.nearest(embedder.embed_query(QUERY), CANDIDATE_LIST)
        assert all(chunk_id.startswith(f"{STORM.id}:") for chunk_id, _ in nearest), (
            "the uncommitted chunks fill the whole candidate list a fixed over-fetch would ask for"
        )
        storm_chunks = len(writer.chunker.chunk(STORM))
        stats = desk.stats()
        live_chunks = sum(r.chunk_count for r in desk.store.list_articles())
        assert (stats.articles, stats.chunks, stats.orphan_chunks) == (2, live_chunks, storm_chunks)
        assert stats.sentences == live_sentence_count(PREVIOUS, desk)
        assert_search_finds_live_chunks_only(desk, embedder)
    finally:
        release.set()
        ingest.join(timeout=600)

    stored = desk.store.live_chunks([STORM.id])
    assert len(stored) == storm_chunks == desk.store.records([STORM.id])[STORM.id].chunk_count, (
        "the ingest that was writing while the store was opened committed a whole article"
    )
    assert STORM.id in {p.article_id for p in desk.search(QUERY, k=8)}
    assert desk.stats().orphan_chunks == 0


def test_a_pending_write_from_another_host_is_swept_after_the_retention(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a process on another machine still runs cannot be asked: only time tells."""
    settings = recovery_settings(tmp_path)
    make_ingestor(settings, embedder).ingest([HARBOUR])
    writer = make_ingestor(settings, embedder)
    writer.store.commit = lambda *args, **kwargs: None  # type: ignore[method-assign]
    writer.ingest([FERRY])
    monkeypatch.setattr(store_module.socket, "gethostname", lambda: "another-host")
    assert Store.open(settings, embedder).counts().orphan_chunks > 0, "kept within the retention"

    monkeypatch.setattr(store_module, "PENDING_WRITE_RETENTION_S", 0.0)
    store = Store.open(settings, embedder)
    assert store.chunk_count() == store.records([HARBOUR.id])[HARBOUR.id].chunk_count
    assert store.counts().orphan_chunks == 0
