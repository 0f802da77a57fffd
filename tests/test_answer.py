"""Hybrid retrieval, the extractive engine and the service, over the bundled corpus and real Chroma."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

import app.lexical as lexical_module
from app.answer import Turn
from app.answer.extractive import ExtractiveEngine, answer_type
from app.config import Settings
from app.embed import Embedder
from app.errors import StoreError
from app.lexical import LexicalIndex
from app.retrieve import Filters
from app.service import Newsdesk
from app.store import Store

from .conftest import CORPUS, CountingEmbeddings, free_port, make_ingestor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Newsdesk:
    settings = Settings(data_dir=tmp_path_factory.mktemp("desk"))
    make_ingestor(settings, embedder).ingest_paths([CORPUS], max_bytes=settings.max_file_bytes)
    return Newsdesk(settings, embedder=embedder)


def quotes_are_verbatim(desk: Newsdesk, answer_citations: list) -> bool:  # type: ignore[type-arg]
    return all(desk.store.get_article(c.article_id).text[c.start : c.end] == c.quote for c in answer_citations)


def test_hybrid_retrieval_returns_exact_spans_from_relevant_articles(desk: Newsdesk) -> None:
    passages = desk.retriever.retrieve("Which team won the Champions League final in Munich?", k=4)
    assert "Champions League" in passages[0].title
    assert len({p.article_id for p in passages}) == len(passages), "one chunk per article ahead of the rest"
    for p in passages:
        assert desk.store.get_article(p.article_id).text[p.start : p.end] == p.text


def test_filters_apply_to_both_dense_and_lexical(desk: Newsdesk) -> None:
    only_ledger = desk.retriever.retrieve("Kursk drones", k=8, filters=Filters(sources=("Harbor Ledger",)))
    assert only_ledger and {p.source for p in only_ledger} == {"Harbor Ledger"}
    window = Filters(since=date(2025, 4, 1), until=date(2025, 4, 30))
    dated = desk.retriever.retrieve("tariffs earthquake drones fines", k=8, filters=window)
    assert dated and all("2025-04-01" <= p.published_at <= "2025-04-30" for p in dated)
    article_id = dated[0].article_id
    pinned = desk.retriever.retrieve("anything at all", k=5, filters=Filters(article_ids=(article_id,)))
    assert {p.article_id for p in pinned} == {article_id}


def test_extractive_answer_is_verbatim_and_cited(desk: Newsdesk) -> None:
    answer = desk.ask("Which club beat Inter Milan in the Champions League final?", engine="extractive")
    assert not answer.refused and answer.engine == "extractive"
    assert "Paris Saint-Germain" in answer.answer
    assert answer.citations and quotes_are_verbatim(desk, answer.citations)
    without_markers = answer.answer
    for c in answer.citations:
        without_markers = without_markers.replace(f" [{c.number}]", "")
    assert all(part in " ".join(c.quote for c in answer.citations) for part in without_markers.split(". ") if part)


def test_refuses_when_the_articles_do_not_hold_the_answer(desk: Newsdesk) -> None:
    answer = desk.ask("Who won the Tour de France cycling race?", engine="extractive")
    assert answer.refused
    assert answer.answer.startswith("The articles do not contain the answer")


def test_disagreeing_sources_are_both_reported(desk: Newsdesk) -> None:
    answer = desk.ask("How many civilians were killed overnight in the Russian attacks?", engine="extractive")
    sources = {c.source for c in answer.citations}
    assert sources == {"Newslooks", "Harbor Ledger"}
    assert "Three civilians" in answer.answer and "at least four civilians" in answer.answer
    assert quotes_are_verbatim(desk, answer.citations)


def test_follow_up_carries_the_previous_subject(desk: Newsdesk) -> None:
    history = [Turn("How many drones did Ukraine's air force say were shot down?", "66 [1]")]
    rewritten = desk.extractive.condense("and how many did Russia intercept?", history)
    assert "drones" in rewritten and "Russia" in rewritten
    answer = desk.ask("and how many did Russia intercept?", history=history, engine="extractive")
    assert "45" in answer.answer
    assert desk.extractive.condense("Who fined Apple?", history) == "Who fined Apple?", "standalone stays"


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many drones were launched?", "number"),
        ("Who dissented at the Fed?", "person"),
        ("Where did the earthquake strike?", "place"),
        ("When did the fires start?", "date"),
        ("Which company was fined?", "entity"),
    ],
)
def test_answer_type_cues(question: str, kind: str) -> None:
    assert answer_type(question) == kind


def test_llm_down_falls_back_to_a_degraded_extractive_answer(desk: Newsdesk) -> None:
    settings = desk.settings.model_copy(
        update={"llm_base_url": f"http://127.0.0.1:{free_port()}/v1", "llm_max_retries": 0, "llm_timeout_s": 2.0}
    )
    degraded = Newsdesk(settings, embedder=desk.embedder)
    answer = degraded.ask("Which club beat Inter Milan in the Champions League final?", engine="llm")
    assert answer.degraded and answer.engine == "extractive" and "Paris Saint-Germain" in answer.answer
    assert any("LLM failed" in note for note in answer.notes)


def test_another_process_sees_ingests_and_deletions_without_restart(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path)
    make_ingestor(settings, embedder).ingest_paths([CORPUS / "2024-12-18-fed-rate-cut.txt"], max_bytes=10**6)
    reader = Newsdesk(settings, embedder=embedder)
    assert not any("Kursk" in p.title for p in reader.retriever.retrieve("Kursk Gerasimov", k=5))

    env = {**os.environ, "NEWSDESK_DATA_DIR": str(tmp_path)}
    kursk = CORPUS / "2025-04-26-russia-kursk-control.txt"
    subprocess.run([sys.executable, "-m", "app", "ingest", str(kursk)], env=env, check=True, capture_output=True)
    found = reader.retriever.retrieve("Kursk Gerasimov", k=5)
    assert any("Kursk" in p.title for p in found), "the running process sees the other process's ingest"
    assert any(p.lexical_rank for p in found if "Kursk" in p.title), "the lexical index caught up too"

    article_id = next(p.article_id for p in found if "Kursk" in p.title)
    subprocess.run([sys.executable, "-m", "app", "delete", article_id], env=env, check=True, capture_output=True)
    assert all(p.article_id != article_id for p in reader.retriever.retrieve("Kursk Gerasimov", k=5))
    assert reader.lexical.search("Gerasimov", 5) == []


def test_lexical_index_is_persisted_and_not_rebuilt(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path)
    make_ingestor(settings, embedder).ingest_paths([CORPUS], max_bytes=10**6)
    first = Newsdesk(settings, embedder=embedder)
    assert first.lexical.sync() >= 12
    first.close()
    again = Newsdesk(settings, embedder=embedder)
    assert again.lexical.sync() == 0, "a restart reads nothing it already has"
    assert again.lexical.search("Gerasimov", 3)


def test_cli_ask_json_has_the_answer_shape(tmp_path: Path) -> None:
    env = {**os.environ, "NEWSDESK_DATA_DIR": str(tmp_path)}
    file = CORPUS / "2025-02-24-germany-election-merz.txt"
    subprocess.run([sys.executable, "-m", "app", "ingest", str(file)], env=env, check=True, capture_output=True)
    result = subprocess.run(
        [sys.executable, "-m", "app", "ask", "What was the turnout in the German election?", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(result.stdout)
    assert set(answer) >= {"answer", "citations", "engine", "refused", "passages", "degraded"}
    assert answer["engine"] == "extractive" and "82.5" in answer["answer"]
    citation = answer["citations"][0]
    assert set(citation) >= {
        "number",
        "article_id",
        "title",
        "source",
        "published_at",
        "url",
        "chunk_id",
        "quote",
        "start",
        "end",
    }
    assert (
        Store.open(Settings(data_dir=tmp_path))
        .get_article(citation["article_id"])
        .text[citation["start"] : citation["end"]]
        == citation["quote"]
    )
    empty = subprocess.run([sys.executable, "-m", "app", "ask", "  "], env=env, capture_output=True, text=True)
    assert empty.returncode == 2 and "question is empty" in empty.stderr


def test_extractive_engine_never_invents_text(desk: Newsdesk) -> None:
    engine = ExtractiveEngine(desk.embedder, desk.lexical)
    for question in ("Who is the new German chancellor?", "How much was Apple fined?", "When did Starliner return?"):
        answer = engine.answer(question, desk.retriever.retrieve(question, k=8))
        assert quotes_are_verbatim(desk, answer.citations)


@pytest.fixture(scope="module")
def heuristic_desk(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Newsdesk:
    """The heuristic reader's desk: its store keeps a vector per sentence."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("heuristic"), reader="heuristic")
    make_ingestor(settings, embedder).ingest_paths([CORPUS], max_bytes=settings.max_file_bytes)
    return Newsdesk(settings, embedder=embedder)


