"""Sentences with exact character spans: ``text[s.start:s.end] == s.text``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_ABBREVIATION_TEXT = """
    mr mrs ms dr prof sen rep gov gen lt col sgt capt cmdr adm maj pres st jr sr sen inc corp co ltd
    llc bros vs etc no nos vol fig approx est dept univ ave blvd rd mt ft jan feb mar apr jun jul
    aug sep sept oct nov dec mon tue tues wed thu thurs fri sat sun u.s u.k u.n e.u a.m p.m i.e e.g
    d.c u.s.a ph.d
"""
ABBREVIATIONS = frozenset(_ABBREVIATION_TEXT.split())
# A boundary: terminal punctuation, optional closing quotes/brackets, whitespace, then
# something that can start a sentence.
_BOUNDARY = re.compile(r"""[.!?]+['"’”)\]]*(?=\s+['"‘“(\[]?[A-Z0-9])""")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)\.$")


MIN_ANSWER_WORDS = 4


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    text: str


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Sentence]:
    """Sentences of text[start:end]; paragraph breaks always end a sentence."""
    end = len(text) if end is None else end
    sentences: list[Sentence] = []
    for para_start, para_end in _paragraphs(text, start, end):
        cursor = para_start
        paragraph = text[para_start:para_end]
        for match in _BOUNDARY.finditer(paragraph):
            cut = para_start + match.end()
            if _is_abbreviation(text[cursor:cut]):
                continue
            sentences.extend(_trimmed(text, cursor, cut))
            cursor = cut
        sentences.extend(_trimmed(text, cursor, para_end))
    return sentences


def answer_sentences(text: str) -> list[Sentence]:
    """The sentences of a chunk that can answer a question (``MIN_ANSWER_WORDS`` words or more):
    their vectors are stored at ingest, and the extractive engine picks among them."""
    return [s for s in split_sentences(text) if len(s.text.split()) >= MIN_ANSWER_WORDS]


def _paragraphs(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    cursor = start
    for match in re.finditer(r"\n", text[start:end]):
        yield cursor, start + match.start()
        cursor = start + match.end()
    yield cursor, end


def _is_abbreviation(candidate: str) -> bool:
    stripped = candidate.rstrip()
    if not stripped.endswith("."):
        return False
    match = _WORD_BEFORE.search(stripped)
    if not match:
        return False
    word = match.group(1)
    if len(word) == 1 and word.isupper():  # an initial: "J. Mansour"
        return True
    return word.lower().rstrip(".") in ABBREVIATIONS


def _trimmed(text: str, start: int, end: int) -> list[Sentence]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [Sentence(start, end, text[start:end])] if end > start else []
