"""The assembled pipeline: built once from Settings, used by the CLI and the API."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from app.answer import Answer, Engine, EngineName, Turn
from app.answer.extractive import ExtractiveEngine
from app.config import Settings
from app.embed import Embedder, build_embedder
from app.errors import ConfigError
from app.lexical import LexicalIndex
from app.retrieve import Filters, Retriever
from app.store import Store

if TYPE_CHECKING:
    from app.answer.llm import LLMEngine

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
        self.extractive = ExtractiveEngine(self.embedder, self.lexical)

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
        return answer

    def close(self) -> None:
        self.lexical.close()
