"""Outlets for the feed tests and bench/feeds.py: real HTTP servers on loopback addresses
(127.0.0.2, 127.0.0.3, ...: each a host of its own), serving feeds and article pages from memory.

A resource answers conditional GETs (ETag, Last-Modified) with 304 unless told not to, and can
answer with any status, hang (until the server closes), or stream without a Content-Length.
Every request is recorded (path, status answered, headers).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import formatdate
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LAST_MODIFIED = formatdate(1_749_542_400, usegmt=True)  # 2025-06-10


@dataclass
class Resource:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    conditional: bool = True  # ETag and Last-Modified sent, and a matching request gets 304
    hang: bool = False  # never answers (until the server closes)
    declare_length: bool = True  # False: no Content-Length, the body streamed until the connection closes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body).hexdigest()[:16] + '"'


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (a fetcher timing out) is no error here."""


@dataclass(frozen=True)
class Request:
    path: str
    status: int
    headers: dict[str, str]


class Outlet:
    """One HTTP server on ``host`` and a free port; ``put`` what it serves, ``requests`` what it was asked."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.resources: dict[str, Resource] = {}
        self.requests: list[Request] = []
        self.released = threading.Event()
        self._lock = threading.Lock()
        outlet = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outlet._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = _QuietServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"outlet-{host}", daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def put(self, path: str, body: str | bytes, **options: object) -> str:
        """Serve ``body`` at ``path`` (Resource options as keywords); returns its URL."""
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self.resources[path] = Resource(data, **options)  # type: ignore[arg-type]
        return self.url(path)

    def asked(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            resource = self.resources.get(path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        if resource is None:
            resource = Resource(b"not found", content_type="text/plain", status=404, conditional=False)
        if resource.hang:
            self._record(path, 0, headers)
            self.released.wait()
            return
        status, body = resource.status, resource.body
        extra = {"Content-Type": resource.content_type, **resource.headers}
        if resource.conditional:
            extra.update({"ETag": resource.etag, "Last-Modified": LAST_MODIFIED})
            if headers.get("if-none-match") == resource.etag or (
                "if-none-match" not in headers and headers.get("if-modified-since") == LAST_MODIFIED
            ):
                status, body = 304, b""
        self._record(path, status, headers)
        handler.send_response(status)
        for name, value in extra.items():
            handler.send_header(name, value)
        if resource.declare_length or status == 304:
            handler.send_header("Content-Length", str(len(body)))
        else:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        if status != 304:
            handler.wfile.write(body)

    def _record(self, path: str, status: int, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(Request(path, status, headers))


@contextmanager
def outlets(count: int) -> Iterator[list[Outlet]]:
    """``count`` outlets, on 127.0.0.2, 127.0.0.3, ...; closed afterwards."""
    with ExitStack() as stack:
        started = []
        for number in range(count):
            outlet = Outlet(f"127.0.0.{number + 2}")
            stack.callback(outlet.close)
            started.append(outlet)
        yield started


@dataclass(frozen=True)
class Story:
    """An article as an outlet publishes it: its page, and its entry in the outlet's feed."""

    slug: str
    title: str
    paragraphs: Sequence[str]
    published: str = "2025-06-10T08:30:00Z"  # in the feed entry
    page_date: str | None = None  # in the page's metadata; None: the page states no date
    summary: str = ""


def article_page(story: Story, canonical: str, outlet_name: str) -> str:
    """An article page with the usual boilerplate around the article: navigation, a subscription
    banner, a most-read box, related links, a cookie notice and a footer."""
    date_meta = f'<meta property="article:published_time" content="{story.page_date}">' if story.page_date else ""
    paragraphs = "\n".join(f"<p>{escape(p)}</p>" for p in story.paragraphs)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(story.title)} | {escape(outlet_name)}</title>
<link rel="canonical" href="{escape(canonical)}">
<meta property="og:title" content="{escape(story.title)}">
<meta property="og:site_name" content="{escape(outlet_name)}">
{date_meta}
</head><body>
<header><nav><a href="/">Home</a> <a href="/world">World</a> <a href="/business">Business</a>
<a href="/sport">Sport</a> <a href="/subscribe">Subscribe for 1 euro a week</a></nav></header>
<div class="banner">Breaking: sign up to our newsletter for the morning briefing</div>
<aside class="most-read"><h3>Most read</h3><ul>
<li><a href="/a">Celebrity chef opens a floating restaurant</a></li>
<li><a href="/b">Ten tips for a cheaper summer holiday</a></li></ul></aside>
<main><article><h1>{escape(story.title)}</h1>
{paragraphs}
</article>
<section class="related"><h3>Related</h3><a href="/c">More from the region</a></section></main>
<div class="cookies">We use cookies to improve your experience. Accept all cookies.</div>
<footer>Copyright 2025 {escape(outlet_name)}. All rights reserved. Privacy policy. Terms of use.</footer>
</body></html>"""


def rss(title: str, link: str, items: Sequence[tuple[Story, str]]) -> str:
    """An RSS 2.0 feed of (story, page URL)."""
    entries = "\n".join(
        f"""<item><title>{escape(story.title)}</title><link>{escape(url)}</link>
<guid isPermaLink="false">{escape(story.slug)}</guid><pubDate>{_rfc822(story.published)}</pubDate>
<description>{escape(story.summary)}</description></item>"""
        for story, url in items
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>{escape(title)}</title><link>{escape(link)}</link>
<description>{escape(title)}</description>
{entries}
</channel></rss>"""


def atom(title: str, link: str, items: Sequence[tuple[Story, str]]) -> str:
    """An Atom 1.0 feed of (story, page URL)."""
    entries = "\n".join(
        f"""<entry><title>{escape(story.title)}</title><link rel="alternate" href="{escape(url)}"/>
<id>tag:{escape(story.slug)}</id><updated>{story.published}</updated><published>{story.published}</published>
<summary>{escape(story.summary)}</summary></entry>"""
        for story, url in items
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>{escape(title)}</title>
<link href="{escape(link)}"/><id>{escape(link)}</id><updated>2025-06-10T09:00:00Z</updated>
{entries}
</feed>"""


def _rfc822(iso: str) -> str:
    return formatdate(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp(), usegmt=True)


def publish(
    outlet: Outlet, name: str, stories: Sequence[Story], *, kind: str = "rss", path: str = "", **feed_options: object
) -> str:
    """Put each story's page on ``outlet`` (canonical URL without the tracking query the feed links
    with) and a feed of them at ``path`` (default /<kind>.xml); returns the feed's URL."""
    items = []
    for story in stories:
        canonical = outlet.url(f"/news/{story.slug}")
        outlet.put(f"/news/{story.slug}", article_page(story, canonical, name))
        items.append((story, f"{canonical}?utm_source=feed"))
    document = rss(name, outlet.url("/"), items) if kind == "rss" else atom(name, outlet.url("/"), items)
    content_type = "application/rss+xml" if kind == "rss" else "application/atom+xml"
    return outlet.put(path or f"/{kind}.xml", document, content_type=content_type, **feed_options)
