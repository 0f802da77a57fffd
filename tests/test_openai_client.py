"""The official ``openai`` client against a real newsdesk server: models, chat, streamed chat, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from app.config import Settings
from app.embed import Embedder

from .live_service import LiveServer, live_server

pytestmark = pytest.mark.slow

KEY = "openai-client-test-key"
QUESTION = "Which club beat Inter Milan in the Champions League final?"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[LiveServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("openai"), api_keys=KEY, rate_limit_per_minute=0)
    with live_server(settings, embedder) as running:
        yield running


@pytest.fixture
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)


def test_models_list_the_engines(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids == ["newsdesk", "newsdesk-extractive"]  # no LLM configured, so no newsdesk-llm


def test_chat_completion_with_citations(client: openai.OpenAI, server: LiveServer) -> None:
    completion = client.chat.completions.create(
        model="newsdesk-extractive", messages=[{"role": "user", "content": QUESTION}]
    )
    assert completion.object == "chat.completion"
    message = completion.choices[0].message
    assert message.role == "assistant" and completion.choices[0].finish_reason == "stop"
    assert message.content and "Paris Saint-Germain" in message.content
    answer, sources = message.content.split("\n\nSources:\n")
    assert "[1]" in answer and sources.startswith("[1] ")
    assert completion.usage and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    extra: dict[str, Any] = completion.model_extra or {}
    citations = extra["citations"]
    assert citations and citations[0]["number"] == 1
    article = server.desk.article(citations[0]["article_id"])
    assert article.text[citations[0]["start"] : citations[0]["end"]] == citations[0]["quote"]
    assert extra["newsdesk"]["engine"] == "extractive" and extra["newsdesk"]["refused"] is False


def test_streamed_chat_completion(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="newsdesk",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris Saint-Germain" in text and "\n\nSources:\n[1] " in text
    pieces = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3, "the answer arrives in pieces"
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.choices[0].finish_reason == "stop"
    extra: dict[str, Any] = final.model_extra or {}
    assert extra["citations"] and extra["citations"][0]["quote"] in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_follow_up_uses_the_conversation(client: openai.OpenAI) -> None:
    first = "How many drones did Ukraine launch at Moscow?"
    completion = client.chat.completions.create(
        model="newsdesk",
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": first},
            {"role": "assistant", "content": "Some answer [1]\n\nSources:\n[1] An article"},
            {"role": "user", "content": "and how many did Russia intercept?"},
        ],
    )
    info = (completion.model_extra or {})["newsdesk"]
    assert info["standalone_question"] != "and how many did Russia intercept?"
    assert "drones" in info["standalone_question"].lower()


def test_errors_arrive_as_openai_exceptions(client: openai.OpenAI, server: LiveServer) -> None:
    wrong_key = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        wrong_key.models.list()
    with pytest.raises(openai.NotFoundError, match="the model 'gpt-4o' does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
    with pytest.raises(
        openai.UnprocessableEntityError, match="the last user or assistant message must be from the user"
    ):
        client.chat.completions.create(model="newsdesk", messages=[{"role": "assistant", "content": "hello"}])


def test_streamed_chat_through_a_real_llm(
    tmp_path: Path, embedder: Embedder, llama_server: str, server: LiveServer
) -> None:
    """newsdesk-llm: the LLM engine's tokens stream through, ending with the citations field."""
    settings = Settings(
        data_dir=server.desk.settings.data_dir,
        llm_base_url=llama_server,
        llm_model="gemma3-270m",
        llm_context_tokens=2048,
        llm_max_answer_tokens=48,
        llm_fallback_extractive=False,
        top_k=3,
        rate_limit_per_minute=0,
    )
    with live_server(settings, embedder) as llm_server:
        client = openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key="unused", max_retries=0, timeout=300)
        assert "newsdesk-llm" in [m.id for m in client.models.list()]
        chunks = list(
            client.chat.completions.create(
                model="newsdesk-llm", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
        )
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    extra: dict[str, Any] = final.model_extra or {}
    assert extra["newsdesk"]["engine"] == "llm" and extra["newsdesk"]["degraded"] is False
    assert isinstance(extra["citations"], list)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
