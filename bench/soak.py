"""Soak test of the HTTP service: a real server on loopback, a mixed load from several clients.

    .venv/bin/python bench/soak.py [--seconds 60] [--clients 6] [--large-chars 150000] [--keep N] [--sample-every 15]
                                      [--chroma-server]

Starts ``newsdesk serve`` as a subprocess on a free loopback port over a new store in a temporary
directory (the bundled corpus is seeded at start-up), waits until it is ready, then runs
``--clients`` threads, each with its own HTTP client, for ``--seconds``. Each picks its next
request at random: asks, searches, briefs (of an article or a topic), small JSON articles
(``POST /v1/articles``), small uploads, large uploads (at most one in flight; ``--large-chars``
of text), and deletions of the articles the soak added. An upload is polled at its job until
done. With ``--keep N`` the store stays level: whenever the soak holds more than N articles of
its own, the client that added one deletes the oldest, so what is stored stops growing and RSS
growth is not mistaken for stored data. Every ``--sample-every`` seconds the server's RSS, its
live articles and chunks (``/readyz``), its embedding-cache misses and what its bounded vector
caches hold (``/metrics``) are recorded and printed as a curve at the end, with least-squares
slopes over the second half. With ``--chroma-server`` the store is a Chroma server started here
(``chroma run``) rather than embedded, and its RSS is sampled apart: the server's own RSS then
holds no Chroma index. Then it prints the requests by status, p50/p95/max per route,
small ingests (a JSON article's request, or a small upload's job from 202 to done) and where
small upload jobs spent their time, those that overlapped a large upload beside those that did not
(the difference is what a large upload costs a small one), and the server's RSS once ready, a
quarter into the run (after warm-up) and at the end. Exit code 1 on any 5xx, transport error or failed job.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import free_port, wait_ready  # bench/serve.py

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpus"
QUESTIONS = [
    "Which club beat Inter Milan in the Champions League final?",
    "How many civilians were killed overnight?",
    "What did the Fed do with interest rates?",
    "Who won the Nobel Prize in Physics?",
    "How many people died in the Myanmar earthquake?",
    "What fines did the EU give Apple and Meta?",
]
TOPICS = ["Kursk", "interest rates", "wildfires in Los Angeles", "tariffs"]
SEARCHES = ["earthquake death toll", "Champions League final", "Copernicus warmest year", "midair collision"]
ACTIONS = {  # weights
    "ask": 30,
    "search": 20,
    "brief": 12,
    "post": 12,
    "upload_small": 10,
    "upload_large": 4,
    "delete": 12,
}
JOB_POLL_S = 0.5
RSS_EVERY_S = 1.0


@dataclass
class Soak:
    url: str
    large_chars: int
    deadline: float
    rng: random.Random
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # ids the soak may delete
    large_running: bool = False
    large_spans: list[tuple[float, float]] = field(default_factory=list)
    small_ingests: list[tuple[str, float, float]] = field(default_factory=list)  # (what, started, finished)
    # small upload jobs: (started, finished, seconds queued, seconds running)
    small_jobs: list[tuple[float, float, float, float]] = field(default_factory=list)
    article_ids: list[str] = field(default_factory=list)
    serial: int = 0
    chunks_written: int = 0  # by the soak's ingests: Chroma keeps a deleted chunk's vector (bench/churn.py)
    keep: int | None = None  # delete the oldest added article while more than this many are stored

    def next_serial(self) -> int:
        with self.lock:
            self.serial += 1
            return self.serial

    def call(self, http: httpx.Client, route: str, method: str, path: str, **kwargs: object) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as error:
            with self.lock:
                self.failures.append(f"{route}: {type(error).__name__}: {error}")
                self.statuses[(route, 0)] += 1
            return None
        with self.lock:
            self.latencies[route].append(time.perf_counter() - started)
            self.statuses[(route, response.status_code)] += 1
            if response.status_code >= 500:
                self.failures.append(f"{route}: {response.status_code} {response.text[:300]}")
        return response


def small_article(serial: int) -> dict[str, str]:
    return {
        "title": f"Harbour Ferry Timetable Changes, Notice {serial}",
        "source": "Soak Gazette",
        "published_at": "2025-06-02",
        "body": (
            f"The harbour authority announced timetable change number {serial} on Monday. Ferries to the "
            f"outer islands will leave {serial % 50 + 5} minutes later from June, the authority said, "
            "because of dredging work at the north pier. Commuters' groups asked for an earlier first sailing."
        ),
    }


def large_article(serial: int, characters: int) -> str:
    paragraphs = [p for path in sorted(CORPUS.glob("*.txt")) for p in path.read_text().split("\n\n")[2:] if p.strip()]
    body: list[str] = []
    while sum(map(len, body)) < characters:
        body.append(f"Archive {serial}, part {len(body)}. {paragraphs[len(body) % len(paragraphs)]}")
    return f"Title: Long Read {serial}\nSource: Soak Archive\nPublished: 2025-06-01\n\n" + "\n\n".join(body)


def wait_for_job(soak: Soak, http: httpx.Client, accepted: httpx.Response) -> dict[str, Any] | None:
    """Poll the job until it is done or failed; the finished job when done."""
    location = accepted.headers["Location"]
    give_up = soak.deadline + 600
    while time.monotonic() < give_up:
        polled = soak.call(http, "GET /v1/jobs/{id}", "GET", location)
        if polled is not None and polled.status_code == 200:
            job = polled.json()
            if job["status"] == "done":
                with soak.lock:
                    soak.added.append(job["article"]["id"])
                    soak.chunks_written += job["article"]["chunks"]
                trim(soak, http)
                return job  # type: ignore[no-any-return]
            if job["status"] == "failed":
                with soak.lock:
                    soak.failures.append(f"job {job['file']} failed: {job['error']}")
                return None
        time.sleep(JOB_POLL_S)
    return None


def trim(soak: Soak, http: httpx.Client) -> None:
    """With ``--keep``: delete the oldest articles the soak added while it holds more than that."""
    while True:
        with soak.lock:
            if soak.keep is None or len(soak.added) <= soak.keep:
                return
            victim = soak.added.pop(0)
        soak.call(http, "DELETE /v1/articles/{id}", "DELETE", f"/v1/articles/{victim}")


def act(soak: Soak, http: httpx.Client, action: str) -> None:
    rng = soak.rng
    if action == "ask":
        soak.call(http, "POST /v1/ask", "POST", "/v1/ask", json={"question": rng.choice(QUESTIONS)})
    elif action == "search":
        soak.call(http, "GET /v1/search", "GET", "/v1/search", params={"q": rng.choice(SEARCHES), "k": 5})
    elif action == "brief":
        if rng.random() < 0.5 and soak.article_ids:
            body = {"article_id": rng.choice(soak.article_ids)}
        else:
            body = {"topic": rng.choice(TOPICS)}
        soak.call(http, "POST /v1/brief", "POST", "/v1/brief", json=body)
    elif action == "post":
        started = time.monotonic()
        response = soak.call(http, "POST /v1/articles", "POST", "/v1/articles", json=small_article(soak.next_serial()))
        if response is not None and response.status_code == 201:
            ingested = response.json()
            with soak.lock:
                soak.added.append(ingested["id"])
                soak.chunks_written += ingested["chunks"]
                soak.small_ingests.append(("POST /v1/articles", started, time.monotonic()))
            trim(soak, http)
    elif action == "upload_small":
        serial = soak.next_serial()
        text = f"Title: Ferry Notice {serial}\n\n{small_article(serial)['body']}"
        started = time.monotonic()
        accepted = soak.call(
            http, "POST /v1/articles/upload", "POST", "/v1/articles/upload", files={"file": (f"n{serial}.txt", text)}
        )
        job = wait_for_job(soak, http, accepted) if accepted is not None and accepted.status_code == 202 else None
        if job is not None:
            with soak.lock:
                soak.small_ingests.append(("small upload job", started, time.monotonic()))
                soak.small_jobs.append((started, time.monotonic(), *job_phases(job)))
    elif action == "upload_large":
        with soak.lock:
            if soak.large_running:
                return
            soak.large_running = True
        try:
            started = time.monotonic()
            text = large_article(soak.next_serial(), soak.large_chars)
            accepted = soak.call(
                http, "POST /v1/articles/upload", "POST", "/v1/articles/upload", files={"file": ("long.txt", text)}
            )
            if accepted is not None and accepted.status_code == 202:
                wait_for_job(soak, http, accepted)
        finally:
            with soak.lock:
                soak.large_running = False
                soak.large_spans.append((started, time.monotonic()))
    elif action == "delete":
        with soak.lock:
            victim = soak.added.pop(rng.randrange(len(soak.added))) if soak.added else None
        if victim is not None:
            soak.call(http, "DELETE /v1/articles/{id}", "DELETE", f"/v1/articles/{victim}")


def client(soak: Soak, seed: int) -> None:
    rng = random.Random(seed)
    names, weights = list(ACTIONS), list(ACTIONS.values())
    with httpx.Client(base_url=soak.url, timeout=300) as http:
        while time.monotonic() < soak.deadline:
            act(soak, http, rng.choices(names, weights)[0])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True)
class Sample:
    at: float  # seconds into the run
    rss_mb: float
    articles: int | None  # live, from /readyz (None when it did not answer in time)
    chunks: int | None
    cache_misses: int | None  # embedding-cache misses so far, from /metrics
    caches_mb: float | None  # what the bounded vector caches hold, from /metrics
    chroma_mb: float | None  # the Chroma server's RSS (--chroma-server)


def sample(url: str, pid: int, at: float, chroma_pid: int | None) -> Sample:
    articles = chunks = misses = None
    caches = 0.0
    try:
        ready = httpx.get(f"{url}/readyz", timeout=30).json()
        articles, chunks = ready["articles"], ready["chunks"]
        for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
            if line.startswith('newsdesk_embedding_cache_texts_total{result="miss"}'):
                misses = int(float(line.split()[-1]))
            elif line.startswith("newsdesk_vector_cache_bytes{"):
                caches += float(line.split()[-1]) / 2**20
    except (httpx.HTTPError, KeyError, ValueError):
        pass
    chroma = rss_mb(chroma_pid) if chroma_pid else None
    return Sample(at, rss_mb(pid), articles, chunks, misses, caches if misses is not None else None, chroma)


def print_curve(samples: list[Sample]) -> None:
    chroma = any(s.chroma_mb is not None for s in samples)
    print(
        f"{'t':>6} {'RSS':>8} {'articles':>8} {'chunks':>7} {'cache misses':>12} {'caches MB':>9}"
        + (f" {'Chroma RSS':>10}" if chroma else "")
    )
    for s in samples:
        values = (s.articles, s.chunks, s.cache_misses, None if s.caches_mb is None else round(s.caches_mb))
        cells = [f"{v:>{w}}" if v is not None else f"{'?':>{w}}" for v, w in zip(values, (8, 7, 12, 9), strict=True)]
        if chroma:
            cells.append(f"{s.chroma_mb:>7.0f} MB" if s.chroma_mb is not None else f"{'?':>10}")
        print(f"{s.at:>5.0f}s {s.rss_mb:>5.0f} MB " + " ".join(cells))
    half = [s for s in samples if s.at >= samples[-1].at / 2] if samples else []
    if len(half) >= 3:  # a least-squares line: one sample taken during a large upload does not decide it
        span = f"({half[0].at:.0f}-{half[-1].at:.0f} s)"
        print(f"RSS over the second half {span}: {slope_per_min(half, lambda s: s.rss_mb):+.1f} MB/min (least squares)")
        if all(s.caches_mb is not None for s in half):
            print(f"  of which the vector caches: {slope_per_min(half, lambda s: s.caches_mb or 0.0):+.1f} MB/min")
        if chroma and all(s.chroma_mb is not None for s in half):
            chroma_slope = slope_per_min(half, lambda s: s.chroma_mb or 0.0)
            print(f"the Chroma server over the same span: {chroma_slope:+.1f} MB/min")


def slope_per_min(samples: list[Sample], value: Callable[[Sample], float]) -> float:
    return statistics.linear_regression([s.at for s in samples], [value(s) for s in samples]).slope * 60


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def job_phases(job: dict[str, Any]) -> tuple[float, float]:
    """A finished job's seconds queued (accepted to started) and running (started to finished), by its own clock."""
    created, started, finished = (datetime.fromisoformat(job[k]) for k in ("created_at", "started_at", "finished_at"))
    return (started - created).total_seconds(), (finished - started).total_seconds()


