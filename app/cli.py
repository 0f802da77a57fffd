"""The ``newsdesk`` command. Known errors become one readable line and exit code 1.

Only light modules are imported here (typer, rich, the settings, the errors, the parsers' names):
a command imports the store, the models and the service when it runs, so ``newsdesk serve`` has
its port open before the heavy imports start (``_listen``).
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from app.config import EVALS_DIR, LOCAL_EMBEDDING_MODEL, Settings
from app.errors import FetchError, NewsdeskError, NotFoundError, ParseError
from app.parse import FORMATS, Format

if TYPE_CHECKING:
    from app.answer import Answer, Citation, EngineName
    from app.article import Article
    from app.brief import Brief
    from app.feeds import Feed, PollSummary
    from app.ingest import IngestReport
    from app.retrieve import Filters
    from app.service import Newsdesk

cli = typer.Typer(
    name="newsdesk",
    help="Ingest news articles into Chroma; search, answer and brief from them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)
log = logging.getLogger("newsdesk.serve")


def _joined(*parts: str) -> str:
    """The parts that are there, joined with ' · ' (a missing source, date or author leaves no gap)."""
    return " · ".join(part for part in parts if part)


def _citation_line(citation: Citation) -> str:
    span = f"{citation.article_id} {citation.start}-{citation.end}"
    return _joined(citation.title, citation.source, citation.published_at[:10], span)


def _settings() -> Settings:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return settings


def _desk(settings: Settings | None = None) -> Newsdesk:
    """The service object (store, models, engines), imported only by the commands that need it."""
    from app.service import Newsdesk

    return Newsdesk(settings or _settings())


def _articles_per_second(task: Task) -> float:
    """Articles done over the time since the bar started. (Rich's own speed spans only its last few
    updates, and the ingestor reports a batch's articles together once its embedding call is done.)"""
    elapsed = task.elapsed
    return task.completed / elapsed if elapsed else 0.0


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{_articles_per_second(task):,.1f} articles/s")


class _RemainingColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        rate = _articles_per_second(task)
        if task.total is None or not rate:
            return Text("-:--:--")
        return Text(str(timedelta(seconds=round((task.total - task.completed) / rate))))


class _BarProgress:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("ingesting", total=None, chunks=0)
        self.chunks = 0

    def start(self, total_articles: int) -> None:
        self.progress.update(self.task, total=total_articles)

    def advance(self, articles: int, chunks: int) -> None:
        self.chunks += chunks
        self.progress.update(self.task, advance=articles, chunks=self.chunks)


@cli.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files or folders of articles, or web pages' URLs.")],
    fmt: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (no progress bar).")] = False,
) -> None:
    """Parse, chunk, embed and store articles (a URL: the page's article). Unchanged articles cost nothing."""
    from app.fetch import looks_like_url

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    desk = _desk()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("articles · {task.fields[chunks]} chunks ·"),
        _RateColumn(),
        TimeElapsedColumn(),
        _RemainingColumn(),
    )
    with Progress(*columns, console=err, disable=as_json) as progress:
        files = [Path(p) for p in paths if not looks_like_url(p)]
        report = desk.ingest_paths(files, fmt=_format(fmt), progress=_BarProgress(progress))
    if urls := [p for p in paths if looks_like_url(p)]:
        _add_report(report, _ingest_pages(desk, urls, quiet=as_json))
    if as_json:
        # Not asdict(report): it would deep-copy the errors, which cannot be copied.
        figures = {f.name: getattr(report, f.name) for f in fields(report) if f.name != "errors"}
        out.print_json(json.dumps({**figures, "errors": [str(e) for e in report.errors]}))
    else:
        _print_report(report)
    if report.errors:
        raise typer.Exit(1)


def _format(value: str) -> Format:
    return value  # type: ignore[return-value]


def _ingest_pages(desk: Newsdesk, urls: list[str], *, quiet: bool) -> IngestReport:
    """Fetch each page, read its article and ingest them; a page that fails is an error of the report."""
    from app.fetch import Fetcher, fetch_article

    articles: list[Article] = []
    errors: list[ParseError] = []
    with Fetcher(desk.settings) as fetcher:
        for url in urls:
            try:
                articles.append(fetch_article(fetcher, url))
            except (FetchError, ParseError) as error:
                errors.append(ParseError(url, error.problem))
    for article in articles if not quiet else ():
        out.print(escape(_joined(article.id, article.title, article.published_at[:10], article.url)))
    report = desk.ingest(articles)
    report.errors[:0] = errors
    return report


