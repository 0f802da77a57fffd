"""The JSON API: questions, search, briefs, articles and ingest jobs; health, readiness and metrics.

``POST /v1/articles`` (one JSON article) is ingested in the request: 201 with the outcome.
``POST /v1/articles/upload`` is checked in the request (type, size, text) and ingested as a job
(``app.api.jobs``): 202 with the job and its ``Location``, ``GET /v1/jobs/{id}`` until done.
Both ingest through ``Newsdesk.ingest_article``, which holds the write lock briefly, so a
short article is never stuck behind a long one; an article over NEWSDESK_MAX_ARTICLE_CHARS is
refused (413).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import DeskDep, FetcherDep, JobsDep, MetricsDep, ServiceDep, StartupDep, guard
from app.api.errors import EDGE_CODES, ApiError
from app.api.schemas import (
    AnswerOut,
    ArticleIn,
    ArticleOut,
    ArticleSummaryOut,
    AskIn,
    BriefIn,
    BriefOut,
    ErrorOut,
    HealthOut,
    IngestOut,
    JobOut,
    PassageOut,
    ReadyOut,
)
from app.article import Article
from app.config import Settings
from app.errors import InputError
from app.fetch import fetch_article
from app.parse import check_not_binary_document, describe_binary_document, parse_document, parse_record
from app.retrieve import Filters
from app.service import Newsdesk

JSON_ORIGIN = "api:request body"
UPLOAD_KINDS: dict[str, Literal["text", "markdown", "html"]] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
}
UPLOAD_TYPES: dict[str, Literal["text", "markdown", "html"]] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
}
UPLOAD_FILE = (
    f"An article file: its name ending {', '.join(UPLOAD_KINDS)}, or its Content-Type one of {', '.join(UPLOAD_TYPES)}."
)
UPLOAD_ENCODING = {
    "requestBody": {
        "content": {"multipart/form-data": {"encoding": {"file": {"contentType": ", ".join(UPLOAD_TYPES)}}}}
    }
}
ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (401, "Missing or invalid API key (when NEWSDESK_API_KEYS is set)."),
        (413, "Request body over NEWSDESK_MAX_BODY_BYTES."),
        (422, "Invalid request: the message says what to fix."),
        (429, "Rate limit reached; see the Retry-After header."),
        (503, "The article store or the embedding model is unavailable, or newsdesk is still starting (Retry-After)."),
    )
}
ENGINE_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "The LLM engine was asked for but none is configured."},
    502: {"model": ErrorOut, "description": "The LLM failed and NEWSDESK_LLM_FALLBACK_EXTRACTIVE is off."},
}

health = APIRouter(tags=["health"])
api = APIRouter(prefix="/v1", dependencies=[Depends(guard)], responses=ERRORS)
metrics = APIRouter(dependencies=[Depends(guard)], responses=ERRORS, tags=["health"])


def check_question(
    text: str, settings: Settings, what: str = "question", example: str = "the text of a question"
) -> str:
    """The stripped text of a question (or a brief's topic), refused when empty or over the length limit."""
    question = text.strip()
    if not question:
        raise InputError(f"the {what} is empty: send {example}")
    if len(question) > settings.max_question_chars:
        raise InputError(
            f"the {what} is {len(question):,} characters, over the limit of {settings.max_question_chars:,} "
            "(NEWSDESK_MAX_QUESTION_CHARS); shorten it"
        )
    return question


@health.get("/healthz", responses={503: {"model": ErrorOut, "description": "Start-up failed (see the log)."}})
async def healthz(startup: StartupDep) -> HealthOut:
    """Alive: the process answers (from its first second; 503 only when start-up failed)."""
    startup.check_alive()
    return HealthOut(status="ok")


@health.get(
    "/readyz",
    responses={503: {"model": ErrorOut, "description": "Still starting (what it is doing), or the store is down."}},
)
async def readyz(desk: DeskDep, service: ServiceDep) -> ReadyOut:
    """Ready: start-up finished (the bundled corpus ingested, models loaded) and the store answers.
    Until then 503, the message saying what start-up is doing, e.g. 'ingesting the bundled corpus: 6/14'."""
    stats = await service.run(desk.stats)
    return ReadyOut(
        status="ready",
        articles=stats.articles,
        chunks=stats.chunks,
        embedding_model=desk.embedder.name,
        engine=desk.default_engine,
    )


@metrics.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics: requests and latencies by route, retrieval and answer timings, ingests."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@api.post("/ask", tags=["questions"], responses=ENGINE_ERRORS)
async def ask(body: AskIn, desk: DeskDep, service: ServiceDep) -> AnswerOut:
    """Answer a question from the articles, citing the exact sentences (quote and character span)."""
    question = check_question(body.question, desk.settings)
    history = [turn.to_turn() for turn in body.history]
    filters = body.filters.to_filters() if body.filters else None
    desk.engine_name(body.engine)  # an unconfigured LLM is a 400 before any work
    answer = await service.run(
        partial(desk.ask, question, history=history, filters=filters, engine=body.engine, k=body.k)
    )
    return AnswerOut.of(answer, include_passages=body.include_passages)


@api.post(
    "/brief",
    tags=["briefs"],
    responses={404: {"model": ErrorOut, "description": "No stored article has that id."}, **ENGINE_ERRORS},
)
async def brief(body: BriefIn, desk: DeskDep, service: ServiceDep) -> BriefOut:
    """A Quick Looks brief of one stored article or of a topic across the stored articles: short bullets,
    most important first, each cited to the exact sentence (quote and character span) and checked by the
    grounding verifier; rejected candidates are listed in ``dropped``."""
    topic = (
        check_question(body.topic, desk.settings, "topic", "what to brief, e.g. 'Kursk civilians killed overnight'")
        if body.topic is not None
        else None
    )
    desk.engine_name(body.engine)  # an unconfigured LLM is a 400 before any work
    result = await service.run(
        partial(
            desk.brief,
            article_id=body.article_id,
            topic=topic,
            bullets=body.bullets,
            filters=body.to_filters(),
            engine=body.engine,
        )
    )
    return BriefOut.of(result)


@api.get("/search", tags=["questions"])
async def search(
    desk: DeskDep,
    service: ServiceDep,
    q: Annotated[str, Query(min_length=1, description="What to look for.")],
    k: Annotated[int, Query(ge=1, le=100, description="How many passages.")] = 5,
    source: Annotated[list[str] | None, Query(description="Only this source (repeatable).")] = None,
    since: Annotated[date | None, Query(description="Published on or after (YYYY-MM-DD).")] = None,
    until: Annotated[date | None, Query(description="Published on or before (YYYY-MM-DD).")] = None,
) -> list[PassageOut]:
    """Top passages by hybrid retrieval (dense and BM25), with their character spans."""
    query = check_question(q, desk.settings)
    if since and until and since > until:
        raise InputError("'since' must be on or before 'until'")
    filters = Filters(sources=tuple(source or ()), since=since, until=until)
    passages = await service.run(partial(desk.search, query, k, filters))
    return [PassageOut.model_validate(p) for p in passages]


@api.get("/articles", tags=["articles"])
async def list_articles(
    desk: DeskDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ArticleSummaryOut]:
    """Stored articles, newest first."""
    records = await service.run(partial(desk.articles, limit, offset))
    return [ArticleSummaryOut.model_validate(r) for r in records]


ARTICLE_TOO_LARGE: dict[int | str, dict[str, object]] = {
    413: {"model": ErrorOut, "description": "The article's text is over NEWSDESK_MAX_ARTICLE_CHARS; split it."}
}


@api.post("/articles", status_code=201, tags=["articles"], responses=ARTICLE_TOO_LARGE)
async def add_article(
    body: ArticleIn, desk: DeskDep, service: ServiceDep, fetcher: FetcherDep, jobs: JobsDep
) -> IngestOut:
    """Ingest one article given as JSON, in the request (201 when it is done). Re-sending an unchanged
    article changes nothing. A long article is better uploaded (a job you can watch). With only a
    ``url``, the page is fetched and its article extracted (422 when it cannot be fetched or read)."""
    if body.body is None and body.url is not None:
        article = await service.run(partial(fetch_article, fetcher, body.url))
    else:
        parsed = parse_record(body.model_dump(exclude_none=True), origin="request body")
        # Not a file's path: an article stored from the same file is replaced by an edited version of it.
        article = replace(parsed, origin=JSON_ORIGIN)
    check_article_size(article, desk.settings)
    work = partial(ingest_one, desk, article)
    if jobs.lane_for(len(article.text)) == "small":
        work = partial(jobs.run_small, work)
    return await service.run(work)


@api.post(
    "/articles/upload",
    status_code=202,
    tags=["articles"],
    openapi_extra=UPLOAD_ENCODING,
    responses={
        202: {"description": "Accepted: the job, also at the Location header; poll it until done or failed."},
        413: {"model": ErrorOut, "description": "Over NEWSDESK_MAX_UPLOAD_BYTES or NEWSDESK_MAX_ARTICLE_CHARS."},
        415: {"model": ErrorOut, "description": "Not a .txt, .md or .html file."},
    },
)
async def upload_article(
    desk: DeskDep,
    service: ServiceDep,
    jobs: JobsDep,
    response: Response,
    file: Annotated[UploadFile, File(description=UPLOAD_FILE)],
) -> JobOut:
    """Ingest one uploaded file as a job: Newslooks or plain text, Markdown (front matter read), or saved
    HTML. The file is checked and parsed in the request (415, 413, 422); then 202 with the job, which
    ``GET /v1/jobs/{id}`` reports until it is done (the article's id and status) or failed."""
    name = Path(file.filename or "upload").name
    suffix = Path(name).suffix.lower()
    kind = UPLOAD_KINDS.get(suffix) or UPLOAD_TYPES.get((file.content_type or "").split(";")[0].strip().lower())
    if kind is None:
        described = describe_binary_document(Path(name), await file.read(16))
        raise ApiError(
            415,
            f"unsupported file type '{suffix or file.content_type or 'unknown'}': "
            f"{described or 'upload a .txt, .md or .html file'}",
            kind="invalid_request_error",
            code="unsupported_media_type",
        )
    limit = desk.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, upload_too_large_message(limit), kind="invalid_request_error", code=EDGE_CODES[413])
    article = await service.run(partial(parse_upload, name, kind, data))
    check_article_size(article, desk.settings)
    job = jobs.submit(name, len(article.text), partial(ingest_one, desk, article))
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job.out()


