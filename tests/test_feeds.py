"""Feeds end to end: outlets on loopback serve RSS and Atom feeds and article pages wrapped in
boilerplate; the watcher polls them into a real store (Chroma, the bundled model). Feeds that 304,
500, hang, are not feeds, are too large or hold malformed entries; pages that cannot be read; the
registry, the watch loop, the HTTP routes and the commands."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api import create_app
from app.article import Article, canonical_url, short_hash
from app.config import Settings
from app.embed import Embedder
from app.errors import InputError, NotFoundError
from app.feeds import (
    BACKOFF_CAP_S,
    ENTRY_ATTEMPTS,
    SUMMARY_SECTION,
    Feed,
    FeedRegistry,
    PollSummary,
    Watcher,
    format_interval,
    parse_interval,
)
from app.fetch import Fetcher
from app.service import Newsdesk

from .conftest import free_port
from .feed_server import Outlet, Story, article_page, outlets, publish, rss
from .live_service import wait_until_ready

pytestmark = pytest.mark.slow

STORIES = [
    Story(
        "harbour-reopens",
        "Vellmar harbour reopens after three-day storm closure",
        [
            "The harbour of Vellmar reopened on Tuesday after a three-day closure caused by the storm, the port "
            "authority said in a statement.",
            "Harbour master Ilse Brandt said 42 ships had been waiting at anchor when the port reopened, and that "
            "repairs to the breakwater are expected to cost 3.5 million euros.",
        ],
        published="2025-06-10T08:30:00Z",
        page_date="2025-06-10T07:00:00Z",
        summary="The harbour reopened after the storm.",
    ),
    Story(
        "tram-line-approved",
        "City council approves new tram line to the airport",
        [
            "The city council of Odderby voted 31 to 12 on Monday to build a tram line linking the central station "
            "with the airport, ending a debate that lasted six years.",
            "Construction of the 14-kilometre line is due to start next spring and cost 420 million euros, of which "
            "the national government will pay half.",
        ],
        published="2025-06-09T16:00:00Z",
        summary="Odderby will build a tram line to its airport.",
    ),
    Story(
        "wheat-harvest",
        "Drought cuts the wheat harvest by a fifth",
        [
            "Farmers in the eastern plains expect to harvest a fifth less wheat than last year after the driest "
            "spring in half a century, the farmers' union said on Wednesday.",
            "The union asked the agriculture ministry for emergency aid of 80 million euros and for a delay on "
            "repayments of loans taken out after last year's floods.",
        ],
        published="2025-06-11T06:15:00Z",
        page_date="2025-06-11T05:00:00Z",
        summary="The wheat harvest will fall by a fifth.",
    ),
    Story(
        "museum-theft",
        "Thieves take two paintings from the maritime museum",
        [
            "Two paintings by the marine painter Hendrik Vos were stolen overnight from the maritime museum in "
            "Kelsborg, police said, after the thieves cut through a skylight.",
            "The museum, which will stay closed until Friday, said the works were insured but that their value to "
            "the town's history could not be replaced.",
        ],
        published="2025-06-12T09:45:00Z",
        summary="Two paintings were stolen from the maritime museum.",
    ),
]
BOILERPLATE = ("Subscribe", "Most read", "Celebrity chef", "cookies", "All rights reserved", "newsletter")


def article_id(url: str) -> str:
    return f"u-{short_hash(canonical_url(url))}"


@dataclass
class Newsroom:
    outlets: list[Outlet]
    settings: Settings
    desk: Newsdesk
    registry: FeedRegistry
    watcher: Watcher

    def add(self, url: str, every: int = 900) -> Feed:
        return self.registry.add(url, every)[0]

    def feed(self, url: str) -> Feed:
        found = self.registry.find(url)
        assert found is not None
        return found

    def poll(self, url: str) -> PollSummary | None:
        return self.watcher.poll(self.feed(url))

    def article(self, page_url: str) -> Article:
        return self.desk.article(article_id(page_url))

    def page(self, outlet: int, story: Story) -> str:
        return self.outlets[outlet].url(f"/news/{story.slug}")


@pytest.fixture
def newsroom(tmp_path: Path, embedder: Embedder) -> Iterator[Newsroom]:
    settings = Settings(data_dir=tmp_path, fetch_host_delay_s=0.0, fetch_timeout_s=1.5, fetch_max_bytes=100_000)
    with outlets(2) as sites, FeedRegistry.open(settings) as registry, Fetcher(settings) as fetcher:
        desk = Newsdesk(settings, embedder=embedder)
        try:
            yield Newsroom(sites, settings, desk, registry, Watcher(registry, fetcher, desk.ingest))
        finally:
            desk.close()


def test_rss_and_atom_entries_become_articles_read_from_their_pages(newsroom: Newsroom) -> None:
    courier = publish(newsroom.outlets[0], "Quay Courier", STORIES[:2], kind="rss")
    herald = publish(newsroom.outlets[1], "Plains Herald", STORIES[2:], kind="atom")
    newsroom.add(courier)
    newsroom.add(herald)

    polls = newsroom.watcher.poll_all()

    for poll in polls.values():
        assert poll is not None and (poll.entries, poll.fetched, poll.added, poll.problems) == (2, 2, 2, ())
    harbour = newsroom.article(newsroom.page(0, STORIES[0]))
    assert harbour.title == STORIES[0].title
    assert all(paragraph in harbour.text for paragraph in STORIES[0].paragraphs)
    assert not [junk for junk in BOILERPLATE if junk in harbour.text], "the page's boilerplate is not the article"
    assert harbour.url == newsroom.page(0, STORIES[0]), "the canonical URL, not the feed's link with its tracking query"
    assert harbour.published_at == "2025-06-10", "the page's own date"
    assert harbour.source == "Quay Courier"
    tram = newsroom.article(newsroom.page(0, STORIES[1]))
    assert tram.published_at == "2025-06-09T16:00:00+00:00", "the page states no date: the entry's"
    museum = newsroom.article(newsroom.page(1, STORIES[3]))
    assert museum.source == "Plains Herald" and museum.published_at == "2025-06-12T09:45:00+00:00"
    listed = {feed.url: feed for feed in newsroom.registry.feeds()}
    assert (listed[courier].title, listed[herald].title) == ("Quay Courier", "Plains Herald")
    assert all(feed.entries_seen == 2 and feed.error is None and feed.failures == 0 for feed in listed.values())


def test_a_second_poll_fetches_nothing_unchanged(newsroom: Newsroom) -> None:
    conditional = publish(newsroom.outlets[0], "Quay Courier", STORIES[:2])
    plain = publish(newsroom.outlets[1], "Plains Herald", STORIES[2:], conditional=False)
    newsroom.add(conditional)
    newsroom.add(plain)
    newsroom.watcher.poll_all()
    asked = [len(outlet.asked()) for outlet in newsroom.outlets]

    again = newsroom.watcher.poll_all()

    assert all(poll is not None and poll.not_modified and poll.fetched == 0 for poll in again.values())
    new_requests = [outlet.asked()[count:] for outlet, count in zip(newsroom.outlets, asked, strict=True)]
    assert [(r.path, r.status) for r in new_requests[0]] == [("/rss.xml", 304)], "a conditional GET, answered 304"
    assert new_requests[0][0].headers["if-none-match"]
    assert [r.path for r in new_requests[1]] == ["/rss.xml"], "the same document: no page is fetched"
    assert newsroom.desk.stats().articles == 4


def test_seen_entries_are_not_fetched_again_and_a_changed_page_is_a_new_version(newsroom: Newsroom) -> None:
    outlet = newsroom.outlets[0]
    harbour, tram, wheat, museum = STORIES
    feed = publish(outlet, "Quay Courier", [harbour, tram, museum], conditional=False)
    newsroom.add(feed)
    assert newsroom.poll(feed) is not None
    first = newsroom.article(newsroom.page(0, harbour))

    revised = replace(
        harbour,
        paragraphs=[*harbour.paragraphs, "Ferry services to the islands resumed on Wednesday morning."],
        published="2025-06-10T12:00:00Z",
    )
    retitled_entry = replace(museum, summary="Police are looking for two men seen near the museum.")
    publish(outlet, "Quay Courier", [revised, tram, retitled_entry, wheat], conditional=False)
    poll = newsroom.poll(feed)

    assert poll is not None
    assert (poll.entries, poll.skipped, poll.fetched) == (4, 1, 3), "the unchanged tram entry is not fetched again"
    assert (poll.added, poll.updated, poll.unchanged) == (1, 1, 1)
    assert [r.status for r in outlet.asked(f"/news/{tram.slug}")] == [200]
    assert [r.status for r in outlet.asked(f"/news/{museum.slug}")] == [200, 304], "its page is asked conditionally"
    second = newsroom.article(newsroom.page(0, harbour))
    assert second.id == first.id and "Ferry services" in second.text and "Ferry services" not in first.text
    assert newsroom.desk.stats().articles == 4, "the new version replaced the old one"


def test_failing_feeds_get_their_own_error_and_the_others_carry_on(
    newsroom: Newsroom, caplog: pytest.LogCaptureFixture
) -> None:
    good_site, bad_site = newsroom.outlets
    good = publish(good_site, "Quay Courier", STORIES[:2])
    newsroom.add(good)
    newsroom.watcher.poll_all()
    stored = {a.id: a.text for a in newsroom.desk.store.get_articles([r.id for r in newsroom.desk.articles()])}

    broken = {
        bad_site.put("/down.xml", "oops", status=500, conditional=False): "HTTP 500 Internal Server Error",
        bad_site.put("/slow.xml", "", hang=True): "not downloaded within 1.5 s (NEWSDESK_FETCH_TIMEOUT_S)",
        bad_site.put("/page.xml", article_page(STORIES[3], "", "Herald")): "is not an RSS or Atom feed",
        bad_site.put("/huge.xml", rss("Huge", "", []).replace("</channel>", "x" * 200_000 + "</channel>")): (
            "over the 100,000-byte limit (NEWSDESK_FETCH_MAX_BYTES)"
        ),
        f"http://127.0.0.1:{free_port()}/gone.xml": "could not connect",
    }
    for url in broken:
        newsroom.add(url, every=600)
    publish(good_site, "Quay Courier", STORIES[:3])
    with caplog.at_level(logging.WARNING, logger="newsdesk.feeds"):
        polls = newsroom.watcher.poll_all()

    assert polls[newsroom.feed(good).id] is not None and polls[newsroom.feed(good).id].added == 1  # type: ignore[union-attr]
    for url, problem in broken.items():
        feed = newsroom.feed(url)
        assert polls[feed.id] is None
        assert feed.error is not None and problem in feed.error, feed.error
        assert feed.failures == 1 and feed.polled_at is not None
        assert feed.next_at - feed.polled_at == pytest.approx(600), "the first retry waits one interval"
        assert any(problem in record.getMessage() for record in caplog.records), "and it is logged"
    after = newsroom.desk.store.get_articles(list(stored))
    assert {a.id: a.text for a in after} == stored and newsroom.desk.stats().articles == 3, "nothing stored touched"

    assert newsroom.poll(next(iter(broken))) is None
    down = newsroom.feed(next(iter(broken)))
    assert down.failures == 2 and down.next_at - (down.polled_at or 0) == pytest.approx(1200), "then twice as long"


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after(tmp_path: Path) -> None:
    with FeedRegistry(tmp_path / "feeds.sqlite") as registry:
        feed = registry.add("http://127.0.0.2:9/feed.xml", 900)[0]
        delays = []
        for _ in range(7):
            delays.append(registry.record_failure(feed, "HTTP 503", 1000.0))
            feed = registry.find(feed.id) or feed
        assert delays == [900, 1800, 3600, 7200, 14400, BACKOFF_CAP_S, BACKOFF_CAP_S]
        assert registry.record_failure(feed, "HTTP 429", 1000.0, retry_after_s=30_000) == 30_000
        registry.record_success(feed, "T", None, PollSummary(2000.0))
        healed = registry.find(feed.id)
    assert healed is not None and (healed.failures, healed.error, healed.next_at) == (0, None, 2900.0)


def test_malformed_entries_are_skipped_and_named_and_the_rest_ingested(newsroom: Newsroom) -> None:
    outlet = newsroom.outlets[0]
    harbour = STORIES[0]
    page = outlet.put(f"/news/{harbour.slug}", article_page(harbour, outlet.url(f"/news/{harbour.slug}"), "Courier"))
    tram = STORIES[1]
    tram_page = outlet.put(f"/news/{tram.slug}", article_page(tram, outlet.url(f"/news/{tram.slug}"), "Courier"))
    document = f"""<?xml version="1.0"?><rss version="2.0"><channel><title>Quay Courier</title>
