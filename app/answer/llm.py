"""The LLM engine: numbered sources -> a LangChain chain over any OpenAI-compatible server -> Answer.

The model sees the passages as numbered ``<source id="n">`` blocks (as many as fit the
context budget, whole), answers citing ``[n]``, and every marker is checked: a valid
number becomes a ``Citation`` quoting the passage sentence that best supports the cited
claim (``quote == article.text[start:end]``); a number with no source is removed and noted.
Transient server failures are retried with backoff; anything else, or running out of
retries, is an ``LLMUnavailableError`` with a message a person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import openai
from langchain_core.output_parsers import StrOutputParser
from pydantic import SecretStr

from app.answer import Answer, Citation, EngineName, Turn
from app.chunk import get_encoding
from app.config import Settings
from app.errors import InputError, LLMUnavailableError
from app.prompts import Prompt, load_prompt
from app.retrieve import Passage
from app.text.citations import MARKER, marker_numbers
from app.text.sentences import split_sentences
from app.text.terms import overlap_words

if TYPE_CHECKING:
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.runnables import Runnable

logger = logging.getLogger("newsdesk.llm")

REFUSAL_TOKEN = "NOT_IN_SOURCES:"
REFUSAL_SENTENCE = "The articles do not contain the answer to this question."
MAX_RETRY_DELAY_S = 10.0
BASE_RETRY_DELAY_S = 0.5
# Chat templates wrap each message in a few special tokens, and the server's tokenizer is not
# ours: keep this many tokens per message spare when budgeting the context window.
MESSAGE_OVERHEAD_TOKENS = 16
NO_API_KEY = "not-needed"  # local servers ignore the key, but the OpenAI client insists on one

_SENTENCE_END = re.compile(r"""[.!?]+['"’”)\]]*\s+""")
_SOURCE_TAG = re.compile(r"<(\s*/?\s*sources?\b)", re.IGNORECASE)
_REFUSAL_START = re.compile(r"""^[\s*_`"'>#]*NOT_IN_SOURCES\b:?""")
T = TypeVar("T")


@dataclass(frozen=True)
class _Failure:
    retryable: bool
    reason: str
    hint: str
    retry_after: float | None = None


@dataclass
class LLMRequest:
    """What one answer request sends: the prompt values and the passages numbered 1..n."""

    question: str
    values: dict[str, str]
    passages: list[Passage]
    notes: list[str] = field(default_factory=list)


class LLMEngine:
    """``Engine`` over a LangChain chat model (``ChatOpenAI`` by default), which can also ``stream``."""

    name: EngineName = "llm"

    def __init__(self, settings: Settings, chat_model: BaseChatModel | None = None) -> None:
        self.settings = settings
        self._chat_model = chat_model
        self._owns_model = chat_model is None
        self._answer_prompt = load_prompt("answer", settings.prompts_dir)
        self._condense_prompt = load_prompt("condense", settings.prompts_dir)
        self._encoding = get_encoding(settings.tokenizer)
        self._chains: dict[str, Runnable[dict[str, str], str]] = {}
        self._sleep: Callable[[float], None] = time.sleep
        self._async_sleep: Callable[[float], Any] = asyncio.sleep

    # -- the model ------------------------------------------------------------------------

    @property
    def chat_model(self) -> BaseChatModel:
        """The chat model; the default ``ChatOpenAI`` client is built on first use."""
        if self._chat_model is None:
            self._chat_model = build_chat_model(self.settings)
        return self._chat_model

    @property
    def model_id(self) -> str:
        model = self._chat_model
        if model is None:
            return self.settings.llm_model
        for attribute in ("model_name", "model"):
            value = getattr(model, attribute, None)
            if isinstance(value, str) and value:
                return value
        return type(model).__name__

    @property
    def server(self) -> str:
        if self._chat_model is None:
            return self.settings.llm_base_url or "the OpenAI API"
        base = getattr(self._chat_model, "openai_api_base", None)
        return str(base) if base else (self.settings.llm_base_url or "the OpenAI API")

    def _chain(self, prompt: Prompt) -> Runnable[dict[str, str], str]:
        if prompt.name not in self._chains:
            self._chains[prompt.name] = prompt.chat_template() | self.chat_model | StrOutputParser()
        return self._chains[prompt.name]

    # -- Engine ---------------------------------------------------------------------------

    def answer(self, question: str, passages: list[Passage]) -> Answer:
        request = self.prepare(question, passages)
        if not request.passages:
            return self._no_sources(request)
        self._log_request("answer", self._answer_prompt, request.values, request.passages)
        chain = self._chain(self._answer_prompt)
        text = self._with_retries("answering", lambda: chain.invoke(request.values))
        return self.finish(request, text)

    async def stream(self, question: str, passages: list[Passage]) -> AsyncIterator[str | Answer]:
        """Text deltas as the model produces them, then the final ``Answer`` (built like ``answer``)."""
        request = self.prepare(question, passages)
        if not request.passages:
            yield self._no_sources(request)
            return
        self._log_request("answer", self._answer_prompt, request.values, request.passages)
        parts: list[str] = []
        attempts = self.settings.llm_max_retries + 1
        async with self._stream_chain() as chain:
            for attempt in range(1, attempts + 1):
                try:
                    async for delta in chain.astream(request.values):
                        if delta:
                            parts.append(delta)
                            yield delta
                    break
                except Exception as error:
                    failure = _classify(error, self.settings)
                    if failure is None:
                        raise
                    if parts:  # text already went out: a retry would repeat it
                        raise self._unavailable("streaming an answer", failure, attempt, midstream=True) from None
                    if not failure.retryable or attempt == attempts:
                        raise self._unavailable("streaming an answer", failure, attempt) from None
                    delay = self._delay(attempt, failure)
                    self._log_retry("streaming an answer", failure, attempt, attempts, delay)
                    await self._async_sleep(delay)
        yield self.finish(request, "".join(parts))

    @contextlib.asynccontextmanager
    async def _stream_chain(self) -> AsyncIterator[Runnable[dict[str, str], str]]:
        """The answer chain for one stream.

        Our own ``ChatOpenAI`` gets an HTTP client that lives as long as the stream: pooled
        connections are bound to an event loop, and callers may run each stream in a new one.
        """
        if not self._owns_model:
            yield self._chain(self._answer_prompt)
            return
        import httpx

        async with httpx.AsyncClient(timeout=self.settings.llm_timeout_s) as client:
            model = build_chat_model(self.settings, http_async_client=client)
            yield self._answer_prompt.chat_template() | model | StrOutputParser()

    def condense(self, question: str, history: list[Turn]) -> str:
        if not history:
            return question
        values = {"history": self._history(question, history), "question": question}
        self._log_request("condense", self._condense_prompt, values, [])
        chain = self._chain(self._condense_prompt)
        text = self._with_retries("condensing a follow-up question", lambda: chain.invoke(values))
        return _first_line(text) or question

    # -- building the request ----------------------------------------------------------------

    def prepare(self, question: str, passages: Sequence[Passage]) -> LLMRequest:
        """Number the passages that fit the context budget, whole, in their ranked order."""
        budget = self.settings.llm_context_tokens - self.settings.llm_max_answer_tokens
        fixed = self._prompt_tokens(self._answer_prompt, {"question": question, "sources": ""})
        if fixed > budget:
            raise InputError(
                f"the question is too long for the model's context: {fixed} tokens of prompt, "
                f"{budget} available (NEWSDESK_LLM_CONTEXT_TOKENS - NEWSDESK_LLM_MAX_ANSWER_TOKENS)"
            )
        used: list[Passage] = []
        blocks: list[str] = []
        dropped: list[Passage] = []
        total = fixed
        for passage in passages:
            block = format_source(len(used) + 1, passage)
            cost = self._count(block + "\n\n")
            if total + cost > budget:
                dropped.append(passage)
                continue
            used.append(passage)
            blocks.append(block)
            total += cost
        notes = []
        if dropped:
            notes.append(
                f"dropped {len(dropped)} of {len(passages)} passages that did not fit the model's context "
                f"({budget} tokens): {', '.join(p.chunk_id for p in dropped)}"
            )
        values = {"question": question, "sources": "\n\n".join(blocks)}
        return LLMRequest(question=question, values=values, passages=used, notes=notes)

    def _prompt_tokens(self, prompt: Prompt, values: dict[str, str]) -> int:
        messages = prompt.render(**values)
        return sum(self._count(text) + MESSAGE_OVERHEAD_TOKENS for _, text in messages)

    def _count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def _history(self, question: str, history: list[Turn]) -> str:
        """The most recent turns that fit the context budget, oldest first."""
        budget = self.settings.llm_context_tokens - self.settings.llm_max_answer_tokens
        total = self._prompt_tokens(self._condense_prompt, {"history": "", "question": question})
        kept: list[str] = []
        for turn in reversed(history):
            text = f"User: {turn.question}\nAssistant: {_strip_markers(turn.answer)}"
            cost = self._count(text + "\n\n")
            if total + cost > budget:
                break
            kept.insert(0, text)
            total += cost
        return "\n\n".join(kept)

    def _log_request(self, kind: str, prompt: Prompt, values: dict[str, str], passages: list[Passage]) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        rendered = "\n\n".join(f"[{role}]\n{text}" for role, text in prompt.render(**values))
        logger.info(
            "LLM %s request: model=%s server=%s chunks=%s\n%s",
            kind,
            self.model_id,
            self.server,
            [p.chunk_id for p in passages],
            rendered,
        )

    # -- reading the reply ------------------------------------------------------------------

    def finish(self, request: LLMRequest, raw: str) -> Answer:
        """The model's full reply -> ``Answer``: refusal detection, marker checks, citations."""
        notes = list(request.notes)
        text, markers, removed = clean_markers(raw, len(request.passages))
        for number in removed:
            notes.append(f"removed citation [{number}]: no such source")
        if _REFUSAL_START.match(text) or (REFUSAL_TOKEN in text and not markers):
            covered = _strip_markers(text.split("NOT_IN_SOURCES", 1)[1]).lstrip(":*_`\"' ")
            covered = re.sub(r"\s+", " ", covered).strip()
            if covered and covered[-1] not in ".!?":
                covered += "."
            answer = f"{REFUSAL_SENTENCE} {covered}".strip()
            return self._answer(request, answer, [], refused=True, notes=notes)
        citations = build_citations(text, markers, request.passages)
        if not citations:
            notes.append("the answer cites no source")
        return self._answer(request, text, citations, refused=False, notes=notes)

    def _no_sources(self, request: LLMRequest) -> Answer:
        notes = [*request.notes, "no passages to answer from; the model was not called"]
        return self._answer(request, REFUSAL_SENTENCE, [], refused=True, notes=notes)

    def _answer(
        self, request: LLMRequest, text: str, citations: list[Citation], *, refused: bool, notes: list[str]
    ) -> Answer:
        return Answer(
            question=request.question,
            answer=text,
            citations=citations,
            engine=self.name,
            refused=refused,
            passages=list(request.passages),
            notes=notes,
        )

    # -- failures ---------------------------------------------------------------------------

    def _with_retries(self, what: str, call: Callable[[], T]) -> T:
        attempts = self.settings.llm_max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except Exception as error:
                failure = _classify(error, self.settings)
                if failure is None:
                    raise
                if not failure.retryable or attempt == attempts:
                    raise self._unavailable(what, failure, attempt) from None
                delay = self._delay(attempt, failure)
                self._log_retry(what, failure, attempt, attempts, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, failure: _Failure) -> float:
        if failure.retry_after is not None:
            return min(max(failure.retry_after, 0.0), MAX_RETRY_DELAY_S)
        backoff = BASE_RETRY_DELAY_S * 2.0 ** (attempt - 1) * random.uniform(0.8, 1.2)
        return min(backoff, MAX_RETRY_DELAY_S)

    def _log_retry(self, what: str, failure: _Failure, attempt: int, attempts: int, delay: float) -> None:
        logger.warning(
            "LLM attempt %d of %d failed while %s (%s at %s); retrying in %.2f s",
            attempt,
            attempts,
            what,
            failure.reason,
            self.server,
            delay,
        )

    def _unavailable(self, what: str, failure: _Failure, attempts: int, midstream: bool = False) -> LLMUnavailableError:
        where = f"LLM server {self.server} (model '{self.model_id}')"
        message = f"{where} failed while {what}: {failure.reason}"
        if failure.retryable:
            message += f" (after {attempts} attempt{'s' if attempts != 1 else ''})"
        if midstream:
            message += "; the answer stopped part-way through"
        message = f"{message}. {failure.hint}"
        logger.error("%s", message)
        return LLMUnavailableError(message)


# -- pure helpers ---------------------------------------------------------------------------


def build_chat_model(settings: Settings, **client_options: Any) -> BaseChatModel:
    """``ChatOpenAI`` for the configured server, with retries left to the engine.

    ``client_options`` go to ``ChatOpenAI`` as they are (``http_client``, ``http_async_client``...).
    """
    from langchain_openai import ChatOpenAI

    # ChatOpenAI sends the answer cap as ``max_completion_tokens``, which OpenAI wants but
    # llama.cpp's Python server (and other OpenAI-compatible servers) ignore, generating until
    # the context is full. Other servers get the classic ``max_tokens`` instead.
    openai_itself = settings.llm_base_url is None or "api.openai.com" in settings.llm_base_url
    cap: dict[str, Any] = (
        {"max_tokens": settings.llm_max_answer_tokens}
        if openai_itself
        else {"extra_body": {"max_tokens": settings.llm_max_answer_tokens}}
    )
    return ChatOpenAI(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key or SecretStr(NO_API_KEY),
        temperature=settings.llm_temperature,
        timeout=settings.llm_timeout_s,
        max_retries=0,  # retries are the engine's: counted, backed off and reported
        stream_chunk_timeout=settings.llm_timeout_s,
        **cap,
        **client_options,
    )


def format_source(number: int, passage: Passage) -> str:
    """One numbered source block. Text inside is data; tags that could close the block are defused."""
    fields = [
        f"Title: {passage.title or 'untitled'}",
        f"Source: {passage.source or 'unknown'}",
        f"Date: {passage.published_at or 'unknown'}",
        f"Text:\n{passage.text}",
    ]
    body = _SOURCE_TAG.sub(r"‹\1", "\n".join(fields))
    return f'<source id="{number}">\n{body}\n</source>'


def clean_markers(raw: str, sources: int) -> tuple[str, list[tuple[int, int]], list[int]]:
    """Drop citation numbers outside ``1..sources``.

    Returns the cleaned text, ``(number, offset)`` for every kept marker (offset into the
    cleaned text) and the removed numbers in order of first appearance.
    """
    out: list[str] = []
    markers: list[tuple[int, int]] = []
    removed: list[int] = []
    cursor = 0
    for match in MARKER.finditer(raw):
        out.append(raw[cursor : match.start()])
        cursor = match.end()
        numbers = marker_numbers(match)
        valid = [n for n in numbers if 1 <= n <= sources]
        removed.extend(n for n in numbers if not 1 <= n <= sources and n not in removed)
        if not valid:
            out[-1] = out[-1].rstrip(" \t")
            continue
        position = sum(len(piece) for piece in out)
        out.append(match.group(0) if len(valid) == len(numbers) else f"[{', '.join(map(str, valid))}]")
        markers.extend((n, position) for n in valid)
    out.append(raw[cursor:])
    text = "".join(out)
    stripped = text.lstrip()
    shift = len(text) - len(stripped)
    return stripped.rstrip(), [(n, offset - shift) for n, offset in markers], removed


def build_citations(text: str, markers: list[tuple[int, int]], passages: list[Passage]) -> list[Citation]:
    """One citation per cited number: the passage sentence sharing most words with a claim citing it."""
    best: dict[int, tuple[float, int, int, int]] = {}  # number -> (score, -sentence index, start, end)
    for number, offset in markers:
        passage = passages[number - 1]
        claim = overlap_words(_claim_before(text, offset))
        for index, sentence in enumerate(split_sentences(passage.text)):
            candidate = (_overlap(claim, overlap_words(sentence.text)), -index, sentence.start, sentence.end)
            if number not in best or candidate[:2] > best[number][:2]:
                best[number] = candidate
    citations = []
    for number in sorted(best):
        passage = passages[number - 1]
        _, _, start, end = best[number]
        citations.append(Citation.from_passage(number, passage, start, end))
    return citations


def _claim_before(text: str, offset: int) -> str:
    """The sentence a marker at ``offset`` ends (or, for a leading marker, the one it starts)."""
    left = MARKER.sub("", text[:offset]).rstrip()
    trimmed = left.rstrip(".!?\"'”’) ")
    boundaries = list(_SENTENCE_END.finditer(trimmed))
    claim = trimmed[boundaries[-1].end() :] if boundaries else trimmed
    if overlap_words(claim):
        return claim
    right = MARKER.sub("", text[offset:])
    following = _SENTENCE_END.search(right)
    return right[: following.start()] if following else right


def _strip_markers(text: str) -> str:
    return re.sub(r"[ \t]*" + MARKER.pattern, "", text).strip()


def _overlap(claim: set[str], sentence: set[str]) -> float:
    shared = claim & sentence
    return sum(2.0 if any(c.isdigit() for c in w) else 1.0 for w in shared)


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        line = re.sub(r"^(standalone question|question)\s*:\s*", "", line.strip(), flags=re.IGNORECASE)
        line = line.strip().strip("\"'“”").strip()
        if line:
            return line
    return ""


def _classify(error: Exception, settings: Settings) -> _Failure | None:
    """What went wrong, whether a retry may help, and what to check. None: not a model failure."""
    if isinstance(error, openai.APITimeoutError | TimeoutError):
        return _Failure(
            True,
            f"no reply within the request timeout of {settings.llm_timeout_s:g} s",
            "Check that the server is not overloaded, or raise NEWSDESK_LLM_TIMEOUT_S.",
        )
    if isinstance(error, openai.APIConnectionError):
        return _Failure(
            True,
            "could not connect",
            "Check that the server is running and that NEWSDESK_LLM_BASE_URL points at it.",
        )
    if isinstance(error, openai.RateLimitError):
        return _Failure(
            True,
            "rate limited (HTTP 429)",
            "Wait and try again, or check the account's rate limits.",
            _retry_after(error.response),
        )
    if isinstance(error, openai.InternalServerError):
        return _Failure(
            True,
            f"server error (HTTP {error.status_code}): {_message(error)}",
            "Check the server's log.",
            _retry_after(error.response),
        )
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return _Failure(
            False,
            f"the server refused the API key (HTTP {error.status_code}): {_message(error)}",
            "Check NEWSDESK_LLM_API_KEY.",
        )
    if isinstance(error, openai.NotFoundError):
        return _Failure(
            False,
            f"model '{settings.llm_model}' or endpoint not found (HTTP 404): {_message(error)}",
            "Check NEWSDESK_LLM_MODEL and NEWSDESK_LLM_BASE_URL (it usually ends in /v1).",
        )
    if isinstance(error, openai.BadRequestError):
        return _Failure(
            False,
            f"the server rejected the request (HTTP 400): {_message(error)}",
            "If it mentions the context length, lower NEWSDESK_LLM_CONTEXT_TOKENS to the model's window.",
        )
    if isinstance(error, openai.APIStatusError):
        return _Failure(
            False, f"HTTP {error.status_code}: {_message(error)}", "Check the server's log and the settings."
        )
    if isinstance(error, openai.OpenAIError):
        return _Failure(
            False,
            f"unexpected reply ({_message(error)})",
            "Check that NEWSDESK_LLM_BASE_URL is an OpenAI-compatible chat endpoint.",
        )
    return None


def _message(error: openai.OpenAIError) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return " ".join(str(getattr(error, "message", None) or error).split())


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
