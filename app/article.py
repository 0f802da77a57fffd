"""The records that flow through the pipeline: Article in, Chunk out."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Section:
    """A named character range of ``Article.text`` (summary, body, a Markdown heading)."""

    name: str
    start: int
    end: int


@dataclass
class Article:
    id: str
    title: str
    text: str
    sections: list[Section]
    source: str = ""
    url: str = ""
    published_at: str = ""
    author: str = ""
    dateline: str = ""
    summary: str = ""
    quick_looks: list[str] = field(default_factory=list)
    origin: str = ""

    @property
    def content_hash(self) -> str:
        """Changes whenever anything we store about the article changes."""
        payload = asdict(self)
        payload.pop("origin")
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    @property
    def published_ts(self) -> int | None:
        return date_to_timestamp(self.published_at)

    def section_text(self, name: str) -> str:
        return "\n\n".join(self.text[s.start : s.end] for s in self.sections if s.name == name)


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences from one section; ``text == article.text[start:end]``."""

    article_id: str
    index: int
    section: str
    start: int
    end: int
    text: str
    tokens: int


def normalize_text(raw: str) -> str:
    """Unicode NFC, Unix newlines, no control or zero-width characters, no trailing blanks."""
    text = unicodedata.normalize("NFC", raw).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text).replace("\t", " ")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def short_hash(value: str, length: int = 16) -> str:
    return hashlib.sha1(value.encode()).hexdigest()[:length]


def make_article_id(explicit: str | None, url: str, title: str, text: str) -> str:
    """Stable id: the record's own id when safe, else from the URL, else from the content."""
    if explicit:
        explicit = explicit.strip()
        return explicit if _SAFE_ID.match(explicit) else f"i-{short_hash(explicit)}"
    if url:
        return f"u-{short_hash(canonical_url(url))}"
    return f"h-{short_hash(title + chr(0) + text)}"


def canonical_url(url: str) -> str:
    url = url.strip().split("#", 1)[0]
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.rstrip("/")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}".rstrip("/")


def normalize_date(value: str | date | None) -> str:
    """ISO date (``2025-04-26``) or UTC datetime; '' when absent. Raises ValueError if unreadable."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        parsed: date | datetime = value
    elif isinstance(value, date):
        return value.isoformat()
    else:
        text = str(value).strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text).isoformat()
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert isinstance(parsed, datetime)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat()


def date_to_timestamp(value: str) -> int | None:
    if not value:
        return None
    if len(value) == 10:
        return int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp())
    return int(datetime.fromisoformat(value).timestamp())
