"""Feed watching benchmark: local outlets, a fresh store, two polling cycles, figures printed.

    python bench/feeds.py [--feeds 20] [--entries 50] [--outlets 5] [--host-delay 0.05] [--no-faulty]

A child process serves the feeds and their pages from HTTP servers on loopback addresses
(tests/feed_server.py: 127.0.0.2, 127.0.0.3, ...), so its work is not counted in this process's
CPU or memory: ``--feeds`` feeds (RSS and Atom in turn, a quarter of them without ETag or
Last-Modified) of ``--entries`` distinct articles each, every page wrapped in boilerplate; plus,
unless ``--no-faulty``, a feed that answers 500, one that hangs (timed out after 2 s) and one with
malformed entries. This process registers the feeds in a fresh embedded store and polls them all
twice (``Watcher.poll_all``: FEED_WORKERS feeds at once, pages spaced ``--host-delay`` per host).

Prints, per cycle: seconds, entries ingested per second, feed and page requests (by status),
articles added; errors per feed; and peak RSS (of this process: model, store, watcher).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/feed_server.py
from app.article import Article
from app.config import Settings
from app.embed import build_embedder
from app.feeds import FeedRegistry, PollSummary, Watcher
from app.fetch import Fetcher
from app.ingest import IngestReport
from app.service import Newsdesk
from tests.feed_server import Story, outlets, publish

SECTIONS = ("world", "business", "science", "sport", "culture", "regions")
PLACES = ("Vellmar", "Odderby", "Kelsborg", "Tessin", "Skerry Point", "Marrow Bay", "Lindholt", "Ashgrove")
SUBJECTS = ("port authority", "city council", "farmers' union", "museum board", "rail operator", "health ministry")
ACTIONS = ("approved", "rejected", "postponed", "announced", "cut", "doubled")
THINGS = ("a new budget", "the tram line", "emergency aid", "a pay rise", "the harbour works", "a school plan")


def story(rng: random.Random, feed: int, entry: int) -> Story:
    place, subject, action, thing = (rng.choice(x) for x in (PLACES, SUBJECTS, ACTIONS, THINGS))
    amount, votes, day = rng.randint(2, 900), rng.randint(10, 60), 1 + (feed + entry) % 28
    paragraphs = [
        f"The {subject} of {place} {action} {thing} worth {amount} million euros on Tuesday, "
        f"after a vote of {votes} to {rng.randint(1, 30)}, officials said in report {feed}-{entry}.",
        f"Critics said the decision on {thing} came too late for {place}, where {rng.randint(100, 9000)} "
        f"residents had signed a petition, and that the {subject} had ignored {rng.randint(2, 12)} warnings.",
        f"A spokesperson for the {subject} said work would begin within {rng.randint(2, 20)} weeks and "
        f"that a further review was planned for the {rng.choice(('spring', 'summer', 'autumn', 'winter'))}.",
    ]
    return Story(
        f"{SECTIONS[feed % len(SECTIONS)]}-{feed}-{entry}",
        f"{place} {subject} {action} {thing} ({feed}-{entry})",
        paragraphs,
        published=f"2025-06-{day:02d}T08:00:00Z",
        page_date=f"2025-06-{day:02d}T07:30:00Z" if entry % 2 else None,
        summary=paragraphs[0],
    )


def serve(feeds: int, entries: int, sites: int, faulty: bool, conn: Connection) -> None:
    """The child: publish the feeds, send their URLs, answer 'count' with request counts, stop on 'stop'."""
    rng = random.Random(7)
    with outlets(sites) as started:
        urls = []
        for number in range(feeds):
            outlet = started[number % sites]
            stories = [story(rng, number, entry) for entry in range(entries)]
            kind = "rss" if number % 2 == 0 else "atom"
            name, path = f"Outlet {number % sites}", f"/{kind}-{number}.xml"
            urls.append(publish(outlet, name, stories, kind=kind, path=path, conditional=number % 4 != 3))
        if faulty:
            bad = started[0]
            urls.append(bad.put("/down.xml", "oops", status=500, conditional=False))
            urls.append(bad.put("/hangs.xml", "", hang=True))
            urls.append(bad.put("/malformed.xml", MALFORMED, content_type="application/rss+xml"))
        conn.send(urls)
        while (command := conn.recv()) != "stop":
            assert command == "count"
            conn.send(Counter((kind_of(r.path), r.status) for outlet in started for r in outlet.asked()))


MALFORMED = """<?xml version="1.0"?><rss version="2.0"><channel><title>Malformed</title>
<item><title>No link, no text</title></item>
<item><title>Script</title><link>javascript:alert(1)</link></item>
<item><title>AT&T</title><guid>x</guid><description>Shares rose 2 percent.</description></item>
</channel></rss>"""


class Timed:
    """``Newsdesk.ingest``, adding up the time it took and its embedding time."""

    def __init__(self, desk: Newsdesk) -> None:
        self.desk = desk
        self.seconds = self.embedding_seconds = 0.0

    def __call__(self, articles: Sequence[Article]) -> IngestReport:
        report = self.desk.ingest(articles)
        self.seconds += report.seconds
        self.embedding_seconds += report.embedding_seconds
        return report


def kind_of(path: str) -> str:
    return "page" if path.startswith("/news/") else "feed"


def cycle(watcher: Watcher, conn: Connection) -> tuple[float, dict[str, PollSummary | None], Counter[tuple[str, int]]]:
    conn.send("count")
    before: Counter[tuple[str, int]] = conn.recv()
    started = time.perf_counter()
    polls = watcher.poll_all()
    seconds = time.perf_counter() - started
    conn.send("count")
    after: Counter[tuple[str, int]] = conn.recv()
    return seconds, polls, after - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--outlets", type=int, default=5)
    parser.add_argument("--host-delay", type=float, default=0.05, help="seconds between requests to one host")
    parser.add_argument("--no-faulty", action="store_true", help="no failing feeds")
    args = parser.parse_args()

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(
        target=serve, args=(args.feeds, args.entries, args.outlets, not args.no_faulty, child), daemon=True
    )
    server.start()
    urls: list[str] = parent.recv()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir), seed_corpus=False, fetch_host_delay_s=args.host_delay, fetch_timeout_s=2.0
        )
        desk = Newsdesk(settings, embedder=build_embedder(settings))
        desk.warm_up()
        rss_ready = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with FeedRegistry.open(settings) as registry, Fetcher(settings) as fetcher:
            for url in urls:
                registry.add(url, 900)
            ingesting = Timed(desk)
            watcher = Watcher(registry, fetcher, ingesting)
            print(
                f"{args.feeds} feeds x {args.entries} entries on {args.outlets} outlets"
                f"{' + 3 faulty feeds' if not args.no_faulty else ''}; host delay {args.host_delay:g} s"
            )
            for number in (1, 2):
                ingesting.seconds = ingesting.embedding_seconds = 0.0
                seconds, polls, requests = cycle(watcher, parent)
                done = [p for p in polls.values() if p is not None]
                stored = sum(p.added + p.updated for p in done)  # from_summary ones included
                print(
                    f"cycle {number}: {seconds:.1f} s, {stored} entries ingested ({stored / seconds:.1f}/s), "
                    f"{sum(p.skipped for p in done)} seen entries skipped, "
                    f"{sum(p.not_modified for p in done)} feeds not modified"
                )
                print(
                    f"  ingesting (under the write lock) {ingesting.seconds:.1f} s, of which embedding "
                    f"{ingesting.embedding_seconds:.1f} s"
                )
                answered = {f"{kind} {status or 'no answer'}": n for (kind, status), n in sorted(requests.items())}
                print(f"  requests: {answered}")
            print("errors per feed (after two cycles):")
            for feed in registry.feeds():
                problems = feed.last_poll.problems if feed.last_poll else ()
                if feed.error or problems:
                    print(f"  {feed.url}: {feed.failures} failed polls ({feed.error or 'none'})")
                    for problem in problems:
                        print(f"      entry problem: {problem}")
            healthy = [f for f in registry.feeds() if not f.error and not (f.last_poll and f.last_poll.problems)]
            print(f"  the other {len(healthy)} feeds: no error, no problem")
        print(f"articles stored: {desk.stats().articles}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS: {peak:,.0f} MB ({rss_ready:,.0f} MB with the model loaded, before watching)")
        desk.close()
    parent.send("stop")
    server.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