def during_large(soak: Soak, start: float, end: float) -> bool:
    """Whether the span from ``start`` to ``end`` overlapped a large upload."""
    return any(start < large_end and end > large_start for large_start, large_end in soak.large_spans)


def spread(values: list[float]) -> str:
    """p50/p95/max of ``values`` in seconds."""
    return f"{statistics.median(values):.2f}/{percentile(values, 0.95):.2f}/{max(values):.2f} s"


T = TypeVar("T")
OVERLAP_LABELS = {True: "during a large upload", False: "with no large upload running"}


def by_overlap(soak: Soak, spans: list[tuple[float, float, T]]) -> dict[bool, list[T]]:
    """The values of ``spans`` (start, end, value) split by whether the span overlapped a large upload."""
    groups: dict[bool, list[T]] = {True: [], False: []}
    for start, end, value in spans:
        groups[during_large(soak, start, end)].append(value)
    return groups


def small_jobs_by_overlap(soak: Soak) -> list[str]:
    """Where small upload jobs spent their time, those that overlapped a large upload and those that
    did not: the difference is what a large upload costs a small one, the rest is the load itself."""
    groups = by_overlap(soak, [(start, end, (q, r)) for start, end, q, r in soak.small_jobs])
    lines = []
    for during, phases in groups.items():
        figures = (
            f"{len(phases)}; queued p50/p95/max {spread([q for q, _ in phases])}, "
            f"running {spread([r for _, r in phases])}"
            if phases
            else "none"
        )
        lines.append(f"small upload jobs {OVERLAP_LABELS[during]}: {figures}")
    return lines


