"""The assembled pipeline: built once from Settings, used by the CLI and the API."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from app.answer import Answer, Engine, EngineName, Turn
from app.answer.extractive import ExtractiveEngine
from app.brief import Brief, BriefKind, Document
from app.brief.extractive import ExtractiveBriefEngine
from app.config import Settings
from app.embed import Embedder, build_embedder
from app.errors import ConfigError, InputError
from app.lexical import LexicalIndex
from app.retrieve import Filters, Retriever
from app.store import Store
from app.verify import Verifier, check_answer

if TYPE_CHECKING:
    from app.answer.llm import LLMEngine
    from app.article import Article
    from app.brief.llm import LLMBriefEngine

log = logging.getLogger("newsdesk.ask")
# Ranking puts one chunk per article first; an answer may need a neighbouring chunk of the same article.
ANSWER_PER_ARTICLE = 3


class Newsdesk:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or build_embedder(settings)
        self.store = Store.open(settings, self.embedder)
        self.lexical = LexicalIndex(settings.data_dir / f"lexical-{settings.collection}.sqlite", self.store)
        self.retriever = Retriever(self.store, self.lexical, self.embedder)
        self.extractive = ExtractiveEngine(self.embedder, self.lexical, self.store)
        self.verifier = Verifier(self.embedder)
        self.extractive_brief = ExtractiveBriefEngine(
            self.embedder,
            self.verifier,
            max_words=settings.brief_max_words,
            window_tokens=settings.brief_window_tokens,
            encoding=settings.tokenizer,
        )

    @cached_property
    def llm(self) -> LLMEngine:
        if not self.settings.llm_configured:
            raise ConfigError(
                "no LLM is configured: set NEWSDESK_LLM_BASE_URL (any OpenAI-compatible server) "
                "and/or NEWSDESK_LLM_API_KEY, or use the extractive engine"
            )
        from app.answer.llm import LLMEngine

        return LLMEngine(self.settings)

    def engine(self, name: EngineName | None = None) -> Engine:
        chosen = name or self.settings.resolved_engine
        return self.llm if chosen == "llm" else self.extractive

    def ask(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        filters: Filters | None = None,
        engine: EngineName | None = None,
        k: int | None = None,
    ) -> Answer:
        from app.answer.llm import LLMUnavailableError

        chosen = self.engine(engine)
        try:
            standalone = chosen.condense(question, list(history))
            passages = self.retriever.retrieve(standalone, k or self.settings.top_k, filters, ANSWER_PER_ARTICLE)
            log.info("question %r -> %r; chunks %s", question, standalone, [p.chunk_id for p in passages])
            answer = chosen.answer(standalone, passages)
        except LLMUnavailableError as error:
            if chosen is self.extractive or not self.settings.llm_fallback_extractive:
                raise
            standalone = self.extractive.condense(question, list(history))
            passages = self.retriever.retrieve(standalone, k or self.settings.top_k, filters, ANSWER_PER_ARTICLE)
            answer = self.extractive.answer(standalone, passages)
            answer.degraded = True
            answer.notes.append(f"the LLM failed ({error}); this is the extractive answer")
        answer.question = question
        answer.standalone_question = standalone
        if answer.engine == "llm":
            check_answer(answer, self.verifier)  # flags sentences their cited sources do not support
        return answer

    def brief(
        self,
        *,
        article_id: str | None = None,
        path: Path | None = None,
        topic: str | None = None,
        bullets: int | None = None,
        filters: Filters | None = None,
        engine: EngineName | None = None,
    ) -> Brief:
        """A Quick Looks brief of one stored article, a file (parsed, not ingested) or a topic."""
        from app.answer.llm import LLMUnavailableError

        if sum(x is not None for x in (article_id, path, topic)) != 1:
            raise InputError("brief one thing: an article id, a file, or a topic")
        count = bullets or self.settings.brief_bullets
        kind: BriefKind
        if article_id is not None:
            kind, subject, documents = "article", article_id, [Document(self.store.get_article(article_id))]
        elif path is not None:
            kind, subject, documents = "file", str(path), [Document(_parse_one(path, self.settings.max_file_bytes))]
        else:
            assert topic is not None
            if not topic.strip():
                raise InputError("the topic is empty")
            kind, subject, documents = "topic", topic, self._topic_documents(topic, filters)
            if not documents:
                return Brief(topic, "topic", "extractive", [], notes=["no stored article matches the topic"])
        chosen = engine or self.settings.resolved_engine
        if chosen == "extractive":
            return self.extractive_brief.brief(documents, bullets=count, kind=kind, subject=subject)
        try:
            return self.llm_brief.brief(documents, bullets=count, kind=kind, subject=subject)
        except LLMUnavailableError as error:
            if not self.settings.llm_fallback_extractive:
                raise
            result = self.extractive_brief.brief(documents, bullets=count, kind=kind, subject=subject)
            result.degraded = True
            result.notes.append(f"the LLM failed ({error}); this is the extractive brief")
            return result

    def _topic_documents(self, topic: str, filters: Filters | None) -> list[Document]:
        """The retrieved passages, grouped per article (in ranked order), as ranges of each article's text."""
        passages = self.retriever.retrieve(topic, self.settings.brief_topic_k, filters, ANSWER_PER_ARTICLE)
        ranges: dict[str, list[tuple[int, int]]] = {}
        for passage in passages:
            ranges.setdefault(passage.article_id, []).append((passage.start, passage.end))
        articles = {a.id: a for a in self.store.get_articles(list(ranges))}
        return [
            Document(articles[i], tuple(_merge_ranges(spans)), relevance_query=topic)
            for i, spans in ranges.items()
            if i in articles
        ]

    @cached_property
    def llm_brief(self) -> LLMBriefEngine:
        from app.brief.llm import LLMBriefEngine

        return LLMBriefEngine(self.settings, self.verifier, self.llm)

    def close(self) -> None:
        self.lexical.close()


def _parse_one(path: Path, max_bytes: int) -> Article:
    from app.parse import parse_file

    parsed = parse_file(path, max_bytes=max_bytes)
    if parsed.errors:
        raise parsed.errors[0]
    if len(parsed.articles) != 1:
        raise InputError(f"{path}: holds {len(parsed.articles)} articles; brief one article per file")
    return parsed.articles[0]


def _merge_ranges(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping chunk spans (chunks share sentences) as disjoint ranges, in text order."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