@api.get("/jobs/{job_id}", tags=["articles"], responses={404: {"model": ErrorOut}})
async def get_job(job_id: str, jobs: JobsDep) -> JobOut:
    """An upload's job: status (queued, running, done, failed), progress, and the article or the error."""
    return jobs.get(job_id).out()


def upload_too_large_message(limit: int) -> str:
    return (
        f"the file is over the {limit:,}-byte upload limit (NEWSDESK_MAX_UPLOAD_BYTES); "
        "split it into smaller files, or raise the setting"
    )


def check_article_size(article: Article, settings: Settings) -> None:
    limit = settings.max_article_chars
    if len(article.text) > limit:
        raise ApiError(
            413,
            f"the article is {len(article.text):,} characters, over the {limit:,}-character limit "
            "(NEWSDESK_MAX_ARTICLE_CHARS); split it into several articles, or raise the setting",
            kind="invalid_request_error",
            code="article_too_large",
        )


def ingest_one(desk: Newsdesk, article: Article, on_batch: Callable[[int, int], None] | None = None) -> IngestOut:
    report = desk.ingest_article(article, on_batch)
    if report.errors:  # one article cannot clash with itself; kept for safety
        raise report.errors[0]
    status = "added" if report.added else "updated" if report.updated else "unchanged"
    record = desk.store.records([article.id]).get(article.id)
    return IngestOut(id=article.id, title=article.title, status=status, chunks=record.chunk_count if record else 0)