def small_ingests_by_overlap(soak: Soak) -> list[str]:
    """Small ingests (a JSON article's request, a small upload from 202 to done), p50/p95/max, by
    whether they overlapped a large upload."""
    groups = by_overlap(soak, [(start, end, end - start) for _, start, end in soak.small_ingests])
    return [
        f"small ingests {OVERLAP_LABELS[during]}: {f'{len(spans)}; p50/p95/max {spread(spans)}' if spans else 'none'}"
        for during, spans in groups.items()
    ]


def report(
    soak: Soak, rss: list[tuple[float, float]], seconds: float, timings: tuple[float, float], samples: list[Sample]
) -> None:
    """``rss``: (seconds into the run, MB) samples every second; ``samples``: the curve."""
    print(f"port open after {timings[0]:.1f} s, ready after {timings[1]:.1f} s (seeding the bundled corpus)")
    total = sum(soak.statuses.values())
    print(f"{total} requests in {seconds:.0f} s from {len(soak.latencies)} routes")
    by_status = Counter[int]()
    for (_, status), count in soak.statuses.items():
        by_status[status] += count
    print("by status: " + ", ".join(f"{status or 'transport error'}: {n}" for status, n in sorted(by_status.items())))
    print(f"{'route':<28} {'n':>5} {'p50':>9} {'p95':>9} {'max':>9}  statuses")
    for route in sorted(soak.latencies):
        values = soak.latencies[route]
        statuses = ", ".join(f"{s}: {n}" for (r, s), n in sorted(soak.statuses.items()) if r == route)
        print(
            f"{route:<28} {len(values):>5} {statistics.median(values) * 1000:>7.0f}ms "
            f"{percentile(values, 0.95) * 1000:>7.0f}ms {max(values) * 1000:>7.0f}ms  {statuses}"
        )
    print(f"large uploads: {len(soak.large_spans)} ({', '.join(f'{b - a:.0f} s' for a, b in soak.large_spans)})")
    for line in small_ingests_by_overlap(soak) + small_jobs_by_overlap(soak):
        print(line)
    quarter = next(mb for at, mb in rss if at >= seconds / 4)
    print(
        f"server RSS: {rss[0][1]:.0f} MB once ready, {quarter:.0f} MB after a quarter of the run, "
        f"{rss[-1][1]:.0f} MB at the end (peak {max(mb for _, mb in rss):.0f} MB)"
    )
    print(f"chunks written by the soak's ingests: {soak.chunks_written:,} (most deleted again; bench/churn.py)")
    print_curve(samples)
    for failure in soak.failures[:20]:
        print("FAILED", failure)