<item><title>{harbour.title}</title><link>{page}</link><guid>h1</guid></item>
<item><title>Untitled</title></item>
<item><title>Click me</title><link>javascript:alert(1)</link><guid>js</guid></item>
<item><title>{tram.title}</title><link>{tram_page}</link><guid>t1</guid><pubDate>next Tuesday-ish</pubDate></item>
<item><title>{harbour.title} (again)</title><link>{page}</link><guid>h1</guid></item>
<item><title>Markets &amp; more</title><guid>brief-1</guid>
<description>Shares rose 2 percent in early trading.</description></item>
<item><title>AT&T agrees takeover</title><link>{page}#x</link><guid>bad-xml</guid></item>
</channel></rss>"""
    feed = outlet.put("/rss.xml", document, content_type="application/rss+xml")
    newsroom.add(feed)

    poll = newsroom.poll(feed)

    assert poll is not None
    problems = "\n".join(poll.problems)
    assert "not well-formed" in problems, "the unescaped '&' breaks the XML; what can be read is read"
    assert "entry 2 (Untitled) has neither a link nor any text; skipped" in problems
    assert "entry 3 (Click me): its link 'javascript:alert(1)' is not a web address; skipped" in problems
    assert "its date 'next Tuesday-ish' cannot be read" in problems
    assert "repeat an entry earlier in the feed" in problems
    assert newsroom.article(page).title == harbour.title
    assert newsroom.article(tram_page).published_at == "", "no readable date anywhere"
    brief = [
        a for a in newsroom.desk.store.get_articles([r.id for r in newsroom.desk.articles()]) if "Shares" in a.text
    ]
    assert len(brief) == 1 and brief[0].sections[0].name == SUMMARY_SECTION, "no link: the entry's own text"
    again = newsroom.poll(feed)
    assert again is not None and again.not_modified and again.problems == poll.problems, "still in the document"


def test_a_page_that_cannot_be_read_falls_back_to_the_entry_summary(newsroom: Newsroom) -> None:
    outlet = newsroom.outlets[0]
    gone, pdf, bare = STORIES[0], STORIES[1], replace(STORIES[2], summary="")
    feed = outlet.put(
        "/rss.xml",
        rss("Quay Courier", outlet.url("/"), [(s, outlet.url(f"/news/{s.slug}")) for s in (gone, pdf, bare)]),
        content_type="application/rss+xml",
    )
    outlet.put(f"/news/{pdf.slug}", b"%PDF-1.7 ...", content_type="application/pdf")
    newsroom.add(feed)

    poll = newsroom.poll(feed)

    assert poll is not None and (poll.from_summary, poll.failed, poll.added) == (2, 1, 2)
    fallback = newsroom.article(newsroom.page(0, gone))
    assert fallback.text == gone.summary and fallback.title == gone.title
    assert [s.name for s in fallback.sections] == [SUMMARY_SECTION], "marked as the entry's summary"
    assert fallback.published_at == "2025-06-10T08:30:00+00:00"
    problems = "\n".join(poll.problems)
    assert "the page failed (HTTP 404 Not Found); stored the entry's summary instead" in problems
    assert "is application/pdf, not an HTML page" in problems
    assert "and it has no summary; skipped" in problems
    with pytest.raises(NotFoundError):
        newsroom.article(newsroom.page(0, bare))


def test_a_page_that_may_come_back_is_tried_at_the_next_polls_then_replaced_by_its_summary(
    newsroom: Newsroom,
) -> None:
    outlet = newsroom.outlets[0]
    flaky, down = STORIES[0], STORIES[1]
    feed = publish(outlet, "Quay Courier", [flaky, down])
    for story in (flaky, down):
        outlet.put(f"/news/{story.slug}", "busy", status=503, conditional=False)
    newsroom.add(feed)

    first = newsroom.poll(feed)
    assert first is not None and (first.added, first.deferred) == (0, 2)
    assert "tried again at the next poll" in first.problems[0]

    outlet.put(
        f"/news/{flaky.slug}", article_page(flaky, outlet.url(f"/news/{flaky.slug}"), "Quay Courier"), conditional=False
    )
    second = newsroom.poll(feed)
    assert second is not None and (second.added, second.deferred) == (1, 1)
    assert "if-none-match" not in outlet.asked("/rss.xml")[1].headers, "entries were left: the feed is read whole"
    assert flaky.paragraphs[0] in newsroom.article(newsroom.page(0, flaky)).text

    third = newsroom.poll(feed)
    assert third is not None and (third.from_summary, third.deferred) == (1, 0)
    assert len(outlet.asked(f"/news/{down.slug}")) == ENTRY_ATTEMPTS
    fallback = newsroom.article(f"{newsroom.page(0, down)}?utm_source=feed")
    assert fallback.sections[0].name == SUMMARY_SECTION, "under the entry's link: the page never said its own"
    assert outlet.asked("/rss.xml")[-1].headers.get("if-none-match") is None
    assert newsroom.poll(feed) is not None and outlet.asked("/rss.xml")[-1].status == 304, "all settled: 304 again"


def test_the_registry_survives_reopening_and_removing_a_feed_keeps_its_articles(newsroom: Newsroom) -> None:
    feed = publish(newsroom.outlets[0], "Quay Courier", STORIES[:2])
    added, created = newsroom.registry.add(feed, 900)
    assert created and added.id.startswith("f-") and added.next_at <= time.time()
    newsroom.watcher.poll_all()

    with FeedRegistry.open(newsroom.settings) as reopened:
        again, created = reopened.add(feed, 3600)
        assert not created and again.interval_s == 3600 and again.entries_seen == 2 and again.title == "Quay Courier"
        assert reopened.find(added.id) == reopened.find(feed)
        removed = reopened.remove(feed)
        assert removed is not None and removed.id == added.id
        assert reopened.find(feed) is None and reopened.remove(feed) is None
        assert reopened.add(feed, 900)[0].entries_seen == 0, "its entries were forgotten with it"
    assert newsroom.desk.stats().articles == 2
    with pytest.raises(InputError, match="not a web address"):
        newsroom.registry.add("feed.example/rss", 900)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("900", 900), (" 1.5h ", 5400)]
)
def test_intervals_are_read_in_seconds_minutes_hours_or_days(text: str, seconds: int) -> None:
    assert parse_interval(text) == seconds
    assert parse_interval(format_interval(seconds)) == seconds


@pytest.mark.parametrize("text", ["10s", "8d", "soon", "15 minutes", ""])
def test_intervals_outside_a_minute_to_a_week_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_interval(text)


def test_watch_polls_each_feed_when_due_until_stopped(newsroom: Newsroom) -> None:
    thread = threading.Thread(target=newsroom.watcher.run, name="test-watch")
    thread.start()
    try:
        feed = newsroom.add(publish(newsroom.outlets[0], "Quay Courier", STORIES[:2]))
        wait_for(lambda: newsroom.feed(feed.url).polled_at is not None)
    finally:
        newsroom.watcher.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    polled = newsroom.feed(feed.url)
    assert polled.last_poll is not None and polled.last_poll.added == 2
    assert polled.next_at == pytest.approx(polled.last_poll.at + 900)


def wait_for(condition: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true in time")
        time.sleep(0.1)


# -- over HTTP ------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path, embedder: Embedder) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, seed_corpus=False, rate_limit_per_minute=0, fetch_host_delay_s=0.0)
    with TestClient(create_app(settings, embedder=embedder)) as test_client:
        wait_until_ready(test_client.app)  # type: ignore[arg-type]
        yield test_client


def test_feeds_over_http_are_polled_in_the_background(client: TestClient) -> None:
    with outlets(1) as (outlet,):
        url = publish(outlet, "Quay Courier", STORIES[:2])
        added = client.post("/v1/feeds", json={"url": url, "every": "15m"})
        assert added.status_code == 201, added.text
        feed = added.json()
        assert (feed["url"], feed["every"], feed["status"]) == (url, "15m", "new")

        wait_for(lambda: client.get(f"/v1/feeds/{feed['id']}").json()["status"] == "ok")
        polled = client.get("/v1/feeds").json()
        assert [f["id"] for f in polled] == [feed["id"]]
        assert polled[0]["last_poll"]["added"] == 2 and polled[0]["title"] == "Quay Courier"
        titles = {a["title"] for a in client.get("/v1/articles").json()}
        assert {s.title for s in STORIES[:2]} <= titles
        answer = client.post("/v1/ask", json={"question": "How many ships were waiting at anchor?"}).json()
        assert "42" in answer["answer"], "answered from the feed's article"

        again = client.post("/v1/feeds", json={"url": url, "every": "1h"})
        assert again.status_code == 200 and again.json()["every"] == "1h"
        assert client.post("/v1/feeds", json={"url": "ftp://example.org/rss"}).status_code == 422
        assert "at most once a minute" in client.post("/v1/feeds", json={"url": url, "every": "5s"}).text
        assert client.delete(f"/v1/feeds/{feed['id']}").status_code == 204
        assert client.get(f"/v1/feeds/{feed['id']}").status_code == 404
        missing = client.delete(f"/v1/feeds/{feed['id']}")
        assert missing.status_code == 404 and "see GET /v1/feeds" in missing.json()["error"]["message"]


def test_post_article_with_only_a_url_fetches_the_page(client: TestClient) -> None:
    with outlets(1) as (outlet,):
        story = STORIES[2]
        page = outlet.put(f"/news/{story.slug}", article_page(story, outlet.url(f"/news/{story.slug}"), "Herald"))
        added = client.post("/v1/articles", json={"url": f"{page}?utm_source=mail"})
        assert added.status_code == 201, added.text
        assert (added.json()["id"], added.json()["title"]) == (article_id(page), story.title)
        stored = client.get(f"/v1/articles/{article_id(page)}").json()
        assert stored["url"] == page and stored["published_at"] == "2025-06-11" and stored["source"] == "Herald"
        assert story.paragraphs[1] in stored["text"] and "Most read" not in stored["text"]

        failing = client.post("/v1/articles", json={"url": outlet.put("/down", "x", status=500, conditional=False)})
        assert failing.status_code == 422 and "HTTP 500" in failing.json()["error"]["message"]
        mixed = client.post("/v1/articles", json={"url": page, "title": "Mine"})
        assert mixed.status_code == 422 and "send only 'url'" in mixed.text
        assert client.post("/v1/articles", json={}).status_code == 422


# -- the commands ----------------------------------------------------------------------------


def test_feed_commands_watch_once_and_ingest_a_url(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "NEWSDESK_DATA_DIR": str(tmp_path),
        "NEWSDESK_FETCH_HOST_DELAY_S": "0",
        "COLUMNS": "200",
    }

    def newsdesk(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "app", *args]
        return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, check=False)

    with outlets(1) as (outlet,):
        url = publish(outlet, "Quay Courier", STORIES[:2])
        added = newsdesk("feeds", "add", url, "--every", "15m")
        assert added.returncode == 0 and "added f-" in added.stdout and "every 15m" in added.stdout, added.stderr
        assert newsdesk("feeds", "add", url, "--every", "5s").returncode == 1

        watched = newsdesk("watch", "--once")
        assert watched.returncode == 0, watched.stderr
        assert "2 added" in watched.stdout and "Quay Courier" in watched.stdout
        [listed] = json.loads(newsdesk("feeds", "list", "--json").stdout)
        assert listed["url"] == url and listed["last_poll"]["added"] == 2 and listed["error"] is None

        story = STORIES[3]
        page = outlet.put(f"/news/{story.slug}", article_page(story, outlet.url(f"/news/{story.slug}"), "Herald"))
        ingested = newsdesk("ingest", page, "--json")
        assert ingested.returncode == 0 and json.loads(ingested.stdout)["added"] == 1, ingested.stderr
        failed = newsdesk("ingest", outlet.url("/missing"))
        assert failed.returncode == 1 and "HTTP 404" in failed.stderr

        outlet.put("/rss.xml", "down", status=500, conditional=False)
        assert newsdesk("watch", "--once").returncode == 1
        assert "HTTP 500" in json.loads(newsdesk("feeds", "list", "--json").stdout)[0]["error"]

        assert "removed" in newsdesk("feeds", "remove", url).stdout
        gone = newsdesk("feeds", "remove", url)
        assert gone.returncode == 1 and "no feed" in gone.stderr
    titles = {a["title"] for a in json.loads(newsdesk("articles", "--json").stdout)}
    assert titles == {s.title for s in (*STORIES[:2], STORIES[3])}
