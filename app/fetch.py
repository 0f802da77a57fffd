"""Stage 0 for the web: fetch a page or a feed over HTTP, politely, and read a page as an Article.

``Fetcher.get`` is one GET with a User-Agent naming newsdesk (NEWSDESK_USER_AGENT), redirects
followed, a deadline for the whole download (NEWSDESK_FETCH_TIMEOUT_S), a size cap checked as
the body streams in (NEWSDESK_FETCH_MAX_BYTES), at most one request per host every
NEWSDESK_FETCH_HOST_DELAY_S (across threads), and conditional (If-None-Match,
If-Modified-Since) when the validators of an earlier answer are given: a 304 comes back as
``Fetched.not_modified``. Whatever fails is a ``FetchError`` naming the URL, saying whether a
later try may work.

``page_article`` reads the article of a fetched page with trafilatura (``app.parse.parse_html``):
text without the boilerplate around it, title, date, canonical URL. The article's id comes from
the canonical URL, so fetching a changed page again makes a new version of the same article.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from types import TracebackType
from urllib.parse import urljoin, urlsplit

import httpx

from app.article import Article, make_article_id, normalize_date
from app.config import Settings
from app.errors import FetchError, InputError, ParseError
from app.parse import parse_html

PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
FEED_ACCEPT = (
    "application/atom+xml,application/rss+xml,application/rdf+xml,application/xml;q=0.9,text/xml;q=0.9,*/*;q=0.5"
)
HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_REDIRECTS = 5
TRANSIENT_STATUSES = frozenset({408, 425, 429})  # and every 5xx
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class Fetched:
    """One answer: ``url`` is where the redirects ended; ``body`` is empty for a 304."""

    url: str
    status: int
    body: bytes
    content_type: str
    etag: str | None
    last_modified: str | None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self) -> str:
        """The body decoded by the charset its Content-Type or its ``<meta charset>`` names (else UTF-8)."""
        declared = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", self.content_type, re.IGNORECASE)
        sniffed = _CHARSET.search(self.body[:4096])
        charset = declared.group(1) if declared else sniffed.group(1).decode("ascii") if sniffed else "utf-8"
        try:
            return self.body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            return self.body.decode("utf-8", errors="replace")


def looks_like_url(value: str) -> bool:
    return value.strip().lower().startswith(("http://", "https://"))


def check_url(url: str) -> str:
    """The stripped URL; InputError unless it is an http(s) address with a host."""
    stripped = url.strip()
    try:
        parts = urlsplit(stripped)
        host = parts.hostname
    except ValueError as error:
        raise InputError(f"'{url}' is not a valid web address ({error})") from error
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise InputError(f"'{url}' is not a web address: give an http:// or https:// URL")
    return stripped


class Fetcher:
    """Thread-safe; one per process (it keeps the connections and each host's next turn)."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.timeout_s = settings.fetch_timeout_s
        self.max_bytes = settings.fetch_max_bytes
        self.host_delay_s = settings.fetch_host_delay_s
        self._client = httpx.Client(
            headers={"User-Agent": settings.user_agent},
            timeout=self.timeout_s,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            transport=transport,
        )
        self._lock = threading.Lock()
        self._next_turn: dict[str, float] = {}  # host -> monotonic time its next request may start

    def get(
        self, url: str, *, accept: str = PAGE_ACCEPT, etag: str | None = None, last_modified: str | None = None
    ) -> Fetched:
        url = check_url(url)
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        self._wait_turn(urlsplit(url).netloc.lower())
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                return self._read(url, response, deadline)
        except httpx.TimeoutException as error:
            raise FetchError(url, self._too_slow(), transient=True) from error
        except httpx.TooManyRedirects as error:
            raise FetchError(url, f"more than {MAX_REDIRECTS} redirects", transient=False) from error
        except httpx.ConnectError as error:
            raise FetchError(url, f"could not connect ({error})", transient=True) from error
        except httpx.HTTPError as error:  # the connection broke, the answer was not HTTP, ...
            raise FetchError(url, f"the request failed ({error or type(error).__name__})", transient=True) from error

    def _read(self, url: str, response: httpx.Response, deadline: float) -> Fetched:
        final = str(response.url)
        status = response.status_code
        if status >= 400 or status < 200:
            raise FetchError(
                final,
                f"HTTP {status} {response.reason_phrase}".rstrip(),
                transient=status >= 500 or status in TRANSIENT_STATUSES,
                retry_after_s=_retry_after(response.headers.get("retry-after")),
            )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(final, self._too_large(f"{int(declared):,} bytes"), transient=False)
        body = bytearray()
        for piece in response.iter_bytes():
            body += piece
            if len(body) > self.max_bytes:
                raise FetchError(final, self._too_large("more"), transient=False)
            if time.monotonic() > deadline:
                raise FetchError(final, self._too_slow(), transient=True)
        return Fetched(
            url=final,
            status=status,
            body=bytes(body),
            content_type=response.headers.get("content-type", ""),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )

    def _too_slow(self) -> str:
        return f"not downloaded within {self.timeout_s:g} s (NEWSDESK_FETCH_TIMEOUT_S)"

    def _too_large(self, size: str) -> str:
        return f"{size}, over the {self.max_bytes:,}-byte limit (NEWSDESK_FETCH_MAX_BYTES)"

    def _wait_turn(self, host: str) -> None:
        """Take this host's next turn (``host_delay_s`` after the last one) and sleep until it comes."""
        with self._lock:
            now = time.monotonic()
            turn = max(now, self._next_turn.get(host, 0.0))
            self._next_turn[host] = turn + self.host_delay_s
        if turn > now:
            time.sleep(turn - now)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def page_article(fetched: Fetched, *, title: str = "", published_at: str = "", source: str = "") -> Article:
    """The article of a fetched HTML page. ``title``, ``published_at`` and ``source`` (a feed entry's)
    fill what the page itself does not say. ParseError when the page is not HTML or has no article text.

    The date is the one the page's markup or URL states: trafilatura's wider search (``parse_html``)
    takes a footer's "Copyright 2025" for 1 January 2025, which would hide the entry's real date."""
    kind = fetched.content_type.split(";")[0].strip().lower()
    if kind and kind not in HTML_TYPES:
        raise ParseError(fetched.url, f"is {kind}, not an HTML page")
    import trafilatura

    text = fetched.text()
    article = parse_html(text, origin=fetched.url, fallback_title=title or fetched.url)
    url = _canonical(article.url, fetched.url)
    return replace(
        article,
        id=make_article_id(None, url, article.title, article.text),
        url=url,
        published_at=_date(trafilatura.extract_metadata(text, default_url=fetched.url, extensive=False).date)
        or _date(published_at),
        source=article.source or source,
    )


def _date(value: str | None) -> str:
    try:
        return normalize_date(value)
    except ValueError:
        return ""


def _canonical(declared: str, fetched_url: str) -> str:
    """The page's canonical URL (made absolute), unless it points at a site's front page while the
    page is not one (a common mistake that would make every article of the site the same one)."""
    if not declared:
        return fetched_url
    canonical = urljoin(fetched_url, declared)
    if urlsplit(canonical).path.strip("/") == "" and urlsplit(fetched_url).path.strip("/") != "":
        return fetched_url
    return canonical


def fetch_article(fetcher: Fetcher, url: str) -> Article:
    """Fetch a page and read its article (``newsdesk ingest URL``, ``POST /v1/articles`` with a url)."""
    return page_article(fetcher.get(url))
