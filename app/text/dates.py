"""Month and weekday names, and the date patterns built from them."""

from __future__ import annotations

import re

from app.text.numbers import ISO_DATE

MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Written abbreviations and the month each stands for ("may" is its own).
MONTH_ABBREVIATIONS = {month[:3]: month for month in MONTHS if month != "may"} | {"sept": "september"}
_SHORT = {month: month[:3] for month in MONTHS}

# The extractive engine's "when" cue: a month, weekday, year or relative day (the abbreviations it was fitted with).
DATE_CUE = re.compile(
    rf"\b({'|'.join(MONTHS)}|jan|feb|aug|sept|oct|nov|dec|{'|'.join(WEEKDAYS)})\b"
    r"|\b(19|20)\d\d\b|\b(yesterday|today|tomorrow|last week|next week)\b",
    re.I,
)
# A month or weekday name, or a dotted abbreviation ("Aug."), as the verifier reads dates.
DATE_WORD = re.compile(
    r"\b(" + "|".join([*MONTHS, *WEEKDAYS]) + r"|(?:jan|feb|aug|sept?|oct|nov|dec)\.)",
    re.IGNORECASE,
)
# A capitalised month, full or abbreviated ("Sept.", "June"), for days of the month in briefs.
MONTH_NAME = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b\.?"
)
DAY_OF_MONTH = re.compile(
    rf"\b{MONTH_NAME}\s+\d{{1,2}}(?:st|nd|rd|th)?\b|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTH_NAME}"
)


def dates_in(text: str) -> set[str]:
    """Month and weekday names, normalised ("Aug." and "August" are both ``aug``)."""
    found = set()
    for match in DATE_WORD.finditer(text):
        word = match.group(1).lower().rstrip(".")
        if word == "may" and not match.group(1)[0].isupper():
            continue  # the verb
        found.add(_SHORT.get(word, word[:3] if word in MONTH_ABBREVIATIONS else word))
    for match in ISO_DATE.finditer(text):
        found.add(MONTHS[int(match.group(2)) - 1][:3] if 1 <= int(match.group(2)) <= 12 else "")
    found.discard("")
    return found