def _add_report(report: IngestReport, more: IngestReport) -> None:
    for figure in fields(report):
        if figure.name == "errors":
            report.errors.extend(more.errors)
        else:
            setattr(report, figure.name, getattr(report, figure.name) + getattr(more, figure.name))


def _print_report(report: IngestReport) -> None:
    table = Table(title="Ingest summary", show_header=False)
    rate = report.chunks_embedded / report.embedding_seconds if report.embedding_seconds else 0.0
    for label, value in (
        ("articles added", report.added),
        ("articles updated", report.updated),
        ("articles unchanged", report.unchanged),
        ("chunks embedded", report.chunks_embedded),
        ("chunks reused", report.chunks_reused),
        ("sentence vectors", report.sentences_embedded),
        ("failed inputs", len(report.errors)),
        ("time", f"{report.seconds:.1f} s (embedding {report.embedding_seconds:.1f} s, {rate:.0f} chunks/s)"),
    ):
        table.add_row(label, str(value))
    out.print(table)
    for error in report.errors:
        err.print(f"[red]error[/red] {escape(str(error))}")


@cli.command("articles")
def list_articles(
    limit: Annotated[int, typer.Option(min=1, help="How many to list.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List stored articles, newest first."""
    desk = _desk()
    records = desk.articles(limit=limit)
    if as_json:
        out.print_json(json.dumps([asdict(r) for r in records]))
        return
    table = Table()
    # The id is whole, never cut or folded, so it can be copied into 'show' and 'brief'.
    table.add_column("id", no_wrap=True, min_width=max((len(r.id) for r in records), default=2))
    table.add_column("published", no_wrap=True, min_width=10)
    table.add_column("source")
    table.add_column("title", ratio=1)
    table.add_column("chunks", no_wrap=True, justify="right")
    for r in records:
        table.add_row(escape(r.id), r.published_at[:10], escape(r.source), escape(r.title), str(r.chunk_count))
    out.print(table)
    out.print(f"{desk.stats().articles} articles stored")


@cli.command()
def show(
    article_id: Annotated[str, typer.Argument(help="Article id (see 'newsdesk articles').")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one article: fields, Quick Looks and text."""
    article = _desk().article(article_id)
    if as_json:
        out.print_json(json.dumps(asdict(article)))
        return
    out.print(f"[bold]{escape(article.title)}[/bold]")
    out.print(escape(_joined(article.source, article.published_at, article.author, article.url)))
    out.print(f"id {article.id}")
    if article.quick_looks:
        out.print("\n[bold]Quick Looks[/bold]")
        for bullet in article.quick_looks:
            out.print(f"- {escape(bullet)}")
    out.print()
    out.print(escape(article.text))


@cli.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="How many chunks.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Top passages for a query by hybrid retrieval (dense and BM25), with fused scores and character spans."""
    hits = _desk().search(query, k)
    if as_json:
        out.print_json(json.dumps([asdict(h) for h in hits]))
        return
    table = Table("#", "score", "article", "span", "text")
    for rank, hit in enumerate(hits, 1):
        table.add_row(
            str(rank),
            f"{hit.score:.3f}",
            f"{escape(hit.title)}\n[dim]{hit.article_id} · {hit.published_at[:10]}[/dim]",
            f"{hit.section}\n{hit.start}-{hit.end}",
            escape(hit.text[:300] + ("…" if len(hit.text) > 300 else "")),
        )
    out.print(table)


def _filters(sources: list[str] | None, since: datetime | None, until: datetime | None) -> Filters:
    from app.retrieve import Filters

    return Filters(
        sources=tuple(sources or ()),
        since=since.date() if since else None,
        until=until.date() if until else None,
    )


def _print_answer(answer: Answer) -> None:
    style = "yellow" if answer.refused else "bold"
    out.print(f"[{style}]{escape(answer.answer)}[/{style}]")
    if answer.degraded:
        out.print("[yellow](degraded: the LLM was unavailable; extractive answer)[/yellow]")
    for citation in answer.citations:
        out.print(f"[dim]{escape(f'[{citation.number}] {_citation_line(citation)}')}[/dim]")
    for note in answer.notes:
        out.print(f"[dim]note: {escape(note)}[/dim]")


EngineOption = Annotated[str | None, typer.Option("--engine", help="extractive or llm (default: from settings).")]
SourceOption = Annotated[list[str] | None, typer.Option("--source", help="Only this source (repeatable).")]
SinceOption = Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Published on or after.")]
UntilOption = Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Published on or before.")]


def _engine(value: str | None) -> EngineName | None:
    if value not in (None, "extractive", "llm"):
        raise typer.BadParameter("--engine must be extractive or llm")
    return value  # type: ignore[return-value]


@cli.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the Answer as JSON.")] = False,
    engine: EngineOption = None,
    k: Annotated[int | None, typer.Option("--k", min=1, max=100, help="Passages to retrieve.")] = None,
    source: SourceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Answer a question from the articles, citing the sentences it relied on."""
    if not question.strip():
        raise typer.BadParameter("the question is empty")
    desk = _desk()
    answer = desk.ask(question, filters=_filters(source, since, until), engine=_engine(engine), k=k)
    if as_json:
        out.print_json(json.dumps(asdict(answer)))
    else:
        _print_answer(answer)


@cli.command()
def brief(
    article_id: Annotated[str | None, typer.Argument(help="A stored article's id (see 'newsdesk articles').")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Brief this file without ingesting it.")] = None,
    topic: Annotated[str | None, typer.Option("--topic", help="Brief what the stored articles say on this.")] = None,
    bullets: Annotated[
        int | None, typer.Option("--bullets", min=1, max=12, help="How many bullets (default NEWSDESK_BRIEF_BULLETS).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the Brief as JSON.")] = False,
    engine: EngineOption = None,
    source: SourceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Quick Looks: short bullets, each cited to the exact sentence that supports it and verified."""
    if sum(x is not None for x in (article_id, file, topic)) != 1:
        raise typer.BadParameter("give exactly one of: ARTICLE_ID, --file PATH, --topic QUERY")
    if (source or since or until) and topic is None:
        raise typer.BadParameter("--source, --since and --until filter a --topic brief")
    desk = _desk()
    result = desk.brief(
        article_id=article_id,
        path=file,
        topic=topic,
        bullets=bullets,
        filters=_filters(source, since, until),
        engine=_engine(engine),
    )
    if as_json:
        out.print_json(json.dumps({**asdict(result), "sources": [asdict(c) for c in result.sources]}))
    else:
        _print_brief(result)


def _print_brief(result: Brief) -> None:
    out.print(f"[bold]Quick Looks[/bold] [dim]({result.kind}: {escape(result.subject)} · {result.engine})[/dim]")
    if result.degraded:
        out.print("[yellow](degraded: the LLM was unavailable; extractive brief)[/yellow]")
    for bullet in result.bullets:
        marks = "".join(f"[{c.number}]" for c in bullet.citations)
        out.print(f"- {escape(bullet.text)} {escape(marks)}")
        if bullet.note:
            out.print(f"  [yellow]{escape(bullet.note)}[/yellow]")
    if not result.bullets:
        out.print("[yellow]no bullets[/yellow]")
    for citation in result.sources:
        out.print(f"[dim]{escape(f'[{citation.number}] {_citation_line(citation)}: {citation.quote}')}[/dim]")
    for dropped in result.dropped:
        out.print(f"[yellow]dropped (unsupported): {escape(dropped.text)} ({escape(dropped.reason)})[/yellow]")
    for note in result.notes:
        out.print(f"[dim]note: {escape(note)}[/dim]")


@cli.command()
def chat(
    engine: EngineOption = None,
    source: SourceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Ask questions in turn; follow-ups use the conversation so far. Empty line or Ctrl-D ends."""
    from app.answer import Turn

    desk = _desk()
    history: list[Turn] = []
    filters = _filters(source, since, until)
    while True:
        try:
            question = input("you> ").strip()
        except EOFError:
            break
        if question in ("", "exit", "quit"):
            break
        answer = desk.ask(question, history=history, filters=filters, engine=_engine(engine))
        if answer.standalone_question and answer.standalone_question != question:
            out.print(f"[dim](searched for: {escape(answer.standalone_question)})[/dim]")
        _print_answer(answer)
        history.append(Turn(question, answer.answer))


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default NEWSDESK_HOST).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default NEWSDESK_PORT).")] = None,
) -> None:
    """Serve the HTTP API, the OpenAI-compatible chat endpoint and the web page at /.

    An empty store is first filled with the bundled corpus/ (NEWSDESK_SEED_CORPUS)."""
    settings = _settings()
    log.setLevel(logging.INFO)
    logging.getLogger("newsdesk.feeds").setLevel(logging.INFO)  # the feed watcher's polls
    sockets = _listen(host or settings.host, port or settings.port)
    _limit_malloc_arenas()

    import uvicorn  # the heavy imports (FastAPI, Chroma, LangChain, torch) only now the port is open

    from app.api import create_app

    uvicorn.Server(uvicorn.Config(create_app(settings), log_level="info")).run(sockets=sockets)


LISTEN_BACKLOG = 2048  # uvicorn's default: connections that may wait while the app is imported


def _listen(host: str, port: int) -> list[socket.socket]:
    """Bind and listen on every address ``host`` resolves to (as uvicorn does itself), before anything
    heavy is imported: a client that connects while the app loads (about 6 s on a busy 2-core machine)
    waits in the backlog and is answered once uvicorn runs, instead of being refused. A port that
    cannot be had is a ``NewsdeskError`` saying why, before any of that loading."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise NewsdeskError(f"cannot listen on {where}: {error.strerror} (--host, NEWSDESK_HOST)") from error
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        for sock in sockets:
            sock.close()
        raise NewsdeskError(f"cannot listen on {where}: {_bind_problem(error)}") from error
    log.info("listening on http://%s (requests wait until the app is loaded)", where)
    return sockets


def _bind_problem(error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return "the port is in use (another newsdesk serve?); stop that server or pick a free port with --port"
    if error.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges); pick another with --port"
    if error.errno == errno.EADDRNOTAVAIL:
        return "that is not an address of this machine; pick one with --host (0.0.0.0: all interfaces)"
    return error.strerror or str(error)


M_ARENA_MAX = -8  # glibc's mallopt parameters
M_MMAP_THRESHOLD = -3
SERVER_MALLOC_ARENAS = 2
SERVER_MMAP_THRESHOLD = 256 * 1024


def _limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas and map large blocks on their own, before the server's threads
    start. By default each busy thread may get an arena of its own, and the batch buffers of model
    and Chroma calls land inside arenas they then fragment. 5-minute soaks (bench/soak.py, one run
    each): peak RSS 1,466 MB with the default, 1,255 MB with the arena cap; with the 256 KiB mmap
    threshold too (as MALLOC_MMAP_THRESHOLD_), RSS flat after warm-up (809 -> 916 MB, peak 1,007 MB;
    without it +30 MB/min in a 600 s soak)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl has no arenas to cap)
        return
    libc.mallopt(M_ARENA_MAX, SERVER_MALLOC_ARENAS)
    libc.mallopt(M_MMAP_THRESHOLD, SERVER_MMAP_THRESHOLD)


@cli.command()
def mcp() -> None:
    """Serve the Model Context Protocol over stdin and stdout, for desktop agents (logs go to stderr).

    `newsdesk serve` serves it over streamable HTTP at /mcp."""
    from app.api.mcp import serve_stdio

    serve_stdio(_settings())


@contextmanager
def _stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A bar per named stage; yields ``advance(stage, done, total)``."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield advance


train = typer.Typer(help="Train the learned components from the shared training data.", no_args_is_help=True)
cli.add_typer(train, name="train")


@train.command("reader")
def train_reader(
    data: Annotated[
        Path | None, typer.Option(help="realtimeqa_train/ folder (default: NEWSDESK_EVAL_DATA_DIR/realtimeqa_train).")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Where the weights go (default: NEWSDESK_READER_DIR).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Passes over the training questions.")] = None,
    max_questions: Annotated[
        int | None, typer.Option(min=1, help="Use only this many questions per split (a quick check).")
    ] = None,
) -> None:
    """Fine-tune the reader (a bi-encoder) from the bundled MiniLM; print the validation figures."""
    from app.embed import build_embedder, local_model_dir
    from app.train import TrainingConfig, train_and_save

    settings = _settings()
    config = TrainingConfig()
    overrides = {"epochs": epochs, "max_questions": max_questions}
    config = TrainingConfig(**{**asdict(config), **{k: v for k, v in overrides.items() if v is not None}})
    embedder = build_embedder(settings.model_copy(update={"embedding_provider": "local"}))
    with _stage_progress() as advance:
        result = train_and_save(
            data or settings.eval_data_dir / "realtimeqa_train",
            output or settings.reader_dir,
            local_model_dir(LOCAL_EMBEDDING_MODEL),
            embedder.embed_documents,
            config,
            advance,
        )
    table = Table(title=f"validation: {config.validation_year} questions (top-1 over each shortlist)")
    for column in ("scorer", "top-1", "top-1 where reachable", "unanswered refused at 5%"):
        table.add_column(column, justify="left" if column == "scorer" else "right")
    for scorer, figures in result["figures"].items():
        table.add_row(
            scorer,
            f"{figures['top1']:.3f}",
            f"{figures['top1_reachable']:.3f}",
            f"{figures['unanswered_refused_at_5pct']:.3f}",
        )
    out.print(table)
    out.print(f"trained in {result['seconds']:.0f} s on {result['counts']}; weights in {output or settings.reader_dir}")


@train.command("validation")
def train_validation(
    output: Annotated[Path, typer.Argument(help="Folder for questions.jsonl, questions_null.jsonl, articles.jsonl.")],
    data: Annotated[
        Path | None, typer.Option(help="realtimeqa_train/ folder (default: NEWSDESK_EVAL_DATA_DIR/realtimeqa_train).")
    ] = None,
) -> None:
    """Write the engine-level validation set (the validation year's July-December quizzes) for
    `newsdesk evals questions --questions ... --articles ...`."""
    from app.train import TrainingConfig, write_validation_set

    settings = _settings()
    counts = write_validation_set(data or settings.eval_data_dir / "realtimeqa_train", output, TrainingConfig())
    out.print(f"{counts} in {output}")
    files = " ".join(f"--questions {output / name}" for name in ("questions.jsonl", "questions_null.jsonl"))
    out.print(f"score it: newsdesk evals questions {files} --articles {output / 'articles.jsonl'}")


@cli.command()
def evals(
    suites: Annotated[
        list[str] | None, typer.Argument(help="corpus, questions, briefs, conflicts (default: all).")
    ] = None,
    engine: Annotated[str, typer.Option(help="extractive or llm.")] = "extractive",
    questions: Annotated[list[Path] | None, typer.Option(help="Questions JSONL/YAML (questions suite).")] = None,
    articles: Annotated[
        Path | None, typer.Option(help="Articles JSONL (questions; or briefs with highlights).")
    ] = None,
    as_of: Annotated[bool, typer.Option(help="Answer each question from articles up to its question_date.")] = True,
    thresholds: Annotated[Path, typer.Option(help="Minimum per metric; below any fails.")] = EVALS_DIR
    / "thresholds.toml",
    report: Annotated[Path | None, typer.Option(help="Write the JSON report (per-case results) here.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the Markdown report here.")] = None,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML here.")] = None,
    compare: Annotated[Path | None, typer.Option(help="An earlier JSON report: print what changed.")] = None,
    show_failures: Annotated[int, typer.Option(help="Failed cases printed per suite.")] = 10,
) -> None:
    """Score answers and briefs against labelled facts; exit 1 when a metric is below its threshold."""
    from app.embed import build_embedder
    from app.evals import EvalOptions, run_suites
    from app.evals.report import breaches, load_thresholds, to_json, to_junit, to_markdown
    from app.evals.report import compare as compare_reports

    chosen = _engine(engine) or "extractive"
    settings = _settings()
    minimums = load_thresholds(thresholds)
    options = EvalOptions(engine=chosen, questions=tuple(questions or ()), articles=articles, as_of=as_of)
    embedder = build_embedder(settings)
    with _stage_progress() as advance:
        results = run_suites(suites or [], settings, embedder, options, advance)
    found = breaches(results, minimums)
    for result in results:
        if result.skipped:
            out.print(f"[yellow]{result.name}: skipped[/yellow] ({escape(result.skipped)})")
            continue
        table = Table(title=f"{result.name} ({len(result.cases)} cases, {chosen} engine)")
        for column in ("metric", "value", "threshold"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        below = {b.metric for b in found if b.suite == result.name}
        for metric, value in result.metrics.items():
            minimum = minimums.get(result.name, {}).get(metric)
            style = "red" if metric in below else ""
            table.add_row(metric, f"{value:.3f}", "" if minimum is None else f"{minimum:.3f}", style=style)
        out.print(table)
        if result.by_type:
            out.print(
                "  by type: "
                + ", ".join(f"{k} {v['pass_rate']:.2f} ({int(v['cases'])})" for k, v in result.by_type.items())
            )
        for note in result.notes:
            out.print(f"  [dim]{escape(note)}[/dim]")
        failures = [c for c in result.cases if not c.passed]
        for case in failures[:show_failures]:
            out.print(f"  [red]✗[/red] {escape(case.id)} ({case.type}): {escape(case.reason)}")
            out.print(f"      question: {escape(case.question[:160])}")
            out.print(f"      expected: {escape(case.expected[:160])}")
            out.print(f"      got: {escape(case.got.strip()[:240])}")
        if len(failures) > show_failures:
            out.print(f"  ... {len(failures) - show_failures} more failed case(s): see --markdown or --report")
    if compare:
        changes, deltas = compare_reports(results, compare)
        out.print(f"[bold]Compared with {compare}[/bold]: {len(changes)} case(s) changed")
        for change in changes:
            out.print(f"  {'[green]+[/green]' if change.now_passes else '[red]-[/red]'} {escape(str(change))}")
        for delta in deltas:
            out.print(f"  {escape(delta)}")
    if report:
        report.write_text(json.dumps(to_json(results, found), indent=1), encoding="utf-8")
    if markdown:
        markdown.write_text(to_markdown(results, minimums, found), encoding="utf-8")
    if junit:
        junit.write_text(to_junit(results, found), encoding="utf-8")
    if found:
        for breach in found:
            err.print(f"[red]below threshold:[/red] {breach}")
        raise typer.Exit(1)
    out.print("[green]all metrics at or above their thresholds[/green]")


@cli.command()
def delete(article_id: Annotated[str, typer.Argument(help="Article id.")]) -> None:
    """Delete an article and all its chunks."""
    _desk().delete(article_id)
    out.print(f"deleted {article_id}")


@cli.command("read-ahead")
def read_ahead() -> None:
    """Run every stored sentence the reader has not read through it once (the server does this itself)."""
    desk = _desk()
    if desk.reader is None or desk.reader.saved is None:
        out.print("nothing to do: reading ahead needs NEWSDESK_READER=learned and NEWSDESK_READ_AHEAD=true")
        return
    started = time.perf_counter()
    with _stage_progress() as advance:
        read = desk.read_ahead(lambda done, total: advance("reading sentences ahead", done, total))
    seconds = time.perf_counter() - started
    out.print(f"read {read:,} sentences ahead in {seconds:.1f} s; {len(desk.reader.saved):,} saved")
    desk.close()


@cli.command()
def stats(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """What is stored, where, and with which embedding model."""
    figures = asdict(_desk().stats())
    if as_json:
        out.print_json(json.dumps(figures))
        return
    table = Table(show_header=False)
    for key, value in figures.items():
        table.add_row(key, str(value))
    out.print(table)


@cli.command()
def stories(
    since: SinceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Stories, newest first: near-duplicate articles (wire copies, rewrites, updated versions) as one."""
    found = _desk().story_list(since.date() if since else None)
    if as_json:
        out.print_json(json.dumps([{"id": s.id, "articles": [asdict(a) for a in s.articles]} for s in found]))
        return
    for story in found:
        out.print(f"[bold]{escape(story.id)}[/bold] ({len(story.articles)} articles)")
        for article in story.articles:
            fields_ = (escape(article.id), article.published_at[:10], escape(article.source), escape(article.title))
            out.print("  " + "  ".join(fields_))
    out.print(f"{len(found)} stories")


# -- feeds: RSS and Atom feeds whose entries become articles ------------------------------

feeds = typer.Typer(help="RSS and Atom feeds whose entries are ingested as articles by 'newsdesk watch'.")
cli.add_typer(feeds, name="feeds", no_args_is_help=True)


@feeds.command("add")
def feeds_add(
    url: Annotated[str, typer.Argument(help="The feed's URL: RSS 0.9x to 2.0, or Atom.")],
    every: Annotated[
        str | None, typer.Option("--every", help="How often to poll it: 90s, 15m, 2h, 1d (NEWSDESK_FEED_INTERVAL_S).")
    ] = None,
) -> None:
    """Register a feed (or change its interval); 'newsdesk watch' and 'newsdesk serve' poll it."""
    from app.feeds import FeedRegistry, format_interval, parse_interval

    settings = _settings()
    with FeedRegistry.open(settings) as registry:
        feed, created = registry.add(url, parse_interval(every) if every else settings.feed_interval_s)
    done = "added" if created else "updated"
    out.print(f"{done} {feed.id}: {escape(feed.url)} every {format_interval(feed.interval_s)}")


@feeds.command("list")
def feeds_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The feeds: last poll, what it brought, the error of a failing feed, the next poll."""
    from app.feeds import FeedRegistry

    with FeedRegistry.open(_settings()) as registry:
        found = registry.feeds()
    if as_json:
        out.print_json(json.dumps([asdict(feed) for feed in found]))
    else:
        _print_feeds(found)


@feeds.command("remove")
def feeds_remove(
    feed: Annotated[str, typer.Argument(help="The feed's id or URL (see 'newsdesk feeds list').")],
) -> None:
    """Stop polling a feed and forget its entries; the articles it brought stay."""
    from app.feeds import FeedRegistry

    with FeedRegistry.open(_settings()) as registry:
        removed = registry.remove(feed)
    if removed is None:
        raise NewsdeskError(f"no feed '{feed}' (see 'newsdesk feeds list')")
    out.print(f"removed {removed.id}: {escape(removed.url)}")


@cli.command()
def watch(
    once: Annotated[bool, typer.Option("--once", help="Poll every feed once, print the feeds, and exit.")] = False,
) -> None:
    """Poll each feed on its interval and ingest its new and changed entries, until stopped (Ctrl-C).
    With --once, exit 1 when a feed failed."""
    from app.feeds import FeedRegistry, Watcher
    from app.fetch import Fetcher

    settings = _settings()
    logging.getLogger("newsdesk.feeds").setLevel(logging.INFO)
    desk = _desk(settings)
    with FeedRegistry.open(settings) as registry, Fetcher(settings) as fetcher:
        watcher = Watcher(registry, fetcher, desk.ingest)
        if once:
            polls = watcher.poll_all()
            _print_feeds(registry.feeds())
            if None in polls.values():
                raise typer.Exit(1)
            return
        err.print(f"watching {len(registry.feeds())} feeds (Ctrl-C stops)")
        try:
            watcher.run()
        except KeyboardInterrupt:
            err.print("stopped")


def _print_feeds(found: list[Feed]) -> None:
    from app.feeds import format_interval

    table = Table("id", "feed", "every", "last poll", "status")
    for feed in found:
        poll = feed.last_poll
        when = datetime.fromtimestamp(feed.polled_at).strftime("%Y-%m-%d %H:%M") if feed.polled_at else "never"
        status = f"[red]{escape(feed.error)}[/red]" if feed.error else "ok" if feed.polled_at else "new"
        problems = "".join(f"\n[yellow]{escape(problem)}[/yellow]" for problem in (poll.problems if poll else ()))
        table.add_row(
            feed.id,
            f"{escape(feed.title)}\n[dim]{escape(feed.url)}[/dim]",
            format_interval(feed.interval_s),
            f"{when}\n{_poll_figures(poll)}",
            status + problems,
        )
    out.print(table)
    out.print(f"{len(found)} feeds")


def _poll_figures(poll: PollSummary | None) -> str:
    if poll is None:
        return ""
    if poll.not_modified:
        return "not modified"
    return f"{poll.added} added, {poll.updated} updated, {poll.skipped} seen, {poll.from_summary} from summaries"


def main() -> None:
    try:
        cli()
    except NotFoundError as error:
        err.print(f"[red]error:[/red] {escape(str(error))} (see 'newsdesk articles')")
        sys.exit(1)
    except NewsdeskError as error:
        err.print(f"[red]error:[/red] {escape(str(error))}")
        sys.exit(1)
    except ValidationError as error:
        problems = "; ".join(f"NEWSDESK_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        err.print(f"[red]error:[/red] invalid settings: {escape(problems)}")
        sys.exit(2)
