"""Ingest benchmark: newsdesk against a plain LangChain pipeline on the same articles, whole processes.

    python bench/ingest.py [ARTICLES_JSONL] [--articles 80] [--runs 3]

Each run is a fresh process of this script (``--child SIDE``), the sides taking turns:
- ``newsdesk``: parse the articles, chunk, embed and store them (chunk and sentence vectors) into a
  fresh embedded store, as ``newsdesk ingest`` does, then re-ingest them unchanged;
- ``newsdesk-no-sentences``: the same into a store that keeps no sentence vectors, so the cost of
  sentence vectors shows side by side;
- ``langchain``: the plain pipeline: ``RecursiveCharacterTextSplitter(chunk_size=1000,
  chunk_overlap=200)`` over each article's body, the same bundled MiniLM behind a LangChain
  ``Embeddings`` at batch 32, ``langchain_chroma.Chroma`` persisted to a temporary directory;
- ``embedding``: only the model, embedding what newsdesk's ingest embeds (its chunk texts and its
  sentences) in ingest's model calls, so ingest time compares with the embedding time of its work.
Wall time is the whole process (interpreter start, imports, model load, ingest, exit; less the
re-ingest check at the end of a newsdesk side); peak RSS is the child's own ``ru_maxrss``. Prints
per-run figures, per-side medians and peak RSS, the ratios to langchain, newsdesk's ingest time
over the embedding-only time, and a JSON line. Default input: the first 80 articles of
../shared/data/realtimeqa/articles.jsonl (skipped when absent).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.article import Article
    from app.ingest import Ingestor
    from app.store import ArticleVersion

DEFAULT_INPUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "realtimeqa" / "articles.jsonl"
SIDES = ("newsdesk", "newsdesk-no-sentences", "langchain", "embedding")
LANGCHAIN_CHUNK_CHARS = 1000
LANGCHAIN_OVERLAP_CHARS = 200
LANGCHAIN_BATCH = 32
PEAK_RSS_TARGET_MB = 1200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", type=Path, default=DEFAULT_INPUT, help="an articles JSONL")
    parser.add_argument("--articles", type=int, default=80, help="how many articles (the first N records)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        figures = CHILDREN[args.child](args.input)
        args.result.write_text(json.dumps(figures), encoding="utf-8")
        return 0
    if not args.input.exists():
        print(f"skipped: {args.input} not found")
        return 0

    with tempfile.TemporaryDirectory() as scratch:
        articles = Path(scratch) / "articles.jsonl"
        lines = [line for line in args.input.read_text(encoding="utf-8").splitlines() if line.strip()]
        articles.write_text("\n".join(lines[: args.articles]) + "\n", encoding="utf-8")
        count = min(args.articles, len(lines))
        print(f"{count} articles from {args.input}, {args.runs} runs per side, taking turns (whole processes)")
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for n in range(1, args.runs + 1):
            for side in SIDES:
                figures = run_child(side, articles, Path(scratch) / f"{side}-{n}.json")
                runs[side].append(figures)
                print(f"run {n}/{args.runs}  {side:<21}  {describe(side, figures)}", flush=True)
    summary = summarise(runs, count)
    print_summary(summary)
    print(json.dumps(summary))
    return 0


def run_child(side: str, articles: Path, result: Path) -> dict[str, Any]:
    """One whole process: its wall time and its own peak RSS (``wait4``), plus what it reports."""
    command = [sys.executable, __file__, str(articles), "--child", side, "--result", str(result)]
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"the {side} run failed with exit code {process.returncode}")
    figures: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    figures["wall_s"] = wall - figures.get("untimed_s", 0.0)
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    return figures


def describe(side: str, figures: dict[str, Any]) -> str:
    head = f"wall {figures['wall_s']:6.1f} s  peak RSS {figures['peak_rss_mb']:6.0f} MB"
    if side.startswith("newsdesk"):
        return (
            f"{head}  (ingest {figures['ingest_s']:.1f} s, of which embedding {figures['embedding_in_ingest_s']:.1f} s;"
            f" {figures['chunks']} chunks, {figures['sentences']} sentences;"
            f" re-ingest unchanged {figures['reingest_s']:.2f} s)"
        )
    if side == "langchain":
        return (
            f"{head}  (pipeline {figures['pipeline_s']:.1f} s, of which embedding {figures['embedding_s']:.1f} s;"
            f" {figures['chunks']} chunks)"
        )
    counts = f"{figures['chunks']} chunks, {figures['sentences']} sentences"
    return f"{head}  (embedding {figures['embedding_s']:.1f} s; {counts})"


def summarise(runs: dict[str, list[dict[str, Any]]], articles: int) -> dict[str, Any]:
    def median(side: str, key: str) -> float:
        return round(statistics.median(float(r[key]) for r in runs[side]), 2)

    def ratio(numerator: float, denominator: float) -> float:
        return round(numerator / denominator, 3)

    sides: dict[str, Any] = {
        side: {
            "median_wall_s": median(side, "wall_s"),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs[side]), 1),
            "chunks": runs[side][0]["chunks"],
            "sentences": runs[side][0].get("sentences", 0),
        }
        for side in SIDES
    }
    for side in ("newsdesk", "newsdesk-no-sentences"):
        sides[side]["median_ingest_s"] = median(side, "ingest_s")
        sides[side]["median_embedding_in_ingest_s"] = median(side, "embedding_in_ingest_s")
        sides[side]["median_reingest_s"] = median(side, "reingest_s")
    sides["langchain"]["median_embedding_s"] = median("langchain", "embedding_s")
    sides["embedding"]["median_embedding_s"] = median("embedding", "embedding_s")
    langchain = sides["langchain"]["median_wall_s"]
    return {
        "articles": articles,
        "runs": len(runs["newsdesk"]),
        "sides": sides,
        "ratio_newsdesk_langchain": ratio(sides["newsdesk"]["median_wall_s"], langchain),
        "ratio_newsdesk_no_sentences_langchain": ratio(sides["newsdesk-no-sentences"]["median_wall_s"], langchain),
        "ingest_vs_embedding_only": ratio(
            sides["newsdesk"]["median_ingest_s"], sides["embedding"]["median_embedding_s"]
        ),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in sides.values()),
    }


def print_summary(s: dict[str, Any]) -> None:
    sides = s["sides"]
    print()
    print(f"{'side':<22} {'median wall':>12} {'peak RSS':>10} {'chunks':>7} {'sentences':>10}")
    for side, f in sides.items():
        wall, rss = f["median_wall_s"], f["peak_rss_mb"]
        print(f"{side:<22} {wall:>10.1f} s {rss:>7.0f} MB {f['chunks']:>7} {f['sentences']:>10}")
    print(f"ratio newsdesk/langchain (median wall): {s['ratio_newsdesk_langchain']:.3f}  (target <= 1.0, aim 0.8)")
    print(
        f"ratio newsdesk-no-sentences/langchain: {s['ratio_newsdesk_no_sentences_langchain']:.3f}"
        "  (target <= 1.0, aim 0.8)"
    )
    for side in ("newsdesk", "newsdesk-no-sentences"):
        f = sides[side]
        print(
            f"{side} ingest {f['median_ingest_s']:.1f} s (embedding in it {f['median_embedding_in_ingest_s']:.1f} s),"
            f" re-ingest unchanged {f['median_reingest_s']:.2f} s"
        )
    print(
        f"newsdesk ingest vs embedding-only of what it embeds ({sides['embedding']['median_embedding_s']:.1f} s):"
        f" {s['ingest_vs_embedding_only']:.3f}x  (target <= 1.15)"
    )
    print(f"peak RSS, largest side: {s['peak_rss_mb']:.0f} MB  (target <= {PEAK_RSS_TARGET_MB} MB)")


def newsdesk_child(articles: Path, *, sentences: bool = True) -> dict[str, Any]:
    from app.config import Settings
    from app.embed import build_embedder
    from app.ingest import build_ingestor
    from app.parse import parse_file
    from app.store import Store, connect

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir))
        embedder = build_embedder(settings)
        embedder.embed_query("warm up")  # the model loads here, so ingest times exclude loading it

        def ingestor() -> Ingestor:
            store = Store(connect(settings), settings.collection, embedder, sentences=sentences)
            return build_ingestor(settings, embedder, store)

        started = time.perf_counter()
        parsed = parse_file(articles, max_bytes=settings.max_file_bytes)
        report = ingestor().ingest(parsed.articles)
        ingest = time.perf_counter() - started

        began = time.perf_counter()
        again = ingestor().ingest(parse_file(articles, max_bytes=settings.max_file_bytes).articles)
        reingest = time.perf_counter() - began
        assert again.chunks_embedded == 0 and again.unchanged == report.added
    return {
        "articles": report.added,
        "parse_errors": len(parsed.errors),
        "chunks": report.chunks_embedded,
        "sentences": report.sentences_embedded,
        "ingest_s": ingest,
        "embedding_in_ingest_s": report.embedding_seconds,
        "reingest_s": reingest,
        "untimed_s": reingest,
    }


def newsdesk_no_sentences_child(articles: Path) -> dict[str, Any]:
    return newsdesk_child(articles, sentences=False)


def ingest_flushes(ingestor: Ingestor, articles: list[Article]) -> list[list[ArticleVersion]]:
    """The versions of each model call a fresh ingest makes: its articles (the first of each id)
    grouped until they reach ``flush_chunks`` chunks."""
    from app.store import ArticleVersion

    first: dict[str, Article] = {}
    for article in articles:
        first.setdefault(article.id, article)
    flushes: list[list[ArticleVersion]] = [[]]
    for article in first.values():
        if sum(len(v.chunks) for v in flushes[-1]) >= ingestor.flush_chunks:
            flushes.append([])
        flushes[-1].append(ArticleVersion(article, ingestor.fingerprint(article), ingestor.chunker.chunk(article)))
    return flushes


def embedding_child(articles: Path) -> dict[str, Any]:
    from app.config import Settings
    from app.embed import build_embedder
    from app.ingest import _embedding_text, build_ingestor, version_sentences
    from app.parse import parse_file

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir))
        embedder = build_embedder(settings)
        embedder.embed_query("warm up")
        ingestor = build_ingestor(settings, embedder)
        parsed = parse_file(articles, max_bytes=settings.max_file_bytes)
        calls = [
            (
                [_embedding_text(v.article, c) for v in flush for c in v.chunks],
                [text for v in flush for text in version_sentences(v).values()],
            )
            for flush in ingest_flushes(ingestor, parsed.articles)
        ]
        started = time.perf_counter()
        for chunks, sentences in calls:
            embedder.embed_documents(chunks + sentences)  # one call per flush, as ingest makes
        seconds = time.perf_counter() - started
    return {
        "chunks": sum(len(c) for c, _ in calls),
        "sentences": sum(len(s) for _, s in calls),
        "embedding_s": seconds,
    }


def langchain_child(articles: Path) -> dict[str, Any]:
    from chromadb.config import Settings as ChromaSettings
    from langchain_chroma import Chroma
    from langchain_core.embeddings import Embeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from app.config import LOCAL_EMBEDDING_MODEL
    from app.embed import LocalEmbeddings, local_model_dir

    class TimedEmbeddings(Embeddings):
        def __init__(self, inner: Embeddings) -> None:
            self.inner = inner
            self.seconds = 0.0

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            started = time.perf_counter()
            vectors = self.inner.embed_documents(texts)
            self.seconds += time.perf_counter() - started
            return vectors

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    model = LocalEmbeddings(local_model_dir(LOCAL_EMBEDDING_MODEL), batch_size=LANGCHAIN_BATCH)
    model.embed_query("warm up")  # as on the newsdesk side, the in-process times exclude loading the model
    embeddings = TimedEmbeddings(model)
    started = time.perf_counter()
    records = [json.loads(line) for line in articles.read_text(encoding="utf-8").splitlines() if line.strip()]
    splitter = RecursiveCharacterTextSplitter(chunk_size=LANGCHAIN_CHUNK_CHARS, chunk_overlap=LANGCHAIN_OVERLAP_CHARS)
    documents = splitter.create_documents(
        [r["body"] for r in records],
        metadatas=[{k: str(r.get(k) or "") for k in ("id", "title", "source", "published_at", "url")} for r in records],
    )
    with tempfile.TemporaryDirectory() as directory:
        store = Chroma(
            collection_name="bench",
            embedding_function=embeddings,
            persist_directory=directory,
            client_settings=ChromaSettings(anonymized_telemetry=False, is_persistent=True, persist_directory=directory),
        )
        store.add_documents(documents)
        stored = len(store.get(include=[])["ids"])
    assert stored == len(documents)
    return {"chunks": len(documents), "pipeline_s": time.perf_counter() - started, "embedding_s": embeddings.seconds}


CHILDREN = {
    "newsdesk": newsdesk_child,
    "newsdesk-no-sentences": newsdesk_no_sentences_child,
    "langchain": langchain_child,
    "embedding": embedding_child,
}


if __name__ == "__main__":
    sys.exit(main())
