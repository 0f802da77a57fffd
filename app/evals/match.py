"""Matching answers against labels: case, punctuation and articles folded (as SQuAD's and
RealTimeQA's own scorers do), numbers compared as numbers ("1,300" = "1300", "three" = "3",
"4.0" = "4")."""

from __future__ import annotations

import re
from collections.abc import Iterable

from app.text.dates import MONTH_ABBREVIATIONS
from app.text.numbers import NUMBER_WORDS

_PUNCT = re.compile(r"[^\w\s]")
_ARTICLES = frozenset({"a", "an", "the"})


def normalize(text: str) -> str:
    text = text.lower().replace("’", "'")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(\d\.\d*?)0+\b", r"\1", text)  # 4.50 -> 4.5, 4.0 -> 4.
    text = re.sub(r"(?<=\d)\.(?!\d)", "", text)
    text = re.sub(r"(?<=\d)\.(?=\d)", "_", text)  # keep decimals whole: "92.7" must not match "92"
    words = [
        str(NUMBER_WORDS[w]) if w in NUMBER_WORDS else MONTH_ABBREVIATIONS.get(w, w)
        for w in _PUNCT.sub(" ", text).split()
        if w not in _ARTICLES
    ]
    return " ".join(words)


def contains_any(text: str, alternatives: Iterable[str]) -> bool:
    """True when the text contains one of the alternatives as whole words, after normalising."""
    haystack = f" {normalize(text)} "
    return any(f" {normalize(a)} " in haystack for a in alternatives if normalize(a))


def matched_groups(text: str, groups: Iterable[Iterable[str]]) -> list[bool]:
    """For each group of alternatives, whether the text mentions one of them."""
    return [contains_any(text, group) for group in groups]
