"""OpenAI-compatible ``/v1/models`` and ``/v1/chat/completions`` (with ``stream: true`` as SSE).

The last user message is the question; earlier user/assistant pairs are the conversation
(follow-ups are made standalone from it). System messages are ignored: what newsdesk does
is fixed, whatever a client or an article says. The assistant message carries the answer
with ``[n]`` markers and a "Sources:" list, so any chat client shows something useful; the
structured citations are also in the extra ``citations`` field (of the response, and of the
final streamed chunk) for clients that know about them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.answer import Answer, Citation, EngineName, Turn
from app.api.deps import DeskDep, ServiceDep, guard
from app.api.errors import ApiError, from_newsdesk
from app.api.routes import ENGINE_ERRORS, ERRORS, check_question
from app.api.schemas import CitationOut, ErrorOut, FiltersIn
from app.chunk import get_encoding
from app.errors import InputError, NewsdeskError
from app.service import Newsdesk

DEFAULT_MODEL = "newsdesk"
MODEL_ENGINES: dict[str, EngineName | None] = {
    DEFAULT_MODEL: None,
    "newsdesk-extractive": "extractive",
    "newsdesk-llm": "llm",
}
SOURCES_HEADING = "\n\nSources:\n"

router = APIRouter(prefix="/v1", dependencies=[Depends(guard)], responses=ERRORS, tags=["openai"])


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """The OpenAI request; sampling options (temperature, max_tokens, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="One of GET /v1/models.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: StreamOptions | None = None
    filters: FiltersIn | None = Field(None, description="newsdesk extension: only these sources or dates.")
    k: int | None = Field(None, ge=1, le=100, description="newsdesk extension: passages to retrieve.")
    sources_in_content: bool = Field(True, description="newsdesk extension: append a 'Sources:' list to the text.")


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "newsdesk"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AnswerInfo(BaseModel):
    answer: str = Field(description="The answer with checked [n] markers (a streamed LLM text may differ).")
    engine: EngineName
    refused: bool
    degraded: bool
    notes: list[str]
    unsupported: list[str] = Field(description="Answer sentences the grounding verifier found no support for.")
    standalone_question: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    citations: list[CitationOut] = Field(description="newsdesk extension: the [n] sources, with exact spans.")
    newsdesk: AnswerInfo = Field(description="newsdesk extension: how the answer was made.")


def model_names(desk: Newsdesk) -> list[str]:
    return [name for name, engine in MODEL_ENGINES.items() if engine != "llm" or desk.llm_available]


@router.get("/models")
async def list_models(desk: DeskDep, service: ServiceDep) -> ModelList:
    """The models a chat request may name: one per answer engine, and 'newsdesk' for the default one."""
    return ModelList(data=[ModelOut(id=name, created=service.started) for name in model_names(desk)])


def conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """The last user message, and the earlier user/assistant exchanges as turns."""
    spoken = [(m.role, m.text) for m in messages if m.role in ("user", "assistant")]
    if not spoken or spoken[-1][0] != "user":
        raise InputError("messages: the last user or assistant message must be from the user; it is the question")
    history: list[Turn] = []
    asked: str | None = None
    for role, text in spoken[:-1]:
        if role == "user":
            if asked is not None:
                history.append(Turn(asked, ""))
            asked = text
        elif asked is not None:
            history.append(Turn(asked, text.split(SOURCES_HEADING, 1)[0]))
            asked = None
    if asked is not None:
        history.append(Turn(asked, ""))
    return spoken[-1][1], history


def sources_text(citations: list[Citation]) -> str:
    lines = []
    for c in citations:
        where = ", ".join(part for part in (c.source, c.published_at[:10]) if part)
        lines.append(f"[{c.number}] {c.title}" + (f" ({where})" if where else "") + (f" {c.url}" if c.url else ""))
    return SOURCES_HEADING + "\n".join(lines) if lines else ""


def info(answer: Answer) -> AnswerInfo:
    return AnswerInfo(
        answer=answer.answer,
        engine=answer.engine,
        refused=answer.refused,
        degraded=answer.degraded,
        notes=answer.notes,
        unsupported=answer.unsupported,
        standalone_question=answer.standalone_question,
    )


@router.post(
    "/chat/completions",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "A chat.completion, or SSE chunks when streaming."},
        404: {"model": ErrorOut, "description": "Unknown model (see GET /v1/models)."},
        **ENGINE_ERRORS,
    },
)
async def chat_completions(body: ChatRequest, desk: DeskDep, service: ServiceDep) -> Any:
    """OpenAI Chat Completions: answer the last user message from the articles, with citations."""
    if body.model not in model_names(desk):
        raise ApiError(
            404,
            f"the model '{body.model}' does not exist; use one of {', '.join(model_names(desk))} (GET /v1/models)",
            kind="invalid_request_error",
            code="model_not_found",
        )
    engine = desk.engine_name(MODEL_ENGINES[body.model])
    question, history = conversation(body.messages)
    question = check_question(question, desk.settings)
    filters = body.filters.to_filters() if body.filters else None
    tokenizer = desk.settings.tokenizer
    prompt_tokens = _tokens(tokenizer, " ".join(m.text for m in body.messages))
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if not body.stream:
        answer = await service.run(
            partial(desk.ask, question, history=history, filters=filters, engine=engine, k=body.k)
        )
        content = answer.answer + (sources_text(answer.citations) if body.sources_in_content else "")
        completion_tokens = _tokens(tokenizer, content)
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=body.model,
            choices=[Choice(message=AssistantMessage(content=content))],
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
            citations=[CitationOut.model_validate(c) for c in answer.citations],
            newsdesk=info(answer),
        )
    items = desk.stream(question, history=history, filters=filters, engine=engine, k=body.k, run=service.run)
    first = await anext(items)  # errors before any text (retrieval, an unreachable LLM) get a status
    stream = _Stream(tokenizer, body, completion_id, created, prompt_tokens)
    return StreamingResponse(
        stream.events(first, items),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _tokens(tokenizer: str, text: str) -> int:
    return len(get_encoding(tokenizer).encode_ordinary(text))


class _Stream:
    """Server-sent events in OpenAI's chat.completion.chunk format, ending with ``data: [DONE]``."""

    def __init__(self, tokenizer: str, body: ChatRequest, completion_id: str, created: int, prompt: int) -> None:
        self.tokenizer = tokenizer
        self.body = body
        self.id = completion_id
        self.created = created
        self.prompt_tokens = prompt
        self.sent: list[str] = []

    def _event(self, payload: dict[str, Any]) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def chunk(self, delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        if "content" in delta:
            self.sent.append(delta["content"])
        payload = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.body.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return self._event(payload)

    def ending(self, answer: Answer) -> list[str]:
        events = []
        if self.body.sources_in_content and answer.citations:
            events.append(self.chunk({"content": sources_text(answer.citations)}))
        citations = [CitationOut.model_validate(c).model_dump() for c in answer.citations]
        events.append(self.chunk({}, "stop", citations=citations, newsdesk=info(answer).model_dump()))
        if self.body.stream_options and self.body.stream_options.include_usage:
            completion = _tokens(self.tokenizer, "".join(self.sent))
            usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion}
            usage["total_tokens"] = self.prompt_tokens + completion
            events.append(
                self._event(
                    {
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.body.model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        events.append("data: [DONE]\n\n")
        return events

    async def events(self, first: str | Answer, rest: AsyncIterator[str | Answer]) -> AsyncIterator[str]:
        """The desk's text deltas as content chunks, then the final chunk with the verified answer's citations.
        An error once the headers are sent goes in the stream."""
        yield self.chunk({"role": "assistant", "content": ""})
        item = first
        try:
            while not isinstance(item, Answer):
                if item:
                    yield self.chunk({"content": item})
                item = await anext(rest)
        except NewsdeskError as error:
            yield self._event(from_newsdesk(error).body())
            yield "data: [DONE]\n\n"
            return
        for event in self.ending(item):
            yield event
