"""The figures of bullets compared: the same fact stated twice, or two claims about one thing.

A figure is a number of the text other than a date or a year. What a figure counts is read
from the content words around it ("66 of the drones" counts drones). Two statements
state the same fact when they share a figure that counts the same thing; they disagree when
each gives a figure the other lacks for the same thing ("three civilians" and "at least four
civilians") and none in common. Both engines use these to keep one bullet per fact, cite only sources that
support a bullet, and name disagreeing sources in a note, claim by claim.
"""

from __future__ import annotations

from collections.abc import Callable

from app.brief import Bullet
from app.text.dates import DAY_OF_MONTH
from app.text.numbers import numbers_in
from app.text.terms import STOPWORDS

WORDS_BEFORE, WORDS_AFTER = 1, 4  # words around a figure that say what it counts (and what happened)
_PUNCTUATION = ",.;:()\"'“”’"


def figures(text: str) -> set[float]:
    """The numbers of ``text``, dates and years left out."""
    return {n for n in numbers_in(DAY_OF_MONTH.sub(" ", text)) if not 1900 <= n <= 2100}


def counted(text: str, values: set[float]) -> set[str]:
    """Stems of the content words next to the figures ``values`` in ``text`` (the word before, the next
    few after): what the figures count and what happened to it ("killed three people")."""
    words = [w.strip(_PUNCTUATION).lower() for w in text.split()]
    out: set[str] = set()
    for k, word in enumerate(words):
        if not numbers_in(word, lenient=True) & values:
            continue
        near = words[max(0, k - WORDS_BEFORE) : k] + words[k + 1 : k + 1 + WORDS_AFTER]
        out |= {w[:5] for w in near if w and w not in STOPWORDS and not numbers_in(w, lenient=True)}
    return out


def differing_figures(a: str, b: str) -> bool:
    """Whether two statements give different figures for the same thing: no figure in common (one
    they share makes the rest added detail), and figures counting the same thing."""
    first, second = figures(a), figures(b)
    return bool(first and second and not first & second and counted(a, first) & counted(b, second))


def both_give(a: str, a_article: str, b: str, b_article: str) -> bool:
    """Whether each article also gives the figures only the other's statement has: then the two
    statements are two facts both articles report ("114 drones fired", "45 drones intercepted"),
    not a disagreement between them."""
    first, second = figures(a), figures(b)
    return second - first <= figures(a_article) and first - second <= figures(b_article)


def same_fact(a: str, b: str) -> bool:
    """Whether two statements share a figure that counts the same thing ("66 of 114 drones", "66 of the drones")."""
    return any(counted(a, {value}) & counted(b, {value}) for value in figures(a) & figures(b))


def source_label(source: str, published_at: str, name: str = "") -> str:
    """Where a claim comes from, as notes name it: "Harbor Ledger, 2025-04-27" (``name``, a title or an id,
    when the source is not known)."""
    return ", ".join(part for part in (source or name, published_at[:10]) if part)


def disagreement(first: tuple[str, str], second: tuple[str, str]) -> str:
    """A note naming two differing claims whole, each with its source: (where, claim) pairs."""
    return f'sources differ: {first[0]}: "{first[1]}"; {second[0]}: "{second[1]}"'


def same_bullet(a: Bullet, b: Bullet) -> bool:
    """Two bullets stating one fact: the same figure of the same thing, or a sentence both cite."""
    spans = {(c.article_id, c.start, c.end) for c in a.citations}
    return same_fact(a.text, b.text) or any((c.article_id, c.start, c.end) in spans for c in b.citations)


def add_distinct(kept: list[Bullet], new: Bullet, same: Callable[[Bullet, Bullet], bool] = same_bullet) -> None:
    """Append ``new`` unless a kept bullet states the same fact (``same``); of the two, the better-cited
    one (more articles, then more citations) stays, in the earlier one's place."""
    for k, old in enumerate(kept):
        if same(old, new):
            if _citing(new) > _citing(old):
                kept[k] = new
            return
    kept.append(new)


def _citing(bullet: Bullet) -> tuple[int, int]:
    return len({c.article_id for c in bullet.citations}), len(bullet.citations)
