"""Feeds: the registry of RSS and Atom feeds, and the watcher that polls them into the store.

The registry is SQLite beside the other local state (``DATA_DIR/feeds-<collection>.sqlite``, WAL,
one transaction per change, so a crash loses at most the change being made): each feed's URL,
interval, the validators and hash of its last document, its state (last poll, consecutive
failures, error, next poll), and every entry seen (key, content hash, page validators, article).

One poll of a feed:

1. GET the feed, conditional on the last document's ETag and Last-Modified; a 304, or the same
   bytes as last time, ends it (nothing is fetched).
2. feedparser reads it (RSS 0.9x to 2.0, RSS 1.0, Atom). A document that is not a feed fails the
   poll; malformed entries are skipped and named in the poll's problems.
3. An entry seen before whose content (link, title, summary, dates) is unchanged is not fetched
   again. A new entry, or one the feed changed, has its page fetched (conditional on that page's
   validators) and read as an article (``app.fetch.page_article``), with the entry's date when
   the page has none. A changed page is ingested as a new version of the same article.
4. A page that cannot be read as an article (not HTML, no article text, HTTP 4xx, too large) is
   replaced by the entry's own summary, in a section named ``feed summary``. A page that fails in
   a way that may pass (timeout, refused, 5xx) is tried again at the next polls, up to
   ``ENTRY_ATTEMPTS`` times in all, before falling back; after ``MAX_TRANSIENT_PAGE_FAILURES`` such
   failures in one poll the rest of its pages wait for the next one.
5. The articles are ingested ``INGEST_BATCH`` at a time (the desk's write lock is held per batch),
   and each batch's entries are recorded once it is committed: a crash re-fetches one batch.

A poll that fails (the feed down, slow, answering 5xx, too large, not a feed; the store failing)
records the error on the feed, logs it and backs off: the next poll comes after the interval times
2^(failures - 1), at most ``BACKOFF_CAP_S`` (or the interval, when longer) and no sooner than the
feed's Retry-After. Nothing stored is touched, and the other feeds carry on.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

import feedparser

from app.article import Article, Section, canonical_url, make_article_id, normalize_text, short_hash
from app.config import Settings
from app.errors import FetchError, InputError, NewsdeskError, ParseError, StoreError
from app.fetch import FEED_ACCEPT, Fetched, Fetcher, check_url, looks_like_url, page_article
from app.ingest import IngestReport

log = logging.getLogger("newsdesk.feeds")

SUMMARY_SECTION = "feed summary"
ENTRY_ATTEMPTS = 3
MAX_TRANSIENT_PAGE_FAILURES = 3
MAX_PAGES_PER_POLL = 100  # a new feed's archive comes in over several polls
INGEST_BATCH = 8
BACKOFF_CAP_S = 6 * 3600
MIN_INTERVAL_S = 60
MAX_INTERVAL_S = 7 * 86400
FEED_WORKERS = 4  # feeds polled at once; requests to one host are still spaced (Fetcher)
WATCH_TICK_S = 1.0  # how often the watcher looks for feeds that are due (and for new ones)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_BLOCK_END = re.compile(r"<\s*(?:br|/p|/div|/li|/h[1-6]|/blockquote)\s*/?\s*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")

Ingest = Callable[[Sequence[Article]], IngestReport]
Stored = Literal["page", "summary", "none"]  # what an entry brought into the store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feeds (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    interval_s INTEGER NOT NULL,
    added_at REAL NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    etag TEXT,
    last_modified TEXT,
    body_hash TEXT,
    polled_at REAL,
    ok_at REAL,
    next_at REAL NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    last_poll TEXT
);
CREATE TABLE IF NOT EXISTS entries (
    feed_id TEXT NOT NULL,
    key TEXT NOT NULL,
    entry_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    article_id TEXT,
    page_url TEXT,
    etag TEXT,
    last_modified TEXT,
    seen_at REAL NOT NULL,
    PRIMARY KEY (feed_id, key)
);
"""


def parse_interval(text: str) -> int:
    """Seconds in '90s', '15m', '2h', '1d' or '900'; InputError outside a minute to a week."""
    match = _INTERVAL.match(text)
    if not match:
        raise InputError(f"'{text}' is not an interval: write it like 90s, 15m, 2h or 1d")
    seconds = round(float(match.group(1)) * _UNITS[match.group(2).lower() or "s"])
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise InputError(f"'{text}': a feed is polled at most once a minute and at least once a week")
    return seconds