def test_the_learned_reader_store_keeps_no_sentence_vectors(desk: Newsdesk) -> None:
    assert desk.extractive.reader is not None and not desk.store.keeps_sentences
    assert desk.store.sentence_count() == 0 and desk.store.chunk_count() > 0


def test_answer_embeds_only_the_question_when_sentence_vectors_are_stored(heuristic_desk: Newsdesk) -> None:
    desk = heuristic_desk
    question = "How many drones did Ukraine say it shot down?"
    passages = desk.retriever.retrieve(question, k=8)
    counting = CountingEmbeddings(desk.embedder)
    stored = ExtractiveEngine(Embedder(desk.embedder.name, counting), desk.lexical, desk.store)  # type: ignore[arg-type]
    answer = stored.answer(question, passages)
    assert counting.texts == [question], "candidate sentences come from the store, not the model"
    counting.texts.clear()
    unstored = ExtractiveEngine(Embedder(desk.embedder.name, counting), desk.lexical)  # type: ignore[arg-type]
    again = unstored.answer(question, passages)
    assert len(counting.texts) > 1, "without stored vectors the candidates are embedded"
    assert again.answer == answer.answer, "stored vectors are the vectors the model gives"


def test_sentence_vectors_follow_the_live_version_and_deletion(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path, reader="heuristic")
    source = CORPUS / "2025-02-24-germany-election-merz.txt"
    path = tmp_path / "merz.txt"
    path.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    ingestor = make_ingestor(settings, embedder)
    report = ingestor.ingest_paths([path], max_bytes=10**6)
    store = Store.open(settings, embedder)
    assert report.sentences_embedded > 10
    sentences = store._sentences
    assert sentences is not None and sentences.count() == report.sentences_embedded

    path.write_text(source.read_text(encoding="utf-8") + "\nA closing sentence was added to the article later.\n")
    make_ingestor(settings, embedder).ingest_paths([path], max_bytes=10**6)
    live = store.list_articles()[0]
    fingerprints = {m["fingerprint"] for m in sentences.get(include=["metadatas"])["metadatas"] or []}
    assert fingerprints == {live.fingerprint}, "the previous version's sentences are gone"

    store.delete_article(live.id)
    assert sentences.count() == 0


