"""Quick Looks brief quality and latency (extractive engine).

    python bench/brief.py [--bullets N] [--max-words W] [--kursk-bullets N] [--runs R]

Prints, from ../shared/data (skipped when absent):
- ROUGE-1/2/Lsum F1 x100 of the brief vs Lead-3 (first three sentences by the app's splitter,
  scored in the same run) against the reference highlights of cnndm_highlights/articles_dev.jsonl;
- the grounding rate (bullets the verifier supports / bullets produced);
- Quick Looks fact coverage of the sample article (brief of its Deep Look body, Quick Looks removed);
- latency p50/p95 of one-article briefs (model loaded, warm).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from app.brief import Brief, Document
from app.brief.eval import fact_coverage, lead, rouge
from app.brief.extractive import ExtractiveBriefEngine
from app.config import Settings
from app.embed import build_embedder
from app.evals.suites import load_reference_articles
from app.parse import parse_file
from app.text.sentences import split_sentences

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CNNDM = SHARED / "cnndm_highlights" / "articles_dev.jsonl"
SAMPLE = SHARED / "seed" / "kursk_newslooks.txt"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bullets", type=int, default=3, help="bullets per brief for the CNN/DM ROUGE run")
    parser.add_argument("--max-words", type=int, default=None, help="clause-cut bullets to this many words")
    parser.add_argument("--kursk-bullets", type=int, default=8, help="bullets for the sample article")
    parser.add_argument("--runs", type=int, default=3, help="timed passes over the sample article")
    args = parser.parse_args()
    settings = Settings()
    embedder = build_embedder(settings)
    embedder.embed_query("warm up")
    engine = ExtractiveBriefEngine(
        embedder, max_words=args.max_words or settings.brief_max_words, encoding=settings.tokenizer
    )
    produced = supported = 0
    latencies: list[float] = []
    dropped: list[str] = []

    def timed(document: Document, bullets: int) -> Brief:
        nonlocal produced, supported
        started = time.perf_counter()
        brief = engine.brief([document], bullets=bullets, kind="article", subject=document.article.id)
        latencies.append(time.perf_counter() - started)
        produced += len(brief.bullets) + len(brief.dropped)
        supported += len(brief.bullets)
        dropped.extend(f"{d.text!r}: {d.reason}" for d in brief.dropped)
        return brief

    if CNNDM.exists():
        records = load_reference_articles(CNNDM)
        briefs = [[b.text for b in timed(Document(a), args.bullets).bullets] for a, _ in records]
        references = [highlights for _, highlights in records]
        ours = rouge(briefs, references)
        baseline = rouge([lead(a.text, 3) for a, _ in records], references)
        words = statistics.mean(len(b.split()) for brief in briefs for b in brief)
        print(f"CNN/DM dev ({len(records)} articles), {args.bullets} bullets, mean {words:.1f} words per bullet")
        print(f"{'':<10}{'R1':>8}{'R2':>8}{'RLsum':>8}")
        for label, scores in (("brief", ours), ("Lead-3", baseline)):
            print(f"{label:<10}" + "".join(f"{scores[k]:>8.2f}" for k in ("rouge1", "rouge2", "rougeLsum")))
        print(f"{'delta':<10}" + "".join(f"{ours[k] - baseline[k]:>+8.2f}" for k in ("rouge1", "rouge2", "rougeLsum")))
    else:
        print(f"skipped ROUGE: {CNNDM} not found")

    if SAMPLE.exists():
        article = parse_file(SAMPLE, max_bytes=settings.max_file_bytes).articles[0]
        body = tuple((s.start, s.end) for s in article.sections if s.name == "body")
        document = Document(article, body)
        for _ in range(args.runs):
            brief = timed(document, args.kursk_bullets)
        covered = fact_coverage([b.text for b in brief.bullets], article.quick_looks, engine.verifier)
        print(f"\nSample article, {args.kursk_bullets} bullets of its Deep Look body:")
        for bullet in brief.bullets:
            print(f"  - {bullet.text}")
        print(f"Quick Looks facts covered: {sum(c.covered for c in covered)}/{len(covered)}")
        for c in covered:
            print(f"  [{'x' if c.covered else ' '}] {c.reference}  ({c.similarity:.2f})")
    else:
        print(f"skipped coverage: {SAMPLE} not found")

    if produced:
        print(f"\ngrounding rate: {supported}/{produced} = {supported / produced:.1%} (dropped bullets are replaced)")
        for line in dropped:
            print(f"  dropped {line}")
        tail = latencies[1:] or latencies  # the first call pays one-off costs
        print(
            f"one-article brief latency over {len(tail)} briefs: p50 {statistics.median(tail) * 1000:.0f} ms, "
            f"p95 {percentile(tail, 0.95) * 1000:.0f} ms"
        )
        if SAMPLE.exists():
            sentences = [s.text for s in split_sentences(article.text)]
            started = time.perf_counter()
            embedder.embed_documents(sentences)
            alone = (time.perf_counter() - started) * 1000
            print(f"(embedding the sample's {len(sentences)} sentences alone, same machine: {alone:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