@contextmanager
def chroma_server(folder: str, wanted: bool) -> Iterator[tuple[subprocess.Popen[bytes], int] | None]:
    """A Chroma server (``chroma run``) on a free loopback port storing under ``folder``, or None."""
    if not wanted:
        yield None
        return
    port = free_port()
    command = [str(Path(sys.executable).parent / "chroma"), "run", "--path", f"{folder}/chroma-server"]
    log = Path(folder) / "chroma.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)], stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, log, timeout=60, path="/api/v2/heartbeat")
        yield process, port
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients run")
    parser.add_argument("--clients", type=int, default=6, help="client threads")
    parser.add_argument("--large-chars", type=int, default=150_000, help="characters of a large upload")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the request mix")
    parser.add_argument(
        "--keep", type=int, default=None, help="keep at most this many added articles (delete the oldest beyond)"
    )
    parser.add_argument("--sample-every", type=float, default=15.0, help="seconds between RSS/store samples")
    parser.add_argument(
        "--chroma-server",
        action="store_true",
        help="store in a Chroma server (`chroma run`, started here) instead of embedded; its RSS is reported apart",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="newsdesk-soak-") as tmp, chroma_server(tmp, args.chroma_server) as chroma:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "NEWSDESK_DATA_DIR": tmp, "NEWSDESK_RATE_LIMIT_PER_MINUTE": "0", "HF_HUB_OFFLINE": "1"}
        if chroma is not None:
            env |= {"NEWSDESK_CHROMA_HOST": "127.0.0.1", "NEWSDESK_CHROMA_PORT": str(chroma[1])}
        chroma_pid = chroma[0].pid if chroma is not None else None
        log = Path(tmp) / "server.log"
        command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
        with log.open("w") as log_file:
            process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            launched = time.monotonic()
            while True:
                try:
                    httpx.get(f"{url}/healthz", timeout=2)
                    break
                except httpx.TransportError:
                    if process.poll() is not None:
                        raise SystemExit(f"the server exited: {log.read_text()[-3000:]}") from None
                    time.sleep(0.05)
            port_open = time.monotonic() - launched
            wait_ready(url, process, log, timeout=300)
            ready = time.monotonic() - launched
            rss_start = rss_mb(process.pid)
            soak = Soak(
                url, args.large_chars, time.monotonic() + args.seconds, random.Random(args.seed), keep=args.keep
            )
            samples = [sample(url, process.pid, 0.0, chroma_pid)]
            soak.article_ids = [a["id"] for a in httpx.get(f"{url}/v1/articles", params={"limit": 100}).json()]
            started = time.monotonic()
            threads = [threading.Thread(target=client, args=(soak, args.seed + n)) for n in range(args.clients)]
            for thread in threads:
                thread.start()
            rss = [(0.0, rss_start)]
            while any(thread.is_alive() for thread in threads):
                time.sleep(RSS_EVERY_S)
                at = time.monotonic() - started
                rss.append((at, rss_mb(process.pid)))
                if at - samples[-1].at >= args.sample_every:
                    samples.append(sample(url, process.pid, at, chroma_pid))
            # the store once the clients stop
            samples.append(sample(url, process.pid, time.monotonic() - started, chroma_pid))
            report(soak, rss, time.monotonic() - started, (port_open, ready), samples)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return 1 if soak.failures else 0


if __name__ == "__main__":
    sys.exit(main())
