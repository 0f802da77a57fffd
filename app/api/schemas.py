"""Request and response bodies of the HTTP API (its OpenAPI schema is built from these)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.answer import Answer, EngineName, Turn
from app.brief import Brief, BriefKind
from app.retrieve import Filters


class Strict(BaseModel):
    """Unknown fields are an error that names them, so a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class FiltersIn(Strict):
    sources: list[str] = Field(default_factory=list, max_length=50, description="Only these sources.")
    since: date | None = Field(None, description="Published on or after (YYYY-MM-DD).")
    until: date | None = Field(None, description="Published on or before (YYYY-MM-DD).")
    article_ids: list[str] = Field(default_factory=list, max_length=200, description="Only these articles.")

    @model_validator(mode="after")
    def _ordered(self) -> FiltersIn:
        if self.since and self.until and self.since > self.until:
            raise ValueError("'since' must be on or before 'until'")
        return self

    def to_filters(self) -> Filters:
        return Filters(
            sources=tuple(self.sources), since=self.since, until=self.until, article_ids=tuple(self.article_ids)
        )


class TurnIn(Strict):
    question: str = Field(max_length=20_000)
    answer: str = Field(max_length=50_000)

    def to_turn(self) -> Turn:
        return Turn(self.question, self.answer)


class AskIn(Strict):
    question: str = Field(
        min_length=1,
        description="The text of a question, not blank, at most NEWSDESK_MAX_QUESTION_CHARS characters.",
        json_schema_extra={"pattern": r"\S"},
    )
    history: list[TurnIn] = Field(default_factory=list, max_length=50, description="Earlier turns, oldest first.")
    filters: FiltersIn | None = None
    engine: EngineName | None = Field(None, description="extractive or llm; default from the settings.")
    k: int | None = Field(None, ge=1, le=100, description="Passages to retrieve.")
    include_passages: bool = Field(False, description="Also return the retrieved passages.")


class CitationOut(BaseModel):
    """One quoted source: ``quote == article.text[start:end]``."""

    model_config = ConfigDict(from_attributes=True)

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
    also_reported_by: list[str] = Field(
        default_factory=list, description="Other outlets that carried the same story (near-duplicate articles)."
    )


class PassageOut(BaseModel):
    """A retrieved chunk: ``text == article.text[start:end]``."""

    model_config = ConfigDict(from_attributes=True)

    chunk_id: str
    article_id: str
    title: str
    source: str
    url: str
    published_at: str
    section: str
    start: int
    end: int
    text: str
    score: float


class AnswerOut(BaseModel):
    question: str
    standalone_question: str
    answer: str = Field(description="The answer with [n] markers pointing at the citations.")
    citations: list[CitationOut]
    engine: EngineName
    refused: bool = Field(description="True when the articles do not contain the answer.")
    degraded: bool = Field(description="True when the LLM failed and this is the extractive answer.")
    notes: list[str]
    unsupported: list[str] = Field(default_factory=list, description="Answer sentences no source supports.")
    passages: list[PassageOut] | None = None

    @classmethod
    def of(cls, answer: Answer, include_passages: bool = False) -> AnswerOut:
        return cls(
            question=answer.question,
            standalone_question=answer.standalone_question,
            answer=answer.answer,
            citations=[CitationOut.model_validate(c) for c in answer.citations],
            engine=answer.engine,
            refused=answer.refused,
            degraded=answer.degraded,
            notes=answer.notes,
            unsupported=list(getattr(answer, "unsupported", [])),
            passages=[PassageOut.model_validate(p) for p in answer.passages] if include_passages else None,
        )


