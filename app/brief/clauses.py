"""Shortening a sentence to Quick Looks length by cutting whole clauses, never by rewording.

A sentence becomes one or more verbatim pieces (character spans of the article text),
joined with a space (or nothing before punctuation). Cuts, tried in this order until the
bullet is at most ``max_words`` long:

1. parentheticals: "(500 square miles)", paired dashes "— the first in a decade —";
2. a short leading clause without attribution: "In his statement, ", "However, ",
   "On Saturday, " (the rest must still be a sentence of at least ``MIN_WORDS``);
3. a trailing clause: ", which ...", ", who ...", ", hailing it as ...", "; ...",
   " — ..." (the longest result within the limit is kept).

Every cut must leave a complete statement (``app.verify.incomplete_statement``): a cut that
leaves "The Academy said John Clarke of the University of California, Berkeley" (the verb of
what was said cut away) is not made.

Attribution is never cut: a leading clause that says who said it ("According to the
governor, ") stays, a trailing ", police said." is kept even when the clause before it
goes, and a tail that disputes or denies ("; Ukraine disputes it") is not dropped.
"""

from __future__ import annotations

import re

from app.verify import incomplete_statement

MIN_WORDS = 6
_ATTRIBUTION = re.compile(
    r"\b(said|says|say|told|tells|according|claim(?:s|ed)?|report(?:s|ed)?|announc\w+|insist\w*|"
    r"disput\w*|den(?:y|ies|ied)|reject\w*|confirm\w*|warn\w*|add(?:s|ed)|acknowledg\w*|admit\w*|stated?)\b",
    re.IGNORECASE,
)
_LEADING = re.compile(
    r"^(?:(?:however|meanwhile|still|instead|moreover|also|now|then|yet|but|and|so|separately|earlier|later|"
    r"overnight|previously|last\s+\w+|this\s+\w+|in\s+addition|on\s+the\s+other\s+hand)"
    r"|(?:[a-z]+ing\b[^,;:]{0,80}?)"
    r"|(?:in|on|at|during|after|before|despite|following|since|with|without|amid|as|while|when|although|though|"
    r"for|by|under|over|across|throughout|within|until|once|if|because|from|to|unlike|like)\b[^,;:]{0,80}?)"
    r",\s+",
    re.IGNORECASE,
)
_TRAILING_START = re.compile(
    r"(?:,\s+(?=(?:which|who|whom|whose|where|while|as|after|before|although|though|because|since|with|"
    r"including|amid|despite|until|when|even|making|leaving|bringing|prompting|sparking|a|an|the|one|"
    r"both|its|his|her|their|[a-z]+ing)\b)|,?\s+but\s+|;\s+|\s+[—–]\s+|\s+--\s+)"
)
_TAIL_ATTRIBUTION = re.compile(
    r",\s+(?:according\s+to\s+[^,;]{1,80}|(?:[^,;]{1,60}\s)?(?:said|says|told\s+[^,;]{1,40}|reported|added|claimed)"
    r"(?:\s+[^,;]{1,40})?)[.!?]?['\"’”]?$",
    re.IGNORECASE,
)
_PARENTHETICAL = re.compile(r"\s*\([^()]{1,120}\)|\s+[—–]\s+[^—–]{1,120}\s+[—–](?=\s)")
_INSERTED = re.compile(
    r"(?P<relative>,\s+(?:who|which|whose|where)\b[^,;]{1,120},)(?=\s+[a-z])"  # "Trump, who had posted ..., said"
    r"|\b[A-Z][\w’'-]+(?P<appositive>,\s+(?:the\s+)?[A-Z][^,;\d]{2,80},)"  # "Gerasimov, Chief of ..., delivered"
    r"(?=\s+(?!(?:the|a|an|and|or|but|in|on|at|of|to)\b)[a-z]+\b)"
)
_DATELINE = re.compile(
    r"\s*(?:\(CNN\)|[A-Z][A-Z .'-]{2,40}(?:,\s+[A-Z][\w .]{1,30})?(?:\s+\(\w+\))?)\s*(?:—|–|--|-)\s+"
)
_WORD = re.compile(r"\S+")
# A head starting like this is a dependent clause: cutting what follows it leaves no sentence.
_SUBORDINATE = re.compile(
    r"(?:whatever|whoever|whether|while|although|though|if|unless|as|when|whenever|because|since|despite|"
    r"after|before|until|once|with|without|amid|even)\b",
    re.IGNORECASE,
)
_FIGURE = re.compile(r"\d[\d,.]*\d|\d")

Pieces = list[tuple[int, int]]


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def join_pieces(text: str, pieces: Pieces) -> str:
    """The bullet text: the verbatim pieces, joined by a space (none before punctuation)."""
    out = ""
    for start, end in pieces:
        piece = text[start:end]
        out = piece if not out else out + ("" if piece[:1] in ".,;:!?" else " ") + piece
    return out


