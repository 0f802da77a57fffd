"""Stage 5: passages -> Answer. Two engines behind one interface.

``Engine.answer(question, passages)`` returns the same ``Answer`` shape from the
extractive engine (offline default: verbatim source sentences) and the LLM engine
(a LangChain chain over any OpenAI-compatible server).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from app.retrieve import Passage

EngineName = Literal["extractive", "llm"]


@dataclass(frozen=True)
class Citation:
    """One quoted source: ``quote == article.text[start:end]``; ``also_reported_by``: the other outlets
    that carried the same story (app.stories)."""

    number: int
    article_id: str
    title: str
    source: str
    published_at: str
    url: str
    chunk_id: str
    quote: str
    start: int
    end: int
    also_reported_by: tuple[str, ...] = ()

    @classmethod
    def from_passage(cls, number: int, passage: Passage, start: int, end: int) -> Citation:
        """Cite ``passage.text[start:end]`` (offsets within the passage) by its span in the article."""
        return cls(
            number=number,
            article_id=passage.article_id,
            title=passage.title,
            source=passage.source,
            published_at=passage.published_at,
            url=passage.url,
            chunk_id=passage.chunk_id,
            quote=passage.text[start:end],
            start=passage.start + start,
            end=passage.start + end,
            also_reported_by=passage.also_reported_by,
        )

    @property
    def where(self) -> str:
        """'source, YYYY-MM-DD', leaving out whichever is missing (empty when both are)."""
        return ", ".join(part for part in (self.source, self.published_at[:10]) if part)

    @property
    def reported_by(self) -> str:
        """'reported by X, also by Y and Z' (empty when no other outlet carried the story)."""
        if not self.also_reported_by:
            return ""
        *rest, last = self.also_reported_by
        others = f"{', '.join(rest)} and {last}" if rest else last
        return f"reported by {self.source or 'an unnamed outlet'}, also by {others}"


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a chat."""

    question: str
    answer: str


@dataclass
class Answer:
    question: str
    answer: str
    citations: list[Citation]
    engine: EngineName
    refused: bool
    passages: list[Passage] = field(default_factory=list)
    standalone_question: str = ""
    degraded: bool = False
    notes: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # answer sentences the verifier could not ground


class Engine(Protocol):
    name: EngineName

    def answer(self, question: str, passages: list[Passage]) -> Answer: ...

    def condense(self, question: str, history: list[Turn]) -> str:
        """A follow-up question rewritten to stand alone, for retrieval."""
        ...
