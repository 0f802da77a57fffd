"""Fetching pages politely from real HTTP servers on loopback: user agent, conditional GET, timeout,
size cap, per-host delay, typed errors; and reading an article out of a page's boilerplate."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from app.config import Settings
from app.errors import FetchError, InputError, ParseError
from app.fetch import Fetched, Fetcher, check_url, page_article

from .conftest import free_port
from .feed_server import LAST_MODIFIED, Outlet, Story, article_page, outlets

STORY = Story(
    "harbour-reopens",
    "Harbour reopens after three-day storm closure",
    [
        "The harbour of Vellmar reopened on Tuesday after a three-day closure caused by the storm, "
        "the port authority said in a statement.",
        "Harbour master Ilse Brandt said 42 ships had been waiting at anchor when the port reopened, and "
        "that repairs to the breakwater are expected to cost 3.5 million euros.",
    ],
    page_date="2025-06-09T07:00:00Z",
)


@pytest.fixture
def outlet() -> Iterator[Outlet]:
    with outlets(1) as (only,):
        yield only


def fetcher(**settings: object) -> Fetcher:
    return Fetcher(Settings(**{"fetch_host_delay_s": 0.0, **settings}))  # type: ignore[arg-type]


def test_every_request_names_newsdesk_and_asks_for_what_it_wants(outlet: Outlet) -> None:
    url = outlet.put("/page", "<p>hello</p>")
    with fetcher(user_agent="newsdesk/0.1 (+mailto:desk@example.org)") as web:
        fetched = web.get(url)
    assert fetched.status == 200 and fetched.body == b"<p>hello</p>"
    headers = outlet.asked("/page")[0].headers
    assert headers["user-agent"] == "newsdesk/0.1 (+mailto:desk@example.org)"
    assert headers["accept"].startswith("text/html")


def test_conditional_get_with_etag_or_last_modified_gets_304(outlet: Outlet) -> None:
    url = outlet.put("/feed.xml", "<rss/>", content_type="application/rss+xml")
    with fetcher() as web:
        first = web.get(url)
        assert first.etag and first.last_modified == LAST_MODIFIED
        by_etag = web.get(url, etag=first.etag)
        by_date = web.get(url, last_modified=first.last_modified)
        outlet.put("/feed.xml", "<rss><channel/></rss>", content_type="application/rss+xml")
        changed = web.get(url, etag=first.etag)
    assert by_etag.not_modified and by_etag.body == b""
    assert by_date.not_modified
    assert not changed.not_modified and changed.body == b"<rss><channel/></rss>"
    sent = outlet.asked("/feed.xml")
    assert sent[1].headers["if-none-match"] == first.etag
    assert sent[2].headers["if-modified-since"] == LAST_MODIFIED


def test_a_server_that_hangs_times_out(outlet: Outlet) -> None:
    url = outlet.put("/slow", "never sent", hang=True)
    with fetcher(fetch_timeout_s=0.5) as web, pytest.raises(FetchError) as caught:
        web.get(url)
    assert caught.value.transient
    assert "not downloaded within 0.5 s (NEWSDESK_FETCH_TIMEOUT_S)" in str(caught.value)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_a_body_over_the_size_cap_is_refused(outlet: Outlet, declared: bool) -> None:
    url = outlet.put("/huge", b"x" * 5000, declare_length=declared)
    with fetcher(fetch_max_bytes=4096) as web, pytest.raises(FetchError) as caught:
        web.get(url)
    assert not caught.value.transient
    assert "over the 4,096-byte limit (NEWSDESK_FETCH_MAX_BYTES)" in str(caught.value)
    with fetcher(fetch_max_bytes=8192) as web:
        assert len(web.get(url).body) == 5000


def test_http_errors_say_whether_a_later_try_may_work(outlet: Outlet) -> None:
    broken = outlet.put("/broken", "oops", status=500, conditional=False)
    gone = outlet.put("/gone", "gone", status=410, conditional=False)
    busy = outlet.put("/busy", "later", status=429, conditional=False, headers={"Retry-After": "120"})
    with fetcher() as web:
        failures = {}
        for url in (broken, gone, busy):
            with pytest.raises(FetchError) as caught:
                web.get(url)
            failures[url] = caught.value
    assert failures[broken].transient and str(failures[broken]) == f"{broken}: HTTP 500 Internal Server Error"
    assert not failures[gone].transient and "HTTP 410" in str(failures[gone])
    assert failures[busy].transient and failures[busy].retry_after_s == 120


def test_a_refused_connection_is_a_fetch_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/feed.xml"
    with fetcher() as web, pytest.raises(FetchError) as caught:
        web.get(url)
    assert caught.value.transient and "could not connect" in str(caught.value)


@pytest.mark.parametrize("url", ["ftp://example.org/feed", "file:///etc/passwd", "example.org/feed", "http://"])
def test_only_web_addresses_are_fetched(url: str) -> None:
    with pytest.raises(InputError, match="http:// or https://"):
        check_url(url)


def test_requests_to_one_host_are_spaced_by_the_host_delay(outlet: Outlet) -> None:
    url = outlet.put("/page", "<p>hello</p>")
    with fetcher(fetch_host_delay_s=0.3) as web:
        started = time.monotonic()
        for _ in range(3):
            web.get(url)
        elapsed = time.monotonic() - started
    assert len(outlet.asked("/page")) == 3
    assert elapsed >= 0.6, "three requests to one host take at least two delays"


def test_page_article_keeps_the_article_and_drops_the_boilerplate(outlet: Outlet) -> None:
    canonical = outlet.url("/news/harbour-reopens")
    url = outlet.put("/news/harbour-reopens", article_page(STORY, canonical, "Quay Courier"))
    with fetcher() as web:
        article = page_article(web.get(f"{url}?utm_source=feed"), published_at="2025-01-31")
    assert article.title == STORY.title
    for paragraph in STORY.paragraphs:
        assert paragraph in article.text
    for boilerplate in ("Subscribe", "Most read", "Celebrity chef", "cookies", "All rights reserved", "Related"):
        assert boilerplate not in article.text
    assert article.url == canonical, "the canonical URL, not the one with the tracking query"
    assert article.published_at == "2025-06-09", "the page's own date wins over the entry's"
    assert article.source == "Quay Courier"
    assert article.id.startswith("u-")


def test_a_page_without_a_date_takes_the_entrys_not_its_copyright_year(outlet: Outlet) -> None:
    undated = Story(STORY.slug, STORY.title, STORY.paragraphs)
    url = outlet.put("/news/undated", article_page(undated, outlet.url("/news/undated"), "Quay Courier"))
    with fetcher() as web:
        page = web.get(url)
    assert page_article(page, published_at="2025-06-10T08:30:00+00:00").published_at == "2025-06-10T08:30:00+00:00"
    assert page_article(page).published_at == "", "the footer's 'Copyright 2025' is not a date"


def test_a_canonical_url_pointing_at_the_front_page_is_ignored(outlet: Outlet) -> None:
    url = outlet.put("/news/harbour", article_page(STORY, outlet.url("/"), "Quay Courier"))
    with fetcher() as web:
        assert page_article(web.get(url)).url == url


def test_a_page_that_is_not_html_or_has_no_article_is_a_parse_error() -> None:
    pdf = Fetched("http://x.test/a.pdf", 200, b"%PDF-1.7", "application/pdf", None, None)
    gallery = b"<html><head><title>Gallery</title></head><body><img src='a.jpg'></body></html>"
    empty = Fetched("http://x.test/a", 200, gallery, "text/html", None, None)
    with pytest.raises(ParseError, match="is application/pdf, not an HTML page"):
        page_article(pdf)
    with pytest.raises(ParseError, match="no article text"):
        page_article(empty)


def test_text_is_decoded_by_the_declared_charset() -> None:
    body = "<p>Dépêche de Zürich</p>".encode("latin-1")
    assert "Dépêche de Zürich" in Fetched("u", 200, body, "text/html; charset=ISO-8859-1", None, None).text()
    meta = b'<meta charset="windows-1252"><p>caf\xe9</p>'
    assert "café" in Fetched("u", 200, meta, "text/html", None, None).text()
    assert "\ufffd" in Fetched("u", 200, b"<p>\xff</p>", "text/html", None, None).text(), "undeclared: UTF-8"
