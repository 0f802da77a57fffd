"""Ingest benchmark: a fresh store, the whole articles JSONL, figures printed.

    python bench/ingest.py [ARTICLES_JSONL] [--skip-baseline]

Reports articles/s, chunks/s, embedding time vs total (the overhead ratio), an
embedding-only pass over the same texts (chunks and their sentences, as ingest embeds
them), re-ingest time of the unchanged corpus, and peak RSS. Default input: ../shared/data/realtimeqa/articles.jsonl.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from app.config import Settings
from app.embed import build_embedder
from app.ingest import _embedding_text, build_ingestor, version_sentences
from app.parse import parse_file
from app.store import ArticleVersion

DEFAULT_INPUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "realtimeqa" / "articles.jsonl"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("articles", nargs="?", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--skip-baseline", action="store_true", help="skip the embedding-only pass")
    args = parser.parse_args()
    if not args.articles.exists():
        print(f"skipped: {args.articles} not found")
        return 0

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir))
        embedder = build_embedder(settings)
        loaded = time.perf_counter()
        embedder.embed_query("warm up")
        model_seconds = time.perf_counter() - loaded

        started = time.perf_counter()
        parsed = parse_file(args.articles, max_bytes=settings.max_file_bytes)
        ingestor = build_ingestor(settings, embedder)
        report = ingestor.ingest(parsed.articles)
        total = time.perf_counter() - started
        chunks = report.chunks_embedded

        baseline = None
        if not args.skip_baseline:
            texts = []
            for article in parsed.articles:
                version = ArticleVersion(article, ingestor.fingerprint(article), ingestor.chunker.chunk(article))
                texts += [_embedding_text(article, c) for c in version.chunks]
                texts += list(version_sentences(version).values())
            began = time.perf_counter()
            for offset in range(0, len(texts), ingestor.flush_chunks):
                embedder.embed_documents(texts[offset : offset + ingestor.flush_chunks])
            baseline = time.perf_counter() - began

        began = time.perf_counter()
        again = build_ingestor(settings, embedder).ingest(
            parse_file(args.articles, max_bytes=settings.max_file_bytes).articles
        )
        reingest = time.perf_counter() - began
        assert again.chunks_embedded == 0 and again.unchanged == report.added

    figures = {
        "articles": report.added,
        "chunks": chunks,
        "sentences": report.sentences_embedded,
        "parse_errors": len(parsed.errors),
        "model_load_s": round(model_seconds, 2),
        "ingest_total_s": round(total, 2),
        "embedding_in_ingest_s": round(report.embedding_seconds, 2),
        "overhead_ratio_in_run": round(total / report.embedding_seconds, 3),
        "embedding_only_s": round(baseline, 2) if baseline else None,
        "total_vs_embedding_only": round(total / baseline, 3) if baseline else None,
        "articles_per_s": round(report.added / total, 2),
        "chunks_per_s": round(chunks / total, 2),
        "reingest_unchanged_s": round(reingest, 2),
        "reingest_share_of_first": round(reingest / total, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
