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
import re
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.answer import Answer, Citation, EngineName, Turn
from app.api.deps import ServiceDep, guard
from app.api.errors import ApiError, from_newsdesk
from app.api.routes import ENGINE_ERRORS, ERRORS, check_question
from app.api.schemas import CitationOut, ErrorOut, FiltersIn
from app.api.state import Service
from app.chunk import get_encoding
from app.errors import InputError, NewsdeskError
from app.retrieve import Filters, Passage

DEFAULT_MODEL = "newsdesk"
MODEL_ENGINES: dict[str, EngineName | None] = {
    DEFAULT_MODEL: None,
    "newsdesk-extractive": "extractive",
    "newsdesk-llm": "llm",
}
SOURCES_HEADING = "\n\nSources:\n"
_PIECE = re.compile(r"\S+\s*|\s+")

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


def model_names(service: Service) -> list[str]:
    return [name for name, engine in MODEL_ENGINES.items() if engine != "llm" or service.settings.llm_configured]


@router.get("/models")
async def list_models(service: ServiceDep) -> ModelList:
    """The models a chat request may name: one per answer engine, and 'newsdesk' for the default one."""
    return ModelList(data=[ModelOut(id=name, created=service.started) for name in model_names(service)])


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
async def chat_completions(body: ChatRequest, service: ServiceDep) -> Any:
    """OpenAI Chat Completions: answer the last user message from the articles, with citations."""
    if body.model not in model_names(service):
        raise ApiError(
            404,
            f"the model '{body.model}' does not exist; use one of {', '.join(model_names(service))} (GET /v1/models)",
            kind="invalid_request_error",
            code="model_not_found",
        )
    engine = service.engine_name(MODEL_ENGINES[body.model])
    question, history = conversation(body.messages)
    question = check_question(question, service.settings)
    filters = body.filters.to_filters() if body.filters else None
    prompt_tokens = _tokens(service, " ".join(m.text for m in body.messages))
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if not body.stream:
        answer = await service.run(partial(service.ask, question, history, filters, engine, body.k))
        content = answer.answer + (sources_text(answer.citations) if body.sources_in_content else "")
        completion_tokens = _tokens(service, content)
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
    stream = _Stream(service, body, completion_id, created, prompt_tokens)
    if engine == "llm":
        # Errors before the first byte (retrieval, an unreachable LLM for the question rewrite) get a status.
        standalone, passages = await service.run(partial(service.passages_for, question, history, filters, body.k))
        events = stream.llm(question, standalone, passages, history, filters)
    else:
        answer = await service.run(partial(service.ask, question, history, filters, engine, body.k))
        events = stream.pieces(answer)
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _tokens(service: Service, text: str) -> int:
    return len(get_encoding(service.settings.tokenizer).encode_ordinary(text))


class _Stream:
    """Server-sent events in OpenAI's chat.completion.chunk format, ending with ``data: [DONE]``."""

    def __init__(self, service: Service, body: ChatRequest, completion_id: str, created: int, prompt: int) -> None:
        self.service = service
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
            completion = _tokens(self.service, "".join(self.sent))
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

    async def pieces(self, answer: Answer) -> AsyncIterator[str]:
        """A finished (extractive) answer, sent a few words at a time."""
        yield self.chunk({"role": "assistant", "content": ""})
        words = _PIECE.findall(answer.answer)
        for start in range(0, len(words), 3):
            yield self.chunk({"content": "".join(words[start : start + 3])})
        for event in self.ending(answer):
            yield event

    async def llm(
        self, question: str, standalone: str, passages: list[Passage], history: list[Turn], filters: Filters | None
    ) -> AsyncIterator[str]:
        """The LLM's tokens as it produces them; on failure before any text, the extractive answer if allowed."""
        yield self.chunk({"role": "assistant", "content": ""})
        answer: Answer | None = None
        started = time.perf_counter()
        try:
            async for item in self.service.desk.llm.stream(standalone, passages):
                if isinstance(item, Answer):
                    answer = item
                elif item:
                    yield self.chunk({"content": item})
        except NewsdeskError as error:
            if len(self.sent) > 1 or not self.service.settings.llm_fallback_extractive:
                yield self._event(from_newsdesk(error).body())  # headers are sent: the error goes in the stream
                yield "data: [DONE]\n\n"
                return
            answer = await self.service.run(
                partial(self.service.ask, question, history, filters, "extractive", self.body.k)
            )
            answer.degraded = True
            answer.notes.append("the LLM failed; this is the extractive answer")
            for piece in _PIECE.findall(answer.answer):
                yield self.chunk({"content": piece})
        else:
            self.service.metrics.generation.labels("llm").observe(time.perf_counter() - started)
        assert answer is not None
        answer.question = question
        answer.standalone_question = standalone
        for event in self.ending(answer):
            yield event
