"""Words of a text: stopwords, query terms, and the two stemmers.

``tokens`` (Snowball, accents folded) makes the BM25 index's terms; ``light_stem`` (a few
plural and tense endings) is the extractive engine's, whose scoring weights were fitted with it.
"""

from __future__ import annotations

import re
import unicodedata

import Stemmer

_STOPWORD_TEXT = """
    a an and are as at be by did do does for from had has have he her his how in is it its of on or
    she that the their them they this to was were what when where which who whom whose why will with
    would you your about after before said says than then there these those into over under up down
    out not no yes can could should may might must also just more most many much some any all each
"""
# Words every news question uses ("this week", "recently announced") that match everything.
_NEWS_FILLER = (
    "week weeks recently recent latest new newly announced announce according following officially"
    " reportedly reported report called named known first"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split()) | frozenset(_NEWS_FILLER.split())
# Function words left out when the LLM engine matches a claim's words to a source sentence.
_OVERLAP_STOPWORD_TEXT = (
    "a an the and or but of to in on at by for with from as is are was were be been being it its this that "
    "these those he she they them his her their we you i not no do does did has have had will would can could "
    "said says say according than then there which who whom what when where why how also into over after before "
    "about more most some any all"
)
OVERLAP_STOPWORDS = frozenset(_OVERLAP_STOPWORD_TEXT.split())

_TERM = re.compile(r"[\w][\w'’.-]*[\w]|[\w]", re.UNICODE)
_TOKEN = re.compile(r"\w+", re.UNICODE)
_WORD = re.compile(r"\w+")
_STEMMER = Stemmer.Stemmer("english")
STOP_STEMS = frozenset(_STEMMER.stemWords(sorted(STOPWORDS)))


def query_terms(text: str) -> list[str]:
    """Content words of a question, lower-cased, in order, without repeats."""
    terms: list[str] = []
    for match in _TERM.finditer(text.lower()):
        word = match.group().replace("’", "'").strip(".'-")
        if word and word not in STOPWORDS and word not in terms:
            terms.append(word)
    return terms


def tokens(text: str) -> list[str]:
    """Index terms: lower-cased, accents removed, split on non-word characters, Snowball-stemmed."""
    folded = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return _STEMMER.stemWords(_TOKEN.findall(plain))  # type: ignore[no-any-return]


def query_stems(query: str) -> list[str]:
    """The Snowball stems of a query's terms, stopword stems left out, without repeats."""
    stems: list[str] = []
    for term in query_terms(query):
        stems.extend(s for s in tokens(term) if s not in STOP_STEMS and s not in stems)
    return stems


def light_stem(word: str) -> str:
    """``word`` without one plural, tense or adverb ending (the extractive engine's stemmer)."""
    for suffix in ("ies", "ing", "ed", "es", "s", "ly"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def light_stems(text: str) -> set[str]:
    return {light_stem(term) for term in query_terms(text)}


def overlap_words(text: str) -> set[str]:
    """Lower-cased words of ``text`` outside ``OVERLAP_STOPWORDS``."""
    return {w for w in _WORD.findall(text.lower()) if w not in OVERLAP_STOPWORDS}
