"""How many bullets a brief gets when none is asked for: the Quick Looks list follows the article.

One bullet per ``WORDS_PER_BULLET`` words of the briefed sentences, within ``MIN_BULLETS`` to
``MAX_BULLETS`` (Quick Looks hold 4 to 8), and above 4 never more than the article's distinct
facts (sentences adding a figure or a name no earlier sentence gave): a long but repetitive
article is not padded.

``WORDS_PER_BULLET`` was fitted on the bundled ``corpus/`` (14 articles written for newsdesk,
513-817 words briefed, each with its own Quick Looks list of 7 or 8 bullets), never on the
customer's sample, by ``fit_words_per_bullet``: the rule's mean absolute error against the
corpus lists is lowest, 0.36 bullets, from 77.7 to 78.9 words per bullet (the widest such
range), and 78.3 is its middle; ``tests/test_brief.py`` re-runs the fit. The corpus spans a
narrow range of lengths, so it pins the ratio better than the slope: a constant 7 errs by
0.21 there, but would neither shorten a 200-word story nor lengthen a 1,000-word one. The
sample is only measured with it (``newsdesk evals briefs``), not fitted to it.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.brief import Document
from app.text.sentences import split_sentences
from app.verify import facts_in

WORDS_PER_BULLET = 78.3
MIN_BULLETS = 4
MAX_BULLETS = 8


def default_bullets(documents: list[Document]) -> int:
    """The bullet count for these documents: their length in bullets, capped by their distinct facts."""
    words, facts = measure(documents)
    return _clip(words / WORDS_PER_BULLET, facts)


def measure(documents: list[Document]) -> tuple[int, int]:
    """Words of the briefed sentences, and how many of them add a figure or a name."""
    words = facts = 0
    for doc in documents:
        seen: set[str] = set()
        context = doc.article.text[:5000]
        for start, end in doc.spans:
            for sentence in split_sentences(doc.article.text, start, end):
                words += len(sentence.text.split())
                found = facts_in(sentence.text, context)
                items = {f"n:{n:g}" for n in found.numbers} | {f"e:{e}" for e in found.entities}
                facts += bool(items - seen)
                seen |= items
    return words, facts


def fit_words_per_bullet(examples: Sequence[tuple[list[Document], int]]) -> tuple[float, float, float]:
    """The range of words per bullet (in steps of 0.1) at which the rule's mean absolute error against
    reference list lengths is lowest, as (low, high, error); the widest such range when several tie."""
    measured = [(measure(documents), length) for documents, length in examples]
    errors: list[tuple[float, float]] = []
    for tenths in range(200, 3001):
        ratio = tenths / 10
        total = sum(abs(_clip(words / ratio, facts) - length) for (words, facts), length in measured)
        errors.append((ratio, total / len(measured)))
    best = min(error for _, error in errors)
    runs: list[list[float]] = []
    for ratio, error in errors:
        if error != best:
            continue
        if runs and abs(runs[-1][-1] + 0.1 - ratio) < 1e-9:
            runs[-1].append(ratio)
        else:
            runs.append([ratio])
    widest = max(runs, key=len)
    return widest[0], widest[-1], best


def _clip(bullets: float, facts: int) -> int:
    return max(MIN_BULLETS, min(MAX_BULLETS, int(bullets + 0.5), facts))