def test_merged_lexical_segments_equal_a_fresh_index(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path)
    files = sorted(CORPUS.glob("*.txt"))
    desk = Newsdesk(settings, embedder=embedder)
    ingestor = make_ingestor(settings, embedder)
    for path in files[:-1]:
        ingestor.ingest_paths([path], max_bytes=10**6)
        desk.lexical.sync()  # one segment per sync
    desk.store.delete_article(desk.lexical.search("Merz chancellor", 1)[0].article_id)
    desk.lexical.sync()
    monkeypatch.setattr(lexical_module, "MAX_SEGMENTS", 0)
    ingestor.ingest_paths([files[-1]], max_bytes=10**6)
    desk.lexical.sync()  # merges every segment into one, without the deleted article's rows
    assert desk.lexical._db.execute("SELECT count(DISTINCT segment) FROM posting").fetchone()[0] == 1

    fresh = LexicalIndex(tmp_path / "fresh.sqlite", desk.store)
    assert fresh.sync() == len(files) - 1
    for query in ("Kursk drones Gerasimov", "Merz chancellor", "Nobel physics quantum", "measles cases"):
        merged = [(h.chunk_id, round(h.score, 9)) for h in desk.lexical.search(query, 10)]
        assert merged == [(h.chunk_id, round(h.score, 9)) for h in fresh.search(query, 10)]
    assert all("Merz" not in h.text for h in desk.lexical.search("Merz chancellor", 10))


def test_lexical_index_in_an_older_layout_is_rebuilt(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path)
    make_ingestor(settings, embedder).ingest_paths([CORPUS / "2025-04-26-russia-kursk-control.txt"], max_bytes=10**6)
    path = tmp_path / f"lexical-{settings.collection}.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE VIRTUAL TABLE chunk_text USING fts5(text);"
        "CREATE TABLE indexed_article (id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL);"
        "CREATE TABLE index_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    )
    old.close()
    desk = Newsdesk(settings, embedder=embedder)
    assert desk.lexical.sync() == 1 and desk.lexical.search("Gerasimov", 3)


def test_a_failed_lexical_sync_leaves_the_index_as_it_was(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path)
    ingestor = make_ingestor(settings, embedder)
    path = tmp_path / "kursk.txt"
    path.write_text((CORPUS / "2025-04-26-russia-kursk-control.txt").read_text(encoding="utf-8"), encoding="utf-8")
    ingestor.ingest_paths([path], max_bytes=10**6)
    desk = Newsdesk(settings, embedder=embedder)
    assert desk.lexical.sync() == 1
    before = [(h.chunk_id, h.score) for h in desk.lexical.search("Kursk drones", 10)]
    with path.open("a", encoding="utf-8") as file:
        file.write("\nA correction about the Kursk drones was added later.\n")
    ingestor.ingest_paths([path], max_bytes=10**6)  # a new version: the sync replaces the old one

    def chroma_down(article_ids: object) -> object:
        raise StoreError("Chroma failed while reading chunks: connection refused")

    monkeypatch.setattr(desk.store, "live_chunks", chroma_down)
    with pytest.raises(StoreError):
        desk.lexical.sync()
    assert [(h.chunk_id, h.score) for h in desk.lexical.search("Kursk drones", 10)] == before
    monkeypatch.undo()
    assert desk.lexical.sync() == 1
    fresh = LexicalIndex(tmp_path / "fresh.sqlite", desk.store)
    fresh.sync()
    assert [(h.chunk_id, h.score) for h in desk.lexical.search("Kursk drones", 10)] == [
        (h.chunk_id, h.score) for h in fresh.search("Kursk drones", 10)
    ]
