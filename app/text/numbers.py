"""Numbers in text: number words and two readers.

``numbers_in`` (the verifier's and the briefs') reads figures as values: "1,300" = 1300,
"thirty-one" = 31, "1.3 million" = 1,300,000, ISO dates as their parts. ``plain_numbers_in``
(the extractive engine's answer-type cue, fitted with it) reads digit runs and single number
words as they stand.
"""

from __future__ import annotations

import re

NUMBER_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "dozen": 12,
}
_UNITS = {word: value for word, value in NUMBER_WORDS.items() if value < 20 or word == "dozen"}
_TENS = {word: value for word, value in NUMBER_WORDS.items() if 20 <= value < 100 and word != "dozen"}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000, "bn": 1_000_000_000}
_SCALES["trillion"] = 1_000_000_000_000
_NUMBER_WORD = "|".join([*_UNITS, *_TENS, *_SCALES])
_FIGURE = re.compile(
    r"(?<![\w.,-])(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\w-]*[A-Za-z])"
    rf"|\b(?P<word>(?:{_NUMBER_WORD})(?:-(?:{_NUMBER_WORD}))?)\b",
    re.IGNORECASE,
)
_SCALE_AFTER = re.compile(r"^\s*(hundred|thousand|million|billion|bn|trillion)\b", re.IGNORECASE)
ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_PLAIN_NUMBER = re.compile(r"\b\d[\d,.]*\b|\b(" + "|".join(NUMBER_WORDS) + r"|million|billion|thousand)\b", re.I)


def numbers_in(text: str, *, lenient: bool = False) -> set[float]:
    """Numeric values in ``text``. ``lenient`` (for spans) also keeps each figure without its scale word,
    so a claim of "1.3" is found in "1.3 million"; "one" counts only when lenient (it is usually a pronoun)."""
    values: set[float] = set()
    text = ISO_DATE.sub(lambda m: f"{m.group(1)} {int(m.group(2))} {int(m.group(3))}", text)
    for match in _FIGURE.finditer(text):
        if match.group("digits"):
            value = float(match.group("digits").replace(",", ""))
        else:
            word = match.group("word").lower()
            parsed = word_value(word)
            if parsed is None or (word == "one" and not lenient):
                continue
            if word in _SCALES:  # a bare "million" or "hundred": only as the scale of a figure before it
                continue
            value = parsed
        scale = _SCALE_AFTER.match(text[match.end() :])
        if scale:
            if lenient:
                values.add(value)
            value *= _SCALES[scale.group(1).lower()]
        values.add(value)
    return values


def word_value(word: str) -> float | None:
    """The value of a number word or hyphenated compound ("thirty-one"); None for any other word."""
    total = 0.0
    for part in word.split("-"):
        if part in _UNITS:
            total += _UNITS[part]
        elif part in _TENS:
            total += _TENS[part]
        elif part in _SCALES:
            total = (total or 1) * _SCALES[part]
        else:
            return None
    return total


def plain_numbers_in(text: str) -> set[float]:
    """Digit runs and single number words ("three", "dozen") as values; scale words are not applied."""
    values = set()
    for match in _PLAIN_NUMBER.finditer(text):
        token = match.group().lower().rstrip(".,")
        if token in NUMBER_WORDS:
            values.add(float(NUMBER_WORDS[token]))
        else:
            try:
                values.add(float(token.replace(",", "")))
            except ValueError:
                continue
    return values
