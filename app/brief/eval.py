"""Scoring briefs: ROUGE against reference bullets, the Lead-3 baseline, and fact coverage.

Small functions the eval harness and ``bench/brief.py`` share. ROUGE is Google's
``rouge-score`` (stemming on), F1 x 100; ROUGE-Lsum takes one bullet per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean

from app.text.numbers import numbers_in
from app.text.sentences import split_sentences
from app.verify import Verifier, entities_in, missing_facts

ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")
COVERAGE_SIMILARITY = 0.6  # a brief bullet this close in meaning to a reference bullet...
COVERAGE_FACT_SHARE = 0.5  # ...holding at least this share of its numbers and names covers it


def lead(text: str, n: int = 3) -> list[str]:
    """The first ``n`` sentences by the app's sentence splitter (Lead-3 with n=3)."""
    return [s.text for s in split_sentences(text)[:n]]


def rouge(candidates: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/Lsum F1 x 100 over pairs of bullet lists."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals: dict[str, list[float]] = {name: [] for name in ROUGE_TYPES}
    for candidate, reference in zip(candidates, references, strict=True):
        scores = scorer.score("\n".join(reference), "\n".join(candidate))
        for name in ROUGE_TYPES:
            totals[name].append(scores[name].fmeasure * 100)
    return {name: mean(values) if values else 0.0 for name, values in totals.items()}


@dataclass(frozen=True)
class Coverage:
    reference: str
    covered: bool
    best: str
    similarity: float


def fact_coverage(bullets: Sequence[str], references: Sequence[str], verifier: Verifier) -> list[Coverage]:
    """Which reference facts a brief covers: a reference bullet is covered by a brief bullet that is
    close in meaning (``COVERAGE_SIMILARITY``) and holds at least half of its numbers and half of its names."""
    out = []
    for reference in references:
        numbers = numbers_in(reference)
        names = entities_in(reference)
        best, best_similarity, covered = "", 0.0, False
        for bullet in bullets:
            similarity = verifier.similarity(reference, bullet)
            if similarity > best_similarity:
                best, best_similarity = bullet, similarity
            missing = set(missing_facts(reference, bullet))
            number_share = _share(len(numbers), len([n for n in numbers if _format(n) in missing]))
            name_share = _share(len(names), len([n for n in names if n in missing]))
            if similarity >= COVERAGE_SIMILARITY and min(number_share, name_share) >= COVERAGE_FACT_SHARE:
                covered = True
                best, best_similarity = bullet, similarity
                break
        out.append(Coverage(reference, covered, best, best_similarity))
    return out


def _share(total: int, missing: int) -> float:
    return 1.0 if not total else 1 - missing / total


def _format(value: float) -> str:
    return f"{value:,.0f}" if value.is_integer() else f"{value:,}"
