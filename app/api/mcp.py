"""The Model Context Protocol server: search, answers, briefs and the stored articles, for agents.

``build_server(desk, run)`` is an ``MCPServer`` of the official ``mcp`` SDK with five tools
(``search``, ``ask``, ``brief``, ``list_articles``, ``get_article``) and every stored article as a
resource (``newsdesk://articles/{id}``, the article as JSON). A tool's result is the JSON API's model
(``app.api.schemas``), sent as structured content that matches the tool's outputSchema, citations
and all (quote, article id, span: ``quote == article.text[start:end]``), and as the same JSON in text.

Two transports: ``newsdesk mcp`` serves stdio for desktop agents (``serve_stdio``); ``newsdesk serve``
routes streamable HTTP at ``/mcp`` to ``McpEndpoint``, behind the API keys and rate limit of ``/v1``.
Blocking work runs in worker threads (``run``). Newsdesk's errors become tool errors in one place
(``_Tools.use`` with ``told``): the agent reads what to fix; server-side failures keep their details
in the log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from functools import partial
from typing import Annotated, Any, Protocol, TypeVar
from urllib.parse import quote

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, Resource, ToolAnnotations
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from app.answer import EngineName
from app.api.deps import guard
from app.api.errors import ApiError
from app.api.routes import check_question
from app.api.schemas import AnswerOut, ArticleOut, ArticleSummaryOut, BriefOut, PassageOut
from app.api.state import Service, Startup
from app.config import Settings
from app.errors import (
    ConfigError,
    EmbeddingError,
    InputError,
    LLMUnavailableError,
    NewsdeskError,
    NotConfiguredError,
    NotFoundError,
    StoreError,
)
from app.retrieve import Filters
from app.service import Newsdesk

T = TypeVar("T")
log = logging.getLogger("newsdesk.mcp")

ARTICLE_URI = "newsdesk://articles/{article_id}"
LISTED_ARTICLES = 500  # resources/list names the newest this many; any stored article can be read
INSTRUCTIONS = (
    "newsdesk answers questions from a store of news articles and cites the exact sentences. "
    "Use `ask` for a cited answer, `search` for passages, `brief` for Quick Looks bullets of an article or "
    "a topic, `list_articles` and `get_article` for the articles. Every citation's quote is "
    "article.text[start:end] of the article it names; when `refused` is true the articles do not say."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)

Query = Annotated[str, Field(min_length=1, description="What to look for.")]
Sources = Annotated[list[str] | None, Field(max_length=50, description="Only articles from these sources.")]
Since = Annotated[date | None, Field(description="Only articles published on or after this day (YYYY-MM-DD).")]
Until = Annotated[date | None, Field(description="Only articles published on or before this day (YYYY-MM-DD).")]
Engine = Annotated[EngineName | None, Field(description="extractive or llm; default: newsdesk's setting.")]
Passages = Annotated[int | None, Field(ge=1, le=100, description="Passages to retrieve; default: newsdesk's setting.")]
Bullets = Annotated[int | None, Field(ge=1, le=12, description="How many bullets; default: 4 to 8, by length.")]
ArticleId = Annotated[str, Field(min_length=1, max_length=200, description="A stored article's id.")]


class NotReadyError(Exception):
    """The desk is not built yet (the HTTP service's start-up); the message says what start-up is doing."""


class Runner(Protocol):
    def __call__(self, call: Callable[[], T], /) -> Awaitable[T]: ...


class SearchOut(BaseModel):
    passages: list[PassageOut] = Field(description="Best first; text == article.text[start:end].")


class ArticlesOut(BaseModel):
    articles: list[ArticleSummaryOut] = Field(description="Newest first.")
    next_offset: int | None = Field(description="The offset of the next page; null on the last page.")


def told(error: NewsdeskError | NotReadyError) -> str:
    """What the agent is told about a failure (and, for a server-side one, what is logged)."""
    if isinstance(error, NotFoundError):
        return f"{error}; the list_articles tool lists the stored articles and their ids"
    if isinstance(error, InputError | NotConfiguredError | NotReadyError):
        return str(error)
    log.error("%s: %s", type(error).__name__, error)
    if isinstance(error, LLMUnavailableError):
        return "the language model is unavailable; try again later, or use the extractive engine"
    if isinstance(error, StoreError | EmbeddingError):
        what = "article store" if isinstance(error, StoreError) else "embedding model"
        return f"the {what} is unavailable; try again shortly (details are in newsdesk's log)"
    if isinstance(error, ConfigError):
        return "newsdesk is misconfigured; details are in its log"
    return "the request failed; details are in newsdesk's log"


def _filters(sources: list[str] | None, since: date | None, until: date | None) -> Filters:
    if since and until and since > until:
        raise InputError("'since' must be on or before 'until'")
    return Filters(sources=tuple(sources or ()), since=since, until=until)


def _article(desk: Newsdesk, article_id: str) -> ArticleOut:
    return ArticleOut.model_validate(desk.article(article_id))


def article_uri(article_id: str) -> str:
    return ARTICLE_URI.replace("{article_id}", quote(article_id, safe=""))


class _Tools:
    """The tools and the article resources, over the desk ``desk()`` returns. The tools' docstrings and
    argument descriptions are what agents read."""

    def __init__(self, desk: Callable[[], Newsdesk], run: Runner) -> None:
        self._desk = desk
        self._run = run

    async def use(self, work: Callable[[Newsdesk], T], *, resource: bool = False) -> T:
        """``work(desk)`` in a worker thread; newsdesk's errors as the tool (or resource) error an agent reads."""
        try:
            return await self._run(partial(work, self._desk()))
        except (NewsdeskError, NotReadyError) as error:
            message = told(error)
            if not resource:
                raise ToolError(message) from error
            if isinstance(error, NotFoundError):
                raise ResourceNotFoundError(message) from error
            raise ResourceError(message) from error

    async def search(
        self,
        query: Query,
        k: Annotated[int, Field(ge=1, le=100, description="How many passages.")] = 5,
        sources: Sources = None,
        since: Since = None,
        until: Until = None,
    ) -> SearchOut:
        """The passages of the stored articles that best match a query (hybrid dense and BM25 retrieval),
        each with its article and character span."""

        def passages(desk: Newsdesk) -> SearchOut:
            found = desk.search(check_question(query, desk.settings, "query"), k, _filters(sources, since, until))
            return SearchOut(passages=[PassageOut.model_validate(p) for p in found])

        return await self.use(passages)

    async def ask(
        self,
        question: Annotated[str, Field(min_length=1, description="The question, standalone.")],
        k: Passages = None,
        engine: Engine = None,
        sources: Sources = None,
        since: Since = None,
        until: Until = None,
    ) -> AnswerOut:
        """Answer a question from the stored articles. The answer's [n] markers point at its citations:
        the exact sentences it relies on (quote, article id and title, source, date, character span).
        `refused` is true when the articles do not contain the answer."""

        def answer(desk: Newsdesk) -> AnswerOut:
            text = check_question(question, desk.settings)
            found = desk.ask(text, filters=_filters(sources, since, until), engine=engine, k=k)
            return AnswerOut.of(found)

        return await self.use(answer)

    async def brief(
        self,
        article_id: Annotated[str | None, Field(min_length=1, max_length=200, description="A stored article.")] = None,
        topic: Annotated[str | None, Field(min_length=1, description="A topic across the stored articles.")] = None,
        bullets: Bullets = None,
        engine: Engine = None,
        sources: Sources = None,
        since: Since = None,
        until: Until = None,
    ) -> BriefOut:
        """Quick Looks: short bullets, most important first, of one stored article (`article_id`) or of
        what the stored articles say on a `topic` (give exactly one). Each bullet cites the sentences it
        comes from and was checked by the grounding verifier; rejected candidates are in `dropped`.
        `sources`, `since` and `until` filter a topic brief."""

        def quick_looks(desk: Newsdesk) -> BriefOut:
            if (article_id is None) == (topic is None):
                raise InputError("give exactly one of 'article_id' (a stored article) or 'topic'")
            if article_id is not None and (sources or since or until):
                raise InputError("'sources', 'since' and 'until' filter a topic brief; remove them or give a 'topic'")
            subject = check_question(topic, desk.settings, "topic") if topic is not None else None
            filters = _filters(sources, since, until) if subject is not None else None
            result = desk.brief(article_id=article_id, topic=subject, bullets=bullets, filters=filters, engine=engine)
            return BriefOut.of(result)

        return await self.use(quick_looks)

    async def list_articles(
        self,
        limit: Annotated[int, Field(ge=1, le=1000, description="How many articles.")] = 50,
        offset: Annotated[int, Field(ge=0, description="How many of the newest to skip.")] = 0,
    ) -> ArticlesOut:
        """The stored articles, newest first: id, title, source, URL, date; page with `next_offset`."""

        def page(desk: Newsdesk) -> ArticlesOut:
            records = desk.articles(limit, offset)
            following = offset + limit if len(records) == limit else None
            return ArticlesOut(articles=[ArticleSummaryOut.model_validate(r) for r in records], next_offset=following)

        return await self.use(page)

    async def get_article(self, article_id: ArticleId) -> ArticleOut:
        """One stored article: its fields, Quick Looks and full text (the text citations' spans index into)."""
        return await self.use(lambda desk: _article(desk, article_id))

    async def article(self, article_id: str) -> str:
        """A stored article as JSON: its fields, Quick Looks and full text (the text citations' spans index into)."""
        return await self.use(lambda desk: _article(desk, article_id).model_dump_json(), resource=True)

    async def article_resources(self) -> list[Resource]:
        def listed(desk: Newsdesk) -> list[Resource]:
            return [
                Resource(
                    uri=article_uri(r.id),
                    name=r.id,
                    title=r.title,
                    description=", ".join(part for part in (r.source, r.published_at[:10]) if part) or None,
                    mime_type="application/json",
                )
                for r in desk.articles(LISTED_ARTICLES)
            ]

        return await self.use(listed, resource=True)


class _Server(MCPServer[Any]):
    """The SDK's server, listing the stored articles among its resources (it lists only fixed ones)."""

    def __init__(self, tools: _Tools) -> None:
        super().__init__("newsdesk", title="newsdesk", instructions=INSTRUCTIONS, version="0.1.0")
        self._tools = tools

    async def list_resources(self) -> list[Resource]:
        try:
            articles = await self._tools.article_resources()
        except ResourceError as error:
            raise MCPError(code=INTERNAL_ERROR, message=str(error)) from error
        return [*await super().list_resources(), *articles]


def build_server(desk: Callable[[], Newsdesk], run: Runner) -> MCPServer[Any]:
    """The MCP server over the desk ``desk()`` returns (or raises ``NotReadyError`` about); ``run`` runs
    blocking work in a worker thread."""
    tools = _Tools(desk, run)
    server = _Server(tools)
    for tool in (tools.search, tools.ask, tools.brief, tools.list_articles, tools.get_article):
        server.add_tool(tool, annotations=READ_ONLY)
    server.resource(ARTICLE_URI, name="article", mime_type="application/json")(tools.article)
    return server


def serve_stdio(settings: Settings) -> None:
    """Serve MCP over stdin and stdout until the client closes them (``newsdesk mcp``)."""
    desk = Newsdesk(settings)
    try:
        anyio.run(build_server(lambda: desk, Service(settings).run).run_stdio_async)
    finally:
        desk.close()


def desk_when_ready(startup: Startup) -> Newsdesk:
    """The desk once start-up has built it; else ``NotReadyError`` saying what start-up is doing."""
    try:
        return startup.desk()
    except ApiError as error:  # 503 while starting, or start-up failed
        raise NotReadyError(error.message) from error


class McpEndpoint:
    """``/mcp``: MCP over streamable HTTP, behind the API keys and rate limit of ``/v1`` (``deps.guard``:
    401 and 429 in the JSON API's error shape). The SDK's session manager runs inside the app's lifespan
    (``running``), a new one each time the app starts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._server: MCPServer[Any] | None = None
        self._service: Service | None = None

    @asynccontextmanager
    async def running(self, startup: Startup, service: Service) -> AsyncIterator[None]:
        server = build_server(partial(desk_when_ready, startup), service.run)
        # Only for the session manager it creates (requests are routed here, not to the app it returns).
        # The host decides whether the SDK checks Host and Origin against DNS rebinding (on loopback).
        server.streamable_http_app(host=self.settings.host, max_request_body_size=self.settings.max_body_bytes)
        async with server.session_manager.run():
            self._server, self._service = server, service
            try:
                yield
            finally:
                self._server = self._service = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._server is None or self._service is None:
            raise RuntimeError("the MCP endpoint runs only inside the app's lifespan")
        try:
            await guard(Request(scope), self._service, None)
        except ApiError as error:
            await error.response()(scope, receive, send)
            return
        await self._server.session_manager.handle_request(scope, receive, send)
