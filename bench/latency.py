"""Retrieval and full extractive-answer latency on the ingested store and on a copy scaled to 100,000 chunks.

    NEWSDESK_DATA_DIR=/tmp/rtqa newsdesk ingest ../shared/data/realtimeqa/articles.jsonl
    NEWSDESK_DATA_DIR=/tmp/rtqa python bench/latency.py [--chunks 100000] [--scaled-dir DIR] [--no-sentence-vectors]

The scaled store is built once (then reused) from the store in NEWSDESK_DATA_DIR without running
the model: every article is ingested again under new ids (``<id>~<n>``) through the real ingest
path, and its chunk vectors are the stored ones plus a little noise (so no two are identical).
Chroma's HNSW index, the registry and the BM25 index all hold the full count, and so do the sentence
vectors unless ``--no-sentence-vectors`` (about six times as many records as chunks; without them
the full answer at scale embeds the candidate sentences at question time, which the output says).
Questions: the RealTimeQA dev questions. Retrieval includes embedding the question; the full answer
is ``Newsdesk.ask`` with the extractive engine (retrieval, sentence scoring, citations). The
embedder's cache of recent questions is emptied before every timed call, so each one runs the model.
With ``--read-ahead`` the ingested store is timed twice in one run: first with the learned reader
embedding each question's candidates (``read_ahead`` off), then after reading every stored sentence
ahead into ``reader-vectors.sqlite`` (its in-memory cache emptied, so the saved vectors are read).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from app.config import Settings
from app.embed import Embedder, build_embedder
from app.ingest import _embedding_text, build_ingestor
from app.service import Newsdesk
from app.store import Store, connect, sentence_id
from app.text.sentences import answer_sentences

QUESTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "realtimeqa" / "questions_dev.jsonl"
NOISE = 0.01


class StoredVectors(Embeddings):
    """Embeddings looked up from an existing store by text, with a little noise."""

    def __init__(self, vectors: dict[str, list[float]], seed: int = 7) -> None:
        self.vectors = vectors
        self.random = np.random.default_rng(seed)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        stored = np.asarray([self.vectors[text] for text in texts])
        noisy = stored + self.random.normal(0.0, NOISE, stored.shape)
        return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def stored_vectors(store: Store) -> dict[str, list[float]]:
    """Every stored vector by the text it was embedded from: chunks, and the sentences of each chunk."""
    vectors: dict[str, list[float]] = {}
    total, page = store.chunk_count(), 2000
    for offset in range(0, total, page):
        got = store.chunks.get(limit=page, offset=offset, include=["embeddings", "documents", "metadatas"])
        sentences: dict[str, str] = {}
        embeddings = got["embeddings"] if got["embeddings"] is not None else []
        for cid, vector, doc, meta in zip(
            got["ids"], embeddings, got["documents"] or [], got["metadatas"] or [], strict=True
        ):
            title = str(meta.get("title") or "")
            vectors[f"{title}\n{doc}" if title else str(doc)] = [float(x) for x in vector]
            for sentence in answer_sentences(str(doc)):
                sentences[sentence_id(cid, int(str(meta["start"])) + sentence.start)] = sentence.text
        for sid, vector in store.sentence_vectors(list(sentences)).items():
            vectors[sentences[sid]] = vector
    return vectors


def build_scaled(source: Settings, target: Settings, embedder: Embedder, chunks: int, sentences: bool) -> None:
    store = Store.open(source, embedder)
    have = store.chunk_count()
    copies = math.ceil(chunks / have) - 1
    articles = store.get_articles([r.id for r in store.list_articles()])
    vectors = stored_vectors(store)
    lookup = Embedder(embedder.name, StoredVectors(vectors), embedder.dimension)
    ingestor = build_ingestor(target, lookup, Store(connect(target), target.collection, lookup, sentences=sentences))
    missing = [t for a in articles for c in ingestor.chunker.chunk(a) if (t := _embedding_text(a, c)) not in vectors]
    if missing:
        raise SystemExit(f"{len(missing)} chunk texts have no stored vector: was the store built with other settings?")
    started = time.perf_counter()
    ingestor.ingest(articles)
    for n in range(1, copies + 1):
        ingestor.ingest([dataclasses.replace(a, id=f"{a.id}~{n}", origin=f"{a.origin}~{n}") for a in articles])
        done = Store.open(target, lookup).chunk_count()
        print(f"  copy {n}/{copies}: {done:,} chunks, {time.perf_counter() - started:.0f} s", flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(label: str, settings: Settings, embedder: Embedder, questions: list[str], read_ahead: bool) -> None:
    started = time.perf_counter()
    desk = Newsdesk(settings, embedder=embedder)
    desk.lexical.sync()
    opened = time.perf_counter() - started
    desk.ask("warm up: who won?", engine="extractive")
    if read_ahead and desk.reader is not None:
        started = time.perf_counter()
        read = desk.read_ahead()
        saved = len(desk.reader.saved) if desk.reader.saved is not None else 0
        on_disk = sum(f.stat().st_size for f in settings.data_dir.glob("reader-vectors.sqlite*")) / 2**20
        print(
            f"{label}: read {read:,} sentences ahead in {time.perf_counter() - started:.1f} s "
            f"({saved:,} saved, {on_disk:.0f} MB on disk)"
        )
        desk.reader.forget()
    reader = desk.extractive.reader
    saved_before = len(reader.saved) if reader is not None and reader.saved is not None else None
    retrieval, answer = [], []
    for question in questions:
        embedder.forget_queries()
        t0 = time.perf_counter()
        desk.retriever.retrieve(question, settings.top_k)
        t1 = time.perf_counter()
        embedder.forget_queries()
        t2 = time.perf_counter()
        desk.ask(question, engine="extractive")
        t3 = time.perf_counter()
        retrieval.append((t1 - t0) * 1000)
        answer.append((t3 - t2) * 1000)
    sentences = desk.store.sentence_count()
    print(
        f"{label}: {desk.store.chunk_count():,} chunks, {desk.store.article_count():,} articles, "
        f"{sentences:,} sentence vectors; open + lexical sync {opened:.1f} s"
    )
    if saved_before is not None:
        print(f"  (learned reader, {saved_before:,} candidate vectors saved before timing: it embeds only the others)")
    elif reader is not None:
        print("  (learned reader, read_ahead off: it embeds each question's candidates, keeping recent ones)")
    elif not sentences:
        print("  (no sentence vectors stored: the full answer embeds the candidate sentences at question time)")
    print(f"  retrieval      p50 {statistics.median(retrieval):6.1f} ms   p95 {percentile(retrieval, 0.95):6.1f} ms")
    print(f"  full answer    p50 {statistics.median(answer):6.1f} ms   p95 {percentile(answer, 0.95):6.1f} ms")
    desk.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the scaled store (0: no scaled store)")
    parser.add_argument("--scaled-dir", type=Path, help="where the scaled store lives (default DATA_DIR-scaled)")
    parser.add_argument(
        "--no-sentence-vectors", action="store_true", help="build the scaled store without sentence vectors"
    )
    parser.add_argument(
        "--read-ahead", action="store_true", help="time the ingested store twice: not read ahead, then read ahead"
    )
    args = parser.parse_args()
    if not QUESTIONS.exists():
        print(f"skipped: {QUESTIONS} not found")
        return 0
    settings = Settings()
    embedder = build_embedder(settings)
    if Store.open(settings, embedder).chunk_count() == 0:
        print(f"skipped: the store in {settings.data_dir} is empty; ingest the RealTimeQA articles first")
        return 0
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line]
    scaled_dir = args.scaled_dir or settings.data_dir.with_name(settings.data_dir.name + "-scaled")
    scaled = settings.model_copy(update={"data_dir": scaled_dir, "chroma_path": None})
    if args.read_ahead:
        cold = settings.model_copy(update={"read_ahead": False})
        measure("ingested store, not read ahead", cold, embedder, questions, read_ahead=False)
        measure("ingested store, read ahead", settings, embedder, questions, read_ahead=True)
    else:
        measure("ingested store", settings, embedder, questions, read_ahead=False)
    if args.chunks == 0:
        return 0
    if Store.open(scaled, embedder).chunk_count() < args.chunks:
        print(f"building the scaled store in {scaled_dir} (once) ...", flush=True)
        build_scaled(settings, scaled, embedder, args.chunks, sentences=not args.no_sentence_vectors)
    measure("scaled store", scaled, embedder, questions, args.read_ahead)
    return 0


if __name__ == "__main__":
    sys.exit(main())