def format_interval(seconds: int) -> str:
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def feed_id(url: str) -> str:
    return f"f-{short_hash(canonical_url(url), 10)}"


@dataclass(frozen=True)
class PollSummary:
    """What one successful poll did."""

    at: float
    not_modified: bool = False  # a 304, or the same document as last time: nothing was read
    entries: int = 0  # in the document
    skipped: int = 0  # seen before, unchanged: not fetched
    fetched: int = 0  # pages requested
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # fetched (or 304) but the same article as stored
    from_summary: int = 0  # stored from the entry's own summary: the page could not be read
    failed: int = 0  # neither the page nor a summary: nothing stored
    deferred: int = 0  # left for the next poll
    problems: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class Feed:
    id: str
    url: str
    interval_s: int
    added_at: float
    next_at: float
    title: str = ""
    polled_at: float | None = None
    ok_at: float | None = None
    failures: int = 0  # consecutive failed polls
    error: str | None = None  # the last poll's failure; None once a poll succeeds
    last_poll: PollSummary | None = None  # the last successful poll
    entries_seen: int = 0
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None


@dataclass(frozen=True)
class Validators:
    """What makes the next GET of a document conditional, and tells an unchanged one."""

    etag: str | None
    last_modified: str | None
    body_hash: str | None


@dataclass(frozen=True)
class EntryState:
    """What the registry keeps of an entry: enough to skip it, or to fetch its page conditionally."""

    key: str
    entry_hash: str
    status: Stored
    attempts: int = 0  # failures that may pass since the entry last changed; > 0: fetch it again
    article_id: str | None = None
    page_url: str | None = None
    etag: str | None = None
    last_modified: str | None = None


