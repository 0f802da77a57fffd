"""Quick Looks briefs: short bullets, one fact each, every bullet cited and checked by the verifier.

Two engines return the same ``Brief``: the extractive engine (offline default; verbatim
clause-cut source sentences, ``app.brief.extractive``) and the LLM engine (structured JSON
output citing numbered sources, ``app.brief.llm``). Both take ``Document``s: one article
(a stored one, or a file parsed without ingesting it) or the retrieved passages of a topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from app.answer import Citation, EngineName
from app.article import Article
from app.verify import Verdict

BriefKind = Literal["article", "file", "topic"]


@dataclass(frozen=True)
class Document:
    """An article and the character ranges of its text to brief (all sections when empty)."""

    article: Article
    ranges: tuple[tuple[int, int], ...] = ()
    relevance_query: str = ""

    @property
    def spans(self) -> list[tuple[int, int]]:
        if self.ranges:
            return list(self.ranges)
        return [(s.start, s.end) for s in self.article.sections] or [(0, len(self.article.text))]


@dataclass
class Bullet:
    """One fact. ``text`` is verbatim source text (extractive) or the model's wording (LLM);
    ``pieces`` are the exact spans of ``text`` in the first citation's article (extractive only)."""

    text: str
    citations: list[Citation]
    verdict: Verdict
    pieces: list[tuple[int, int]] = field(default_factory=list)
    score: float = 0.0
    event_date: str = ""
    note: str = ""


def number_citations(bullets: list[Bullet]) -> None:
    """Number the bullets' citations 1, 2, ... in reading order; a sentence cited again keeps its number."""
    numbers: dict[tuple[str, int, int], int] = {}
    for bullet in bullets:
        bullet.citations = [
            replace(c, number=numbers.setdefault((c.article_id, c.start, c.end), len(numbers) + 1))
            for c in bullet.citations
        ]


@dataclass(frozen=True)
class Dropped:
    """A bullet the verifier rejected, with its reason."""

    text: str
    reason: str
    citations: list[Citation] = field(default_factory=list)


@dataclass
class Brief:
    subject: str
    kind: BriefKind
    engine: EngineName
    bullets: list[Bullet]
    dropped: list[Dropped] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    degraded: bool = False
    covered: bool = True  # False: no article covers the topic; the first note says so, naming the closest

    @property
    def sources(self) -> list[Citation]:
        """Every citation once, by number."""
        seen: dict[int, Citation] = {}
        for bullet in self.bullets:
            for citation in bullet.citations:
                seen.setdefault(citation.number, citation)
        return [seen[n] for n in sorted(seen)]


def not_covered(brief: Brief, message: str) -> Brief:
    """``brief`` as the refusal of a topic no article covers: no bullets, the reason first among the notes."""
    brief.covered = False
    brief.bullets = []
    brief.notes.insert(0, message)
    return brief