def parse_upload(name: str, kind: Literal["text", "markdown", "html"], data: bytes) -> Article:
    text = decode_upload(name, data)
    return parse_document(text, kind, origin=f"upload:{name}", fallback_title=Path(name).stem)


def decode_upload(name: str, data: bytes) -> str:
    check_not_binary_document(Path(name), data)  # a PDF or Word file named .txt: say what it is
    if b"\x00" in data[:8192]:
        raise InputError(f"{name}: looks like a binary file (it contains NUL bytes); upload UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{name}: is not valid UTF-8 (byte offset {error.start}); re-save it as UTF-8") from error
    if not text.strip():
        raise InputError(f"{name}: the file is empty")
    return text


@api.get("/articles/{article_id}", tags=["articles"], responses={404: {"model": ErrorOut}})
async def get_article(article_id: str, desk: DeskDep, service: ServiceDep) -> ArticleOut:
    """One article: fields, Quick Looks and the full text that citations' spans index into."""
    article = await service.run(partial(desk.article, article_id))
    return ArticleOut.model_validate(article)


@api.delete("/articles/{article_id}", status_code=204, tags=["articles"], responses={404: {"model": ErrorOut}})
async def delete_article(article_id: str, desk: DeskDep, service: ServiceDep) -> Response:
    """Delete an article and all its chunks."""
    await service.run(partial(desk.delete, article_id))
    return Response(status_code=204)
