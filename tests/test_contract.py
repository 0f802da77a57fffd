"""One contract every engine keeps, through the desk: ask, stream and brief give cited, exact,
verified results; an LLM that fails falls back to the extractive engine (marked degraded) or,
with the fallback off, is an ``LLMUnavailableError``. The LLM engine runs against a fake chat
model that answers from the sources it is sent."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from app.answer import Answer, EngineName, Turn
from app.config import Settings
from app.embed import Embedder
from app.errors import LLMUnavailableError
from app.service import Newsdesk

from .conftest import CORPUS, make_ingestor

ENGINES: list[EngineName] = ["extractive", "llm"]
QUESTION = "Which club beat Inter Milan in the Champions League final?"
INVENTED = "The final was also watched by 900 million people on Mars."
_SOURCE = re.compile(r'<source id="1">.*?Text:\n(.*?)\n</source>', re.S)


class SourceReader(BaseChatModel):
    """Answers with the first sentence of source 1, cited; briefs it as JSON; returns follow-ups as they are.
    ``invent`` adds a sentence no source supports, which the verifier must flag."""

    invent: bool = False

    @property
    def _llm_type(self) -> str:
        return "source-reader"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **_: Any) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        found = _SOURCE.search(prompt)
        first = re.split(r"(?<=[.!?])\s+", found.group(1).strip())[0] if found else ""
        if "Quick Looks" in prompt:
            reply = json.dumps({"bullets": [{"text": first, "sources": [1]}]})
        elif not found:  # the follow-up rewrite
            reply = prompt.rsplit("\n", 1)[-1]
        else:
            reply = f"{first} [1]" + (f" {INVENTED} [1]" if self.invent else "")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])


class Unreachable(BaseChatModel):
    @property
    def _llm_type(self) -> str:
        return "unreachable"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **_: Any) -> ChatResult:
        raise openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    path = tmp_path_factory.mktemp("contract")
    files = [CORPUS / "2025-06-01-psg-champions-league-final.txt", CORPUS / "2025-04-26-russia-kursk-control.txt"]
    make_ingestor(Settings(data_dir=path), embedder).ingest_paths(files, max_bytes=10**7)
    return path


@pytest.fixture
def desk_for(data_dir: Path, embedder: Embedder) -> Iterator[Any]:
    desks: list[Newsdesk] = []

    def build(chat: BaseChatModel | None = None, **settings: Any) -> Newsdesk:
        values = {"data_dir": data_dir, "llm_max_retries": 0} | settings
        desks.append(Newsdesk(Settings(**values), embedder=embedder, llm=chat))
        return desks[-1]

    yield build
    for desk in desks:
        desk.close()


def streamed(desk: Newsdesk, question: str, **options: Any) -> tuple[str, Answer]:
    async def collect() -> list[str | Answer]:
        return [item async for item in desk.stream(question, **options)]

    items = asyncio.run(collect())
    assert isinstance(items[-1], Answer) and all(isinstance(i, str) for i in items[:-1])
    return "".join(str(i) for i in items[:-1]), items[-1]


def assert_cited_exactly(desk: Newsdesk, answer: Answer) -> None:
    assert answer.citations and not answer.refused
    for citation in answer.citations:
        assert desk.article(citation.article_id).text[citation.start : citation.end] == citation.quote


@pytest.mark.parametrize("engine", ENGINES)
def test_ask_cites_exact_sentences_and_is_verified(desk_for: Any, engine: EngineName) -> None:
    desk = desk_for(SourceReader())
    answer = desk.ask(QUESTION, engine=engine)
    assert answer.engine == engine and not answer.degraded
    assert_cited_exactly(desk, answer)
    assert "Paris Saint-Germain" in answer.answer
    assert answer.unsupported == []
    follow_up = desk.ask("And who scored?", history=[Turn(QUESTION, answer.answer)], engine=engine)
    assert follow_up.question == "And who scored?" and follow_up.standalone_question


@pytest.mark.parametrize("engine", ENGINES)
def test_stream_sends_the_text_then_the_verified_answer(desk_for: Any, engine: EngineName) -> None:
    desk = desk_for(SourceReader())
    text, answer = streamed(desk, QUESTION, engine=engine)
    assert answer.engine == engine and text.strip() == answer.answer
    assert_cited_exactly(desk, answer)
    assert answer == desk.ask(QUESTION, engine=engine), "streamed or not, the same answer"


def test_streamed_llm_answers_are_checked_by_the_verifier(desk_for: Any) -> None:
    desk = desk_for(SourceReader(invent=True))
    text, answer = streamed(desk, QUESTION, engine="llm")
    assert INVENTED in text
    assert answer.unsupported == [INVENTED.replace(" [1]", "")]
    assert any("900" in note for note in answer.notes)
    assert desk.ask(QUESTION, engine="llm").unsupported == answer.unsupported


@pytest.mark.parametrize("engine", ENGINES)
def test_brief_bullets_are_cited_and_supported(desk_for: Any, engine: EngineName) -> None:
    desk = desk_for(SourceReader())
    article = next(r for r in desk.articles() if "Champions" in r.title)
    brief = desk.brief(article_id=article.id, bullets=3, engine=engine)
    assert brief.engine == engine and brief.bullets and not brief.degraded
    text = desk.article(article.id).text
    for bullet in brief.bullets:
        assert bullet.verdict.supported, bullet.verdict.reason
        assert all(text[c.start : c.end] == c.quote for c in bullet.citations)


def test_a_failing_llm_falls_back_to_the_extractive_engine_everywhere(desk_for: Any) -> None:
    desk = desk_for(Unreachable(), llm_fallback_extractive=True)
    extractive = desk.ask(QUESTION, engine="extractive")
    answer = desk.ask(QUESTION, engine="llm")
    text, streamed_answer = streamed(desk, QUESTION, engine="llm")
    for result in (answer, streamed_answer):
        assert result.degraded and result.engine == "extractive" and result.answer == extractive.answer
        assert any(note.startswith("the LLM failed (LLM server") for note in result.notes)
    assert text.strip() == extractive.answer
    article = next(r for r in desk.articles() if "Champions" in r.title)
    brief = desk.brief(article_id=article.id, bullets=3, engine="llm")
    assert brief.degraded and brief.engine == "extractive" and brief.bullets
    assert any("this is the extractive brief" in note for note in brief.notes)


def test_with_the_fallback_off_a_failing_llm_is_an_error(desk_for: Any) -> None:
    desk = desk_for(Unreachable(), llm_fallback_extractive=False)
    with pytest.raises(LLMUnavailableError):
        desk.ask(QUESTION, engine="llm")
    with pytest.raises(LLMUnavailableError):
        streamed(desk, QUESTION, engine="llm")
    article = next(r for r in desk.articles() if "Champions" in r.title)
    with pytest.raises(LLMUnavailableError):
        desk.brief(article_id=article.id, bullets=3, engine="llm")