class FeedRegistry:
    """The feeds and the entries seen, in SQLite; thread-safe, and shared with other processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"the feed registry {path} cannot be opened ({error})") from error

    @classmethod
    def open(cls, settings: Settings) -> FeedRegistry:
        return cls(settings.data_dir / f"feeds-{settings.collection}.sqlite")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> FeedRegistry:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction, its write lock taken at once: committed, or rolled back on an error."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                with self._db:
                    yield self._db
            except sqlite3.Error as error:
                raise StoreError(f"the feed registry {self.path} failed ({error})") from error

    def _rows(self, sql: str, *args: object) -> list[sqlite3.Row]:
        with self._transaction() as db:
            return db.execute(sql, args).fetchall()

    # -- feeds ------------------------------------------------------------------------

    def add(self, url: str, interval_s: int) -> tuple[Feed, bool]:
        """Register a feed, due at once; an existing one keeps its state and takes the new interval.
        Returns the feed and whether it is new."""
        url = check_url(url)
        parse_interval(str(interval_s))
        identity = feed_id(url)
        with self._transaction() as db:
            existed = db.execute("SELECT 1 FROM feeds WHERE id = ?", (identity,)).fetchone() is not None
            if existed:
                db.execute("UPDATE feeds SET interval_s = ? WHERE id = ?", (interval_s, identity))
            else:
                now = time.time()
                db.execute(
                    "INSERT INTO feeds (id, url, interval_s, added_at, next_at) VALUES (?, ?, ?, ?, ?)",
                    (identity, url, interval_s, now, now),
                )
        found = self.find(identity)
        assert found is not None
        return found, not existed

    def feeds(self) -> list[Feed]:
        return [_feed(row) for row in self._rows(f"{_FEED_QUERY} ORDER BY f.added_at")]

    def find(self, ref: str) -> Feed | None:
        """The feed with this id or URL."""
        identity = feed_id(ref) if looks_like_url(ref) else ref.strip()
        rows = self._rows(f"{_FEED_QUERY} WHERE f.id = ?", identity)
        return _feed(rows[0]) if rows else None

    def remove(self, ref: str) -> Feed | None:
        """Forget a feed (by id or URL) and its entries; the articles stay. None when unknown."""
        found = self.find(ref)
        if found is not None:
            with self._transaction() as db:
                db.execute("DELETE FROM entries WHERE feed_id = ?", (found.id,))
                db.execute("DELETE FROM feeds WHERE id = ?", (found.id,))
        return found

    def due(self, now: float) -> list[Feed]:
        return [_feed(row) for row in self._rows(f"{_FEED_QUERY} WHERE f.next_at <= ? ORDER BY f.next_at", now)]

    def record_success(self, feed: Feed, title: str, validators: Validators | None, summary: PollSummary) -> None:
        """A poll that worked: its figures, the document's validators (None: fetch it whole next
        time), no error; the next poll one interval on."""
        etag, modified, body = (
            (validators.etag, validators.last_modified, validators.body_hash)
            if validators
            else (
                None,
                None,
                None,
            )
        )
        with self._transaction() as db:
            db.execute(
                "UPDATE feeds SET title = ?, etag = ?, last_modified = ?, body_hash = ?, polled_at = ?, ok_at = ?,"
                " next_at = ?, failures = 0, error = NULL, last_poll = ? WHERE id = ?",
                (
                    title,
                    etag,
                    modified,
                    body,
                    summary.at,
                    summary.at,
                    summary.at + feed.interval_s,
                    json.dumps(asdict(summary)),
                    feed.id,
                ),
            )

    def record_failure(self, feed: Feed, error: str, at: float, retry_after_s: float | None = None) -> float:
        """A poll that failed: the error, one more failure, the next poll backed off. Returns its delay."""
        failures = feed.failures + 1
        delay = min(feed.interval_s * 2.0 ** (failures - 1), float(max(BACKOFF_CAP_S, feed.interval_s)))
        delay = max(delay, retry_after_s or 0.0)
        with self._transaction() as db:
            db.execute(
                "UPDATE feeds SET polled_at = ?, next_at = ?, failures = ?, error = ? WHERE id = ?",
                (at, at + delay, failures, error, feed.id),
            )
        return delay

    # -- entries ----------------------------------------------------------------------

    def entries(self, feed: Feed, keys: Sequence[str]) -> dict[str, EntryState]:
        found: dict[str, EntryState] = {}
        for offset in range(0, len(keys), 500):
            part = list(keys[offset : offset + 500])
            marks = ",".join("?" * len(part))
            rows = self._rows(
                "SELECT key, entry_hash, status, attempts, article_id, page_url, etag, last_modified FROM entries"
                f" WHERE feed_id = ? AND key IN ({marks})",
                feed.id,
                *part,
            )
            found.update({row["key"]: EntryState(**dict(row)) for row in rows})
        return found

    def record_entries(self, feed: Feed, states: Sequence[EntryState]) -> None:
        """Remember these entries (unless the feed was removed meanwhile)."""
        if not states:
            return
        now = time.time()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM feeds WHERE id = ?", (feed.id,)).fetchone() is None:
                return
            db.executemany(
                "INSERT OR REPLACE INTO entries (feed_id, key, entry_hash, status, attempts, article_id, page_url,"
                " etag, last_modified, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        feed.id,
                        s.key,
                        s.entry_hash,
                        s.status,
                        s.attempts,
                        s.article_id,
                        s.page_url,
                        s.etag,
                        s.last_modified,
                        now,
                    )
                    for s in states
                ],
            )


_FEED_QUERY = "SELECT f.*, (SELECT COUNT(*) FROM entries e WHERE e.feed_id = f.id) AS entries_seen FROM feeds f"


def _feed(row: sqlite3.Row) -> Feed:
    values: dict[str, Any] = dict(row)
    poll = values.pop("last_poll")
    if poll:
        figures = json.loads(poll)
        values["last_poll"] = PollSummary(**{**figures, "problems": tuple(figures["problems"])})
    return Feed(**values)


# -- reading a feed -----------------------------------------------------------------------


@dataclass(frozen=True)
class FeedEntry:
    position: int  # 1-based, in the document
    key: str  # the entry's id (guid), else its link, else a hash of its text
    link: str
    title: str
    summary: str  # plain text: the entry's content or summary, the longer
    published_at: str  # ISO, or ''
    content_hash: str


@dataclass
class FeedDocument:
    title: str
    entries: list[FeedEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_feed(fetched: Fetched) -> FeedDocument:
    """The entries of an RSS or Atom document; ParseError when it is not a feed at all."""
    parsed = feedparser.parse(
        fetched.body,
        response_headers={"content-location": fetched.url, "content-type": fetched.content_type or "application/xml"},
    )
    problem = parsed.get("bozo_exception")
    if not parsed.get("version") and not parsed.entries:
        why = f" ({problem})" if problem else ""
        raise ParseError(fetched.url, f"is not an RSS or Atom feed{why}")
    document = FeedDocument(title=plain_text(parsed.feed.get("title", "")).replace("\n", " "))
    if problem is not None and not isinstance(problem, feedparser.CharacterEncodingOverride):
        document.problems.append(f"the feed is not well-formed XML ({problem}); read what could be read")
    keys: set[str] = set()
    repeated = 0
    for position, raw in enumerate(parsed.entries, start=1):
        entry = _entry(position, raw, document.problems)
        if entry is None:
            continue
        if entry.key in keys:
            repeated += 1
            continue
        keys.add(entry.key)
        document.entries.append(entry)
    if repeated:
        document.problems.append(f"{repeated} entries repeat an entry earlier in the feed; read once")
    return document


def _entry(position: int, parsed: Any, problems: list[str]) -> FeedEntry | None:
    # A plain dict: feedparser's own answers 'updated' with 'published' (and a DeprecationWarning).
    raw: dict[str, Any] = dict(parsed)
    link = str(raw.get("link") or "").strip()
    title = plain_text(str(raw.get("title") or "")).replace("\n", " ")
    texts = [str(c.get("value") or "") for c in raw.get("content") or []] + [str(raw.get("summary") or "")]
    summary = max((plain_text(t) for t in texts), key=len)
    named = f"entry {position}" + (f" ({title[:80]})" if title else "")
    if link and not looks_like_url(link):
        problems.append(f"{named}: its link '{link[:100]}' is not a web address; skipped")
        return None
    if not link and not summary:
        problems.append(f"{named} has neither a link nor any text; skipped")
        return None
    stamp = raw.get("published_parsed") or raw.get("updated_parsed")
    published_at = datetime.fromtimestamp(calendar.timegm(stamp), UTC).isoformat() if stamp else ""
    written = raw.get("published") or raw.get("updated")
    if written and not stamp:
        problems.append(f"{named}: its date '{str(written)[:60]}' cannot be read; the page's date is used")
    key = str(raw.get("id") or "").strip() or link or f"text-{short_hash(title + chr(0) + summary)}"
    content = "\x00".join((link, title, summary, str(raw.get("published") or ""), str(raw.get("updated") or "")))
    return FeedEntry(position, key, link, title, summary, published_at, hashlib.sha256(content.encode()).hexdigest())


def plain_text(fragment: str) -> str:
    """Text of an HTML fragment (feedparser has already sanitised it): block ends become paragraphs."""
    text = _TAG.sub("", _BLOCK_END.sub("\n\n", fragment))
    return normalize_text(html.unescape(text))


def summary_article(feed: Feed, document: FeedDocument, entry: FeedEntry) -> Article | None:
    """The entry's own text as an article, in a ``feed summary`` section; None when it has none."""
    if not entry.summary:
        return None
    # An entry with no link gets an id of its own: a content-hash id would be taken for a file's.
    explicit = None if entry.link else f"{feed.id}-{short_hash(entry.key)}"
    title = entry.title or entry.summary.split("\n", 1)[0][:100]
    return Article(
        id=make_article_id(explicit, entry.link, title, entry.summary),
        title=title,
        text=entry.summary,
        sections=[Section(SUMMARY_SECTION, 0, len(entry.summary))],
        source=document.title,
        url=entry.link,
        published_at=entry.published_at,
        origin=entry.link or feed.url,
    )


