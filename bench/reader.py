"""The learned reader's time per question in float32 and in int8 (``NEWSDESK_READER_PRECISION``), side by
side in one run, and how often the two put the same candidate first.

    .venv/bin/python bench/reader.py [--rounds 3] [--candidates 24]

Each question of ``evals/corpus/questions.yaml`` is read with ``--candidates`` sentences of our own
``corpus/`` (its first-listed article's sentences first, then others), as the engine reads its
shortlist: the question and every candidate through the model, none cached. The two readers take
turns question by question, ``--rounds`` times; prints the median milliseconds per question of each,
their ratio, and the top-1 agreement. Quality is measured by the evals (README, The learned reader).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import PROJECT_ROOT
from app.evals.labels import load_questions
from app.parse import parse_file
from app.reader import LearnedReader, candidate_text
from app.text.sentences import MIN_ANSWER_WORDS, split_sentences


def corpus_sentences() -> dict[str, list[str]]:
    """Article id -> its reader candidates (``title | sentence``)."""
    found: dict[str, list[str]] = {}
    for path in sorted((PROJECT_ROOT / "corpus").glob("*")):
        for article in parse_file(path, max_bytes=10_000_000).articles:
            sentences = [s.text for s in split_sentences(article.text) if len(s.text.split()) >= MIN_ANSWER_WORDS]
            found[article.id] = [candidate_text(article.title, s) for s in sentences]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="passes over the questions, each reader in turn")
    parser.add_argument("--candidates", type=int, default=24, help="candidates read per question")
    args = parser.parse_args()
    sentences = corpus_sentences()
    everything = [s for article in sentences.values() for s in article]
    cases = []
    for q in load_questions(PROJECT_ROOT / "evals" / "corpus" / "questions.yaml"):
        own = sentences.get(q.evidence_article_ids[0], []) if q.evidence_article_ids else []
        cases.append((q.question, (own + [s for s in everything if s not in own])[: args.candidates]))
    readers = {"float32": LearnedReader(cache_size=0), "int8": LearnedReader(cache_size=0, quantized=True)}
    for reader in readers.values():
        reader.score("warm-up", everything[:8])
    seconds: dict[str, list[float]] = {name: [] for name in readers}
    firsts: dict[str, list[int]] = {name: [] for name in readers}
    for round_number in range(args.rounds):
        for question, candidates in cases:
            for name, reader in readers.items():
                started = time.perf_counter()
                scores = reader.score(question, candidates)
                seconds[name].append(time.perf_counter() - started)
                if round_number == 0:
                    firsts[name].append(max(range(len(scores)), key=scores.__getitem__))
    print(f"{len(cases)} questions x {args.candidates} candidates, {args.rounds} rounds, taking turns")
    for name, values in seconds.items():
        print(f"  {name:<8} p50 {statistics.median(values) * 1000:6.1f} ms per question")
    ratio = statistics.median(seconds["int8"]) / statistics.median(seconds["float32"])
    agree = sum(a == b for a, b in zip(firsts["float32"], firsts["int8"], strict=True)) / len(cases)
    print(f"int8 / float32: {ratio:.2f}x; the same candidate first for {agree:.0%} of the questions")
    print(f"load average {os.getloadavg()[0]:.1f} (other work on the machine slows both)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