class BriefIn(Strict):
    """Brief one stored article or a topic across the stored articles: send exactly one of ``article_id``
    (one stored article) or ``topic``. ``sources``, ``since`` and ``until`` filter a topic brief only."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["article_id"], "properties": {"article_id": {"type": "string"}}},
                {"required": ["topic"], "properties": {"topic": {"type": "string"}}},
            ]
        }
    )

    article_id: str | None = Field(None, min_length=1, max_length=200, description="A stored article's id.")
    topic: str | None = Field(
        None,
        min_length=1,
        description="What to brief across the stored articles; at most NEWSDESK_MAX_QUESTION_CHARS characters.",
        json_schema_extra={"pattern": r"\S"},
    )
    sources: list[str] = Field(
        default_factory=list, max_length=50, description="Topic briefs only: only these sources."
    )
    since: date | None = Field(None, description="Topic briefs only: published on or after (YYYY-MM-DD).")
    until: date | None = Field(None, description="Topic briefs only: published on or before (YYYY-MM-DD).")
    bullets: int | None = Field(None, ge=1, le=12, description="How many bullets; default NEWSDESK_BRIEF_BULLETS.")
    engine: EngineName | None = Field(None, description="extractive or llm; default from the settings.")

    @model_validator(mode="after")
    def _one_subject(self) -> BriefIn:
        if (self.article_id is None) == (self.topic is None):
            got = "got both" if self.article_id is not None else "got neither"
            raise ValueError(f"send exactly one of 'article_id' (one stored article) or 'topic' ({got})")
        if self.article_id is not None and (self.sources or self.since or self.until):
            raise ValueError("'sources', 'since' and 'until' filter a topic brief; remove them or send a 'topic'")
        if self.since and self.until and self.since > self.until:
            raise ValueError("'since' must be on or before 'until'")
        return self

    def to_filters(self) -> Filters | None:
        if not (self.sources or self.since or self.until):
            return None
        return Filters(sources=tuple(self.sources), since=self.since, until=self.until)


class BulletOut(BaseModel):
    text: str = Field(description="One fact: verbatim source text (extractive) or the model's wording (llm).")
    citations: list[CitationOut] = Field(description="The sentences it comes from: quote == article.text[start:end].")
    supported: bool = Field(description="True when the grounding verifier found the bullet supported by its quotes.")
    reason: str = Field(description="The verifier's reason.")


class DroppedOut(BaseModel):
    text: str
    reason: str = Field(description="Why the verifier rejected it.")


class BriefOut(BaseModel):
    """A Quick Looks brief: short bullets, most important first, each cited to the exact sentence."""

    subject: str = Field(description="The article id or the topic.")
    kind: BriefKind
    engine: EngineName
    degraded: bool = Field(description="True when the LLM failed and this is the extractive brief.")
    covered: bool = Field(
        True, description="False when no stored article covers the topic: no bullets; the first note says so."
    )
    bullets: list[BulletOut]
    dropped: list[DroppedOut] = Field(description="Candidate bullets the verifier rejected.")
    disagreements: list[str] = Field(description="Where the sources of a topic brief disagree.")
    notes: list[str]

    @classmethod
    def of(cls, brief: Brief) -> BriefOut:
        return cls(
            subject=brief.subject,
            kind=brief.kind,
            engine=brief.engine,
            degraded=brief.degraded,
            covered=brief.covered,
            bullets=[
                BulletOut(
                    text=b.text,
                    citations=[CitationOut.model_validate(c) for c in b.citations],
                    supported=b.verdict.supported,
                    reason=b.verdict.reason,
                )
                for b in brief.bullets
            ],
            dropped=[DroppedOut(text=d.text, reason=d.reason) for d in brief.dropped],
            disagreements=list(brief.disagreements),
            notes=list(brief.notes),
        )


class ArticleIn(Strict):
    """One article as JSON (the same record as a JSON Lines input); or only its ``url``: the page is
    fetched and its article extracted, with the page's title, date and canonical URL."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["body"]}, {"required": ["url"]}]})

    body: str | None = Field(None, min_length=1, description="The article text; leave it out to fetch the page at url.")
    id: str | None = Field(None, max_length=200, description="Your id; default from the URL, else the content.")
    title: str | None = Field(None, max_length=1000)
    source: str | None = Field(None, max_length=200)
    url: str | None = Field(None, max_length=2000, description="The article's URL; sent alone, the page to fetch.")
    published_at: str | None = Field(None, max_length=40, description="YYYY-MM-DD or an ISO datetime.")
    author: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _text_or_page(self) -> ArticleIn:
        if self.body is None:
            if self.url is None:
                raise ValueError("send the article's text as 'body', or only a 'url' to fetch the page")
            given = [name for name in ("id", "title", "source", "published_at", "author") if getattr(self, name)]
            if given:
                raise ValueError(
                    f"a fetched page's fields come from the page: send only 'url', or 'body' too "
                    f"(got {', '.join(given)})"
                )
        return self


class IngestOut(BaseModel):
    id: str
    title: str
    status: Literal["added", "updated", "unchanged"]
    chunks: int


class ArticleSummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    source: str
    url: str
    published_at: str
    chunk_count: int


class SectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    start: int
    end: int


class ArticleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    text: str
    sections: list[SectionOut]
    source: str
    url: str
    published_at: str
    author: str
    dateline: str
    summary: str
    quick_looks: list[str]


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong and what to do about it.")
    type: str
    code: str | None = None
    fields: list[str] | None = Field(None, description="For 422: one line per problem, '<where>: <what to fix>'.")


class ErrorOut(BaseModel):
    """Every error, in the shape OpenAI clients read."""

    error: ErrorDetail


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready"]
    articles: int
    chunks: int
    embedding_model: str
    engine: EngineName


class JobProgressOut(BaseModel):
    articles_done: int
    articles_total: int
    chunks_done: int = Field(description="Chunks embedded and written so far.")
    chunks_total: int | None = Field(description="The article's chunks; null until it is chunked.")


class JobOut(BaseModel):
    """An upload being ingested in the background: poll ``GET /v1/jobs/{id}`` until ``done`` or ``failed``."""

    id: str
    status: Literal["queued", "running", "done", "failed"]
    file: str = Field(description="The uploaded file's name.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: JobProgressOut
    article: IngestOut | None = Field(description="When done: the article's id, title, status and chunks.")
    error: ErrorDetail | None = Field(description="When failed: what went wrong and what to do.")