# -- polling ------------------------------------------------------------------------------

Outcome = Literal["page", "not_modified", "summary", "kept", "failed", "retry"]


@dataclass(frozen=True)
class _Read:
    """One entry after its page was tried: what to remember, the article to ingest, what went wrong."""

    outcome: Outcome
    state: EntryState
    article: Article | None = None
    problem: str | None = None
    fetched: bool = True  # a request was made for it


class Watcher:
    """Polls feeds: ``poll`` one, ``poll_all`` now, or ``run`` (each feed when due, until ``stop``)."""

    def __init__(self, registry: FeedRegistry, fetcher: Fetcher, ingest: Ingest) -> None:
        """``ingest`` stores a batch of articles (``Newsdesk.ingest``)."""
        self.registry = registry
        self.fetcher = fetcher
        self.ingest = ingest
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Stop ``run``, and any poll between two pages (what is left waits for the next poll)."""
        self.stopping.set()

    def run(self) -> None:
        """Poll each feed when it is due, ``FEED_WORKERS`` at once, until ``stop``; a feed added
        meanwhile (here or by another process) is polled within ``WATCH_TICK_S``."""
        pool = ThreadPoolExecutor(FEED_WORKERS, thread_name_prefix="newsdesk-feed")
        running: dict[str, Future[PollSummary | None]] = {}
        try:
            while not self.stopping.is_set():
                for finished in [i for i, future in running.items() if future.done()]:
                    del running[finished]
                for feed in self.registry.due(time.time()):
                    if feed.id not in running:
                        running[feed.id] = pool.submit(self._poll_in_worker, feed)
                self.stopping.wait(WATCH_TICK_S)
        finally:
            self.stopping.set()
            pool.shutdown(wait=True)

    def poll_all(self) -> dict[str, PollSummary | None]:
        """Poll every feed now, due or not: feed id -> its poll (None: it failed; the feed says why)."""
        feeds = self.registry.feeds()
        with ThreadPoolExecutor(FEED_WORKERS, thread_name_prefix="newsdesk-feed") as pool:
            return dict(zip([f.id for f in feeds], pool.map(self._poll_in_worker, feeds), strict=True))

    def _poll_in_worker(self, feed: Feed) -> PollSummary | None:
        try:
            return self.poll(feed)
        except Exception:  # a worker's last word: the feed shows the failure and backs off, the rest go on
            log.exception("feed %s: the poll failed unexpectedly", feed.url)
            self.registry.record_failure(feed, "the poll failed unexpectedly; the cause is in the log", time.time())
            return None

    def poll(self, feed: Feed) -> PollSummary | None:
        """Poll one feed. None when the poll failed: the error is on the feed and in the log."""
        at = time.time()
        started = time.perf_counter()
        try:
            summary, title, validators = self._poll(feed, at)
        except NewsdeskError as error:
            retry_after = error.retry_after_s if isinstance(error, FetchError) else None
            problem = _problem_of(feed, error)
            delay = self.registry.record_failure(feed, problem, at, retry_after)
            log.warning("feed %s: %s (failure %d; next try in %.0f s)", feed.url, problem, feed.failures + 1, delay)
            return None
        summary = replace(summary, seconds=time.perf_counter() - started)
        self.registry.record_success(feed, title, validators, summary)
        log.info(
            "feed %s: %d entries, %d pages fetched, %d added, %d updated, %d from summaries, %d failed, %d deferred%s",
            feed.url,
            summary.entries,
            summary.fetched,
            summary.added,
            summary.updated,
            summary.from_summary,
            summary.failed,
            summary.deferred,
            " (not modified)" if summary.not_modified else "",
        )
        for problem in summary.problems:
            log.warning("feed %s: %s", feed.url, problem)
        return summary

    def _poll(self, feed: Feed, at: float) -> tuple[PollSummary, str, Validators | None]:
        fetched = self.fetcher.get(feed.url, accept=FEED_ACCEPT, etag=feed.etag, last_modified=feed.last_modified)
        # Not modified: the problems found in the document last time are still in it.
        unchanged = PollSummary(at, not_modified=True, problems=feed.last_poll.problems if feed.last_poll else ())
        if fetched.not_modified:
            kept = Validators(fetched.etag or feed.etag, fetched.last_modified or feed.last_modified, feed.body_hash)
            return unchanged, feed.title, kept
        validators = Validators(fetched.etag, fetched.last_modified, hashlib.sha256(fetched.body).hexdigest())
        if validators.body_hash == feed.body_hash:
            return unchanged, feed.title, validators
        document = read_feed(fetched)
        seen = self.registry.entries(feed, [e.key for e in document.entries])
        todo = [e for e in document.entries if _needs_fetch(e, seen.get(e.key))]
        reads, left = self._read_entries(feed, document, todo[:MAX_PAGES_PER_POLL], seen)
        stored = self._store(feed, reads)
        counts = {outcome: sum(r.outcome == outcome for r in reads) for outcome in get_args(Outcome)}
        deferred = max(0, len(todo) - MAX_PAGES_PER_POLL) + left + counts["retry"] + stored.deferred
        summary = PollSummary(
            at,
            entries=len(document.entries),
            skipped=len(document.entries) - len(todo),
            fetched=sum(r.fetched for r in reads),
            added=stored.added,
            updated=stored.updated,
            unchanged=stored.unchanged + counts["not_modified"] + counts["kept"],
            from_summary=counts["summary"],
            failed=counts["failed"],
            deferred=deferred,
            problems=(*document.problems, *(r.problem for r in reads if r.problem), *map(str, stored.errors)),
        )
        # With entries left over, the whole document is read again next time, not answered by a 304.
        return summary, document.title, None if deferred else validators

    def _read_entries(
        self, feed: Feed, document: FeedDocument, todo: Sequence[FeedEntry], seen: dict[str, EntryState]
    ) -> tuple[list[_Read], int]:
        """The entries' pages, in order; also how many were left for the next poll (stopping, or
        ``MAX_TRANSIENT_PAGE_FAILURES`` reached: the site is likely down)."""
        reads: list[_Read] = []
        transient = 0
        for done, entry in enumerate(todo):
            if self.stopping.is_set() or transient >= MAX_TRANSIENT_PAGE_FAILURES:
                return reads, len(todo) - done
            read = self._read_entry(feed, document, entry, seen.get(entry.key))
            transient += read.outcome == "retry"
            reads.append(read)
        return reads, 0

    def _read_entry(self, feed: Feed, document: FeedDocument, entry: FeedEntry, previous: EntryState | None) -> _Read:
        fresh = EntryState(entry.key, entry.content_hash, "none", page_url=entry.link or None)
        if not entry.link:
            return self._fallback(feed, document, entry, previous, fresh, "it has no link", fetched=False)
        same_page = previous is not None and previous.status == "page" and previous.page_url == entry.link
        try:
            page = self.fetcher.get(
                entry.link,
                etag=previous.etag if previous is not None and same_page else None,
                last_modified=previous.last_modified if previous is not None and same_page else None,
            )
        except FetchError as error:
            attempts = (previous.attempts if previous is not None else 0) + 1
            if error.transient and attempts < ENTRY_ATTEMPTS:
                waiting = replace(previous or fresh, entry_hash=entry.content_hash, attempts=attempts)
                return _Read("retry", waiting, problem=f"{entry.link}: {error.problem}; tried again at the next poll")
            return self._fallback(feed, document, entry, previous, fresh, f"the page failed ({error.problem})")
        if page.not_modified and previous is not None:
            return _Read("not_modified", replace(previous, entry_hash=entry.content_hash, attempts=0))
        try:
            article = page_article(page, title=entry.title, published_at=entry.published_at, source=document.title)
        except ParseError as error:
            return self._fallback(feed, document, entry, previous, fresh, f"the page cannot be read ({error.problem})")
        state = replace(fresh, status="page", article_id=article.id, etag=page.etag, last_modified=page.last_modified)
        return _Read("page", state, article)

    def _fallback(
        self,
        feed: Feed,
        document: FeedDocument,
        entry: FeedEntry,
        previous: EntryState | None,
        fresh: EntryState,
        why: str,
        *,
        fetched: bool = True,
    ) -> _Read:
        """The entry's summary instead of its page; but an article already stored for the entry is kept."""
        where = entry.link or f"entry {entry.position}"
        if previous is not None and previous.status != "none":
            kept = replace(previous, entry_hash=entry.content_hash, attempts=0)
            return _Read("kept", kept, None, f"{where}: {why}; kept the stored article", fetched)
        article = summary_article(feed, document, entry)
        if article is None:
            return _Read("failed", fresh, None, f"{where}: {why}, and it has no summary; skipped", fetched)
        problem = f"{where}: {why}; stored the entry's summary instead" if entry.link else None
        return _Read("summary", replace(fresh, status="summary", article_id=article.id), article, problem, fetched)

    def _store(self, feed: Feed, reads: Sequence[_Read]) -> _Stored:
        """Ingest the articles ``INGEST_BATCH`` at a time, recording each batch's entries once it is
        committed, then the entries that brought none. Stops between batches when the watcher stops."""
        stored = _Stored()
        with_articles = [r for r in reads if r.article is not None]
        for offset in range(0, len(with_articles), INGEST_BATCH):
            if self.stopping.is_set():
                stored.deferred = len(with_articles) - offset
                break
            batch = with_articles[offset : offset + INGEST_BATCH]
            stored.add(self.ingest([r.article for r in batch if r.article is not None]))
            self.registry.record_entries(feed, [r.state for r in batch])
        self.registry.record_entries(feed, [r.state for r in reads if r.article is None])
        return stored


@dataclass
class _Stored:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deferred: int = 0
    errors: list[ParseError] = field(default_factory=list)

    def add(self, report: IngestReport) -> None:
        self.added += report.added
        self.updated += report.updated
        self.unchanged += report.unchanged
        self.errors.extend(report.errors)


def _problem_of(feed: Feed, error: NewsdeskError) -> str:
    """The error without the feed's URL in front (the feed is named wherever it is shown)."""
    if isinstance(error, FetchError) and error.url == feed.url:
        return error.problem
    if isinstance(error, ParseError) and error.source == feed.url:
        return error.problem
    return str(error)


def _needs_fetch(entry: FeedEntry, previous: EntryState | None) -> bool:
    return previous is None or previous.attempts > 0 or previous.entry_hash != entry.content_hash