def shorten(text: str, start: int, end: int, max_words: int) -> Pieces:
    """Pieces of ``text[start:end]`` (one sentence) forming a bullet of at most ``max_words`` words
    when whole clauses allow; otherwise the shortest such bullet of at least ``MIN_WORDS``.
    A dateline ("KYIV, Ukraine — ", "(CNN) -- ") is always cut: it is not part of any fact."""
    dateline = _DATELINE.match(text, start, end)
    if dateline and word_count(text[dateline.end() : end]) >= MIN_WORDS:
        start = dateline.end()
    pieces: Pieces = [(start, end)]
    if word_count(text[start:end]) <= max_words:
        return pieces
    complete = _complete(text, pieces)
    for cut in (_drop_parentheticals, _drop_leading, _drop_inserted):
        shorter = cut(text, pieces)
        if _complete(text, shorter) or not complete:
            pieces = shorter
        if _words(text, pieces) <= max_words:
            return pieces
    return _drop_trailing(text, pieces, max_words, complete=complete)


def _complete(text: str, pieces: Pieces) -> bool:
    return incomplete_statement(join_pieces(text, pieces)) is None


def _words(text: str, pieces: Pieces) -> int:
    return sum(word_count(text[s:e]) for s, e in pieces)


def _drop_parentheticals(text: str, pieces: Pieces) -> Pieces:
    return _drop_matches(text, pieces, _PARENTHETICAL)


def _drop_inserted(text: str, pieces: Pieces) -> Pieces:
    """Relative clauses and appositives between commas: "Trump, who had earlier posted ..., said"."""
    return _drop_matches(text, pieces, _INSERTED)


def _drop_matches(text: str, pieces: Pieces, pattern: re.Pattern[str]) -> Pieces:
    out: Pieces = []
    for start, end in pieces:
        cursor = start
        for match in pattern.finditer(text, start, end):
            group = next((name for name, value in match.groupdict().items() if value), None)
            cut_start, cut_end = match.span(group) if group else match.span()
            if _ATTRIBUTION.search(text, cut_start, cut_end):
                continue
            if cut_start > cursor:
                out.append((cursor, cut_start))
            cursor = cut_end
        if cursor < end:
            out.append((cursor, end))
    out = _trim(text, [(s, e) for s, e in out if text[s:e].strip()])
    return out if out and _words(text, out) >= MIN_WORDS else pieces


def _drop_leading(text: str, pieces: Pieces) -> Pieces:
    first_start, first_end = pieces[0]
    match = _LEADING.match(text[first_start:first_end])
    if not match or _ATTRIBUTION.search(match.group()) or word_count(match.group()) > 12:
        return pieces
    rest = first_start + match.end()
    remaining = [(rest, first_end), *pieces[1:]]
    if _words(text, remaining) < MIN_WORDS or not text[rest : rest + 1].isupper():
        return pieces
    return remaining


def _drop_trailing(text: str, pieces: Pieces, max_words: int, *, complete: bool) -> Pieces:
    """Cut the last piece at a clause boundary, keeping a trailing attribution (and, when the sentence
    is ``complete``, a complete statement)."""
    ending: Pieces = []
    if len(pieces) > 1 and not any(c.isalnum() for c in text[pieces[-1][0] : pieces[-1][1]]):
        ending, pieces = pieces[-1:], pieces[:-1]  # the full stop left after a cut parenthetical
    last_start, last_end = pieces[-1]
    tail: Pieces = []
    attribution = _TAIL_ATTRIBUTION.search(text, last_start, last_end)
    if attribution and attribution.start() > last_start:
        tail = [(attribution.start() + 1, last_end)]  # after the comma: "police said."
        tail = _trim(text, tail)
        last_end = attribution.start()
    head = pieces[:-1]
    options: list[Pieces] = []
    for match in _TRAILING_START.finditer(text, last_start, last_end):
        if _ATTRIBUTION.search(text, match.start(), last_end) and not tail:
            continue  # the tail says who claims or disputes it: keep it
        option = _trim(text, [*head, (last_start, match.start())])
        if _words(text, option) >= MIN_WORDS and not _SUBORDINATE.match(text, option[0][0]):
            option += [_attach(text, tail[0])] if tail else []
            if _complete(text, option) or not complete:
                options.append(option)
    whole = pieces + ending
    if not options:
        return whole
    # Prefer cuts that keep every figure of the sentence: a bullet is usually about its number.
    figures = _figures(text, whole)
    keeping = [o for o in options if _figures(text, o) >= figures]
    within = [o for o in options if _words(text, o) <= max_words]
    if keeping_within := [o for o in keeping if _words(text, o) <= max_words]:
        return max(keeping_within, key=lambda o: _words(text, o))
    if figures:
        return min([*keeping, whole], key=lambda o: _words(text, o))
    if within:
        return max(within, key=lambda o: _words(text, o))
    return min(options, key=lambda o: _words(text, o))


def _figures(text: str, pieces: Pieces) -> set[str]:
    return {m.group() for s, e in pieces for m in _FIGURE.finditer(text, s, e)}


def _attach(text: str, piece: tuple[int, int]) -> tuple[int, int]:
    """A kept trailing attribution starts at the comma before it: ", police said."."""
    start, end = piece
    comma = text.rfind(",", 0, start)
    return (comma, end) if comma >= 0 and not text[comma + 1 : start].strip() else piece


def _trim(text: str, pieces: Pieces) -> Pieces:
    out: Pieces = []
    for start, end in pieces:
        while start < end and text[start].isspace():
            start += 1
        while end > start and (text[end - 1].isspace() or text[end - 1] in ",;:—–-"):
            end -= 1
        if end > start:
            out.append((start, end))
    return out
