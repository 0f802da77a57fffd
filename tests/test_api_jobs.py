"""Ingest over HTTP never stalls the service: uploads are jobs, a short article is never stuck behind a
long one, the size limits say what they are, and the port answers from the first second of start-up."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from langchain_core.embeddings import Embeddings
from playwright.sync_api import expect, sync_playwright

import app.api.jobs as jobs_module
from app.api import create_app
from app.api.batching import BatchingEmbeddings
from app.api.errors import ApiError, from_newsdesk
from app.api.jobs import Jobs
from app.api.schemas import IngestOut
from app.config import Settings
from app.embed import Embedder
from app.errors import StoreError

from .conftest import CORPUS, free_port, stop
from .live_service import HOSTILE_ARTICLE, finished_job, live_server, wait_until_ready
from .test_web import CHROMIUM, CHROMIUM_ARGS, needs_chromium

pytestmark = pytest.mark.slow

LIGHTHOUSE = (
    "---\ntitle: Lighthouse Keeper Retires\nsource: Coast Herald\npublished_at: 2025-03-03\n---\n"
    "The last lighthouse keeper of Skarvik, Odd Hallan, retired on Monday after 41 years of service.\n"
)
ORCHARD = {
    "id": "jobs-orchard-frost",
    "title": "Late Frost Hits Orchards in the Tessin Valley",
    "source": "Valley Post",
    "published_at": "2025-05-02",
    "body": "A late frost destroyed about 60 percent of the apricot blossoms in the Tessin Valley overnight, "
    "growers said on Friday. The cooperative expects its smallest harvest since 1991.",
}


def long_article(characters: int) -> str:
    """A Newslooks-style text of about ``characters``, made of the bundled articles' paragraphs."""
    paragraphs = [p for path in sorted(CORPUS.glob("*.txt")) for p in path.read_text().split("\n\n")[2:] if p.strip()]
    body: list[str] = []
    while sum(map(len, body)) < characters:
        body.append(f"Dispatch {len(body)}. {paragraphs[len(body) % len(paragraphs)]}")
    return "Title: The Long Read\nSource: Desk Archive\nPublished: 2025-06-01\n\n" + "\n\n".join(body)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


def fresh_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path, seed_corpus=False, rate_limit_per_minute=0, **overrides)


@pytest.fixture
def client(tmp_path: Path, embedder: Embedder) -> Iterator[TestClient]:
    with TestClient(create_app(fresh_settings(tmp_path, max_article_chars=5_000), embedder=embedder)) as test_client:
        wait_until_ready(test_client.app)  # type: ignore[arg-type]
        yield test_client


# -- uploads are jobs ---------------------------------------------------------------------------


def test_an_upload_is_a_job_that_reports_its_article(client: TestClient) -> None:
    accepted = client.post("/v1/articles/upload", files={"file": ("skarvik.md", LIGHTHOUSE, "text/markdown")})
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert accepted.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] in ("queued", "running", "done") and job["file"] == "skarvik.md"

    done = finished_job(client, accepted)
    assert done["status"] == "done" and done["error"] is None
    article = done["article"]
    assert article["status"] == "added" and article["title"] == "Lighthouse Keeper Retires"
    assert done["progress"] == {"articles_done": 1, "articles_total": 1, "chunks_done": 1, "chunks_total": 1}
    assert done["started_at"] <= done["finished_at"]
    assert client.get(f"/v1/articles/{article['id']}").json()["source"] == "Coast Herald"

    again = finished_job(client, client.post("/v1/articles/upload", files={"file": ("skarvik.md", LIGHTHOUSE)}))
    assert again["article"] == {**article, "status": "unchanged"}

    missing = client.get("/v1/jobs/no-such-job")
    assert missing.status_code == 404
    assert error_of(missing)["message"].startswith("no job with id 'no-such-job' (finished jobs are kept for 1 h")


def test_small_json_articles_stay_synchronous(client: TestClient) -> None:
    created = client.post("/v1/articles", json=ORCHARD)
    assert created.status_code == 201
    assert created.json() == {"id": ORCHARD["id"], "title": ORCHARD["title"], "status": "added", "chunks": 1}


def test_json_articles_without_an_id_do_not_replace_each_other(client: TestClient) -> None:
    first, second = ({**ORCHARD, "id": None, "body": f"{ORCHARD['body']} Notice {n}."} for n in (1, 2))
    ids = [client.post("/v1/articles", json=article).json()["id"] for article in (first, second)]
    assert ids[0] != ids[1]
    listed = {a["id"] for a in client.get("/v1/articles").json()}
    assert listed == set(ids), "the second article without an id or URL replaced the first"


def test_a_short_article_is_not_stuck_behind_a_long_upload(tmp_path: Path, embedder: Embedder) -> None:
    # Batches of 32 chunks: the long article is written in three, the short one goes in between.
    settings = fresh_settings(tmp_path, embedding_batch_size=8)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        wait_until_ready(client.app)  # type: ignore[arg-type]
        accepted = client.post("/v1/articles/upload", files={"file": ("long.txt", long_article(60_000))})
        assert accepted.status_code == 202
        while (job := client.get(accepted.headers["Location"]).json())["progress"]["chunks_done"] == 0:
            assert job["status"] in ("queued", "running"), job
            time.sleep(0.05)

        created = client.post("/v1/articles", json=ORCHARD)
        assert created.status_code == 201 and created.json()["status"] == "added"
        assert client.delete(f"/v1/articles/{ORCHARD['id']}").status_code == 204
        during = client.get(accepted.headers["Location"]).json()
        assert during["status"] == "running", "the short article and the delete went in while the long one ran"
        assert during["progress"]["chunks_done"] < during["progress"]["chunks_total"]

        done = finished_job(client, accepted)
        assert done["status"] == "done" and done["article"]["status"] == "added"
        assert done["article"]["chunks"] == done["progress"]["chunks_total"] > 64
        hits = client.get("/v1/search", params={"q": "Dispatch", "k": 3}).json()
        assert {hit["article_id"] for hit in hits} == {done["article"]["id"]}


def test_a_short_upload_does_not_queue_behind_a_long_one() -> None:
    jobs = Jobs()
    release = threading.Event()
    outcome = IngestOut(id="a", title="A", status="added", chunks=1)

    def long_work(progress: Callable[[int, int], None]) -> IngestOut:
        progress(0, 10)
        release.wait(60)
        return outcome

    def wait_for(job_id: str, status: str) -> None:
        while jobs.get(job_id).status != status:
            time.sleep(0.01)

    try:
        long_job = jobs.submit("long.txt", jobs_module.SMALL_ARTICLE_CHARS + 1, long_work)
        wait_for(long_job.id, "running")
        short_job = jobs.submit("short.txt", 500, lambda progress: outcome)
        wait_for(short_job.id, "done")
        assert jobs.get(long_job.id).status == "running"
    finally:
        release.set()
        jobs.close()
    assert jobs.get(long_job.id).status == "done"


def run_long_beside_small(small_seconds: float) -> list[str]:
    """A long upload of three batches while a small ingest runs for ``small_seconds``: the order of events."""
    jobs = Jobs()
    events: list[str] = []
    small_running = threading.Event()
    outcome = IngestOut(id="a", title="A", status="added", chunks=1)

    def small_work() -> IngestOut:
        small_running.set()
        time.sleep(small_seconds)
        events.append("small done")
        return outcome

    def long_work(progress: Callable[[int, int], None]) -> IngestOut:
        for done in (64, 128, 192):
            small_running.wait(10)
            events.append(f"long {done}")
            progress(done, 192)
        return outcome

    try:
        long_job = jobs.submit("long.txt", jobs_module.SMALL_ARTICLE_CHARS + 1, long_work)
        jobs.run_small(small_work)
        while not jobs.get(long_job.id).finished:
            time.sleep(0.01)
    finally:
        jobs.close()
    return events


def test_a_long_upload_makes_way_for_small_ingests_between_its_batches() -> None:
    assert run_long_beside_small(small_seconds=1.0) == ["long 64", "small done", "long 128", "long 192"]


def test_a_long_upload_makes_way_for_a_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_module, "MAKE_WAY_S", 0.2)
    assert run_long_beside_small(small_seconds=2.0) == ["long 64", "long 128", "long 192", "small done"]


def test_finished_jobs_are_kept_a_bounded_number_and_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_module, "KEEP_FINISHED", 2)
    jobs = Jobs()
    outcome = IngestOut(id="a", title="A", status="added", chunks=1)
    try:
        ids = [jobs.submit(f"{n}.txt", 10, lambda progress: outcome).id for n in range(3)]
        while not all(jobs.get(i).status == "done" for i in ids[1:]):
            time.sleep(0.01)
        with pytest.raises(ApiError, match="no job with id"):
            jobs.get(ids[0])
        monkeypatch.setattr(jobs_module, "KEEP_SECONDS", 0.0)
        time.sleep(0.01)
        with pytest.raises(ApiError, match="no job with id"):
            jobs.get(ids[2])
    finally:
        jobs.close()


def test_shutting_down_stops_a_running_job_between_batches() -> None:
    jobs = Jobs()
    running = threading.Event()

    def endless_work(progress: Callable[[int, int], None]) -> IngestOut:
        batch = 0
        while True:
            progress(batch, 1_000)
            running.set()
            batch += 1
            time.sleep(0.01)

    job = jobs.submit("endless.txt", 10, endless_work)
    running.wait(30)
    jobs.close()
    stopped = jobs.get(job.id)
    assert stopped.status == "failed" and stopped.failure is not None
    assert stopped.failure.message == "the server stopped before this upload was ingested; upload the file again"


def test_a_failed_job_says_why_and_the_worker_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """A newsdesk error is the job's error as the API would map it; anything else a generic message
    with no internals (logged in full); the lane's worker then runs the next job."""
    jobs = Jobs()
    outcome = IngestOut(id="a", title="A", status="added", chunks=1)
    store_down = StoreError("the store at /srv/chroma is not reachable")

    def failing(error: Exception) -> Callable[[Callable[[int, int], None]], IngestOut]:
        def work(progress: Callable[[int, int], None]) -> IngestOut:
            raise error

        return work

    def finished(job_id: str) -> Any:
        while not jobs.get(job_id).finished:
            time.sleep(0.01)
        return jobs.get(job_id).out().model_dump(mode="json")

    try:
        for characters in (10, jobs_module.SMALL_ARTICLE_CHARS + 1):  # both lanes
            refused = finished(jobs.submit("a.txt", characters, failing(store_down)).id)
            expected = from_newsdesk(store_down)
            assert refused["status"] == "failed" and refused["article"] is None
            error = refused["error"]
            assert (error["message"], error["type"], error["code"]) == (expected.message, expected.kind, expected.code)
            with caplog.at_level("ERROR", logger="newsdesk.jobs"):
                broken = finished(jobs.submit("b.txt", characters, failing(KeyError("secret_column"))).id)
            assert broken["status"] == "failed"
            assert broken["error"]["message"] == "the ingest failed; details are in the server log"
            assert broken["error"]["type"] == "server_error"
            assert "secret_column" not in json.dumps(broken)
            assert "secret_column" in caplog.text
            after = finished(jobs.submit("c.txt", characters, lambda progress: outcome).id)
            assert after["status"] == "done" and after["article"]["id"] == "a"
    finally:
        jobs.close()


class HeldModel(Embeddings):
    """A stand-in model at the true edge: a call of more than one text runs until released."""

    def __init__(self) -> None:
        self.bulk_running = threading.Event()
        self.release = threading.Event()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if len(texts) > 1:
            self.bulk_running.set()
            self.release.wait(60)
        return [[float(len(text)), 1.0] for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def test_a_question_is_not_queued_behind_an_ingest_batch_of_embeddings() -> None:
    model = HeldModel()
    embeddings = BatchingEmbeddings(model)
    batch = [f"sentence {n} of a long upload" for n in range(492)]  # the tail batch of a 150,000-character one
    with ThreadPoolExecutor(2) as pool:
        bulk = pool.submit(embeddings.embed_documents, batch)
        model.bulk_running.wait(30)
        question = pool.submit(embeddings.embed_query, "Who won the final?")
        try:
            assert question.result(timeout=30) == [18.0, 1.0], "the question waited for the whole batch"
            assert not bulk.done()
        finally:
            model.release.set()
        assert len(bulk.result()) == 492


# -- limits ---------------------------------------------------------------------------------------


def test_413s_state_the_configured_limits_and_what_to_do(tmp_path: Path, embedder: Embedder) -> None:
    with TestClient(create_app(fresh_settings(tmp_path), embedder=embedder)) as client:
        wait_until_ready(client.app)  # type: ignore[arg-type]
        over = b"x" * 5_100_000  # over 5,000,000 and over the body limit with the multipart slack
        too_big = client.post("/v1/articles/upload", files={"file": ("big.txt", over, "text/plain")})
        assert too_big.status_code == 413
        message = error_of(too_big)["message"]
        assert "5,000,000-byte upload limit (NEWSDESK_MAX_UPLOAD_BYTES)" in message, message
        assert "split it into smaller files" in message
        assert error_of(too_big)["code"] == "body_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(6):
                yield b"x" * 1_000_000

        streamed = client.post(
            "/v1/articles/upload", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert streamed.status_code == 413
        assert "5,000,000-byte upload limit (NEWSDESK_MAX_UPLOAD_BYTES)" in error_of(streamed)["message"]
        assert error_of(streamed)["code"] == "body_too_large"

        just_over = client.post("/v1/articles/upload", files={"file": ("big.txt", over[:5_000_001], "text/plain")})
        assert just_over.status_code == 413
        assert "5,000,000-byte upload limit" in error_of(just_over)["message"]
        assert error_of(just_over)["code"] == "body_too_large", "one code however far over the limit"


def test_an_article_over_the_character_limit_is_refused_saying_so(client: TestClient) -> None:
    text = long_article(6_000)
    uploaded = client.post("/v1/articles/upload", files={"file": ("long.txt", text, "text/plain")})
    assert uploaded.status_code == 413
    error = error_of(uploaded)
    assert error["code"] == "article_too_large"
    assert re.fullmatch(
        r"the article is [\d,]+ characters, over the 5,000-character limit \(NEWSDESK_MAX_ARTICLE_CHARS\); "
        r"split it into several articles, or raise the setting",
        error["message"],
    ), error["message"]
    posted = client.post("/v1/articles", json={**ORCHARD, "body": text})
    assert posted.status_code == 413 and error_of(posted)["code"] == "article_too_large"
    assert client.get("/v1/articles").json() == []


# -- start-up -------------------------------------------------------------------------------------


def test_the_port_answers_at_once_and_readyz_says_what_start_up_is_doing(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=0)  # an empty store: seeded at start-up
    with live_server(settings, embedder, wait_ready=False) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        starting = http.post("/v1/ask", json={"question": "Who won the Champions League final?"})
        assert starting.status_code == 503 and starting.headers["Retry-After"] == "5"
        assert error_of(starting)["code"] == "starting"
        assert error_of(starting)["message"].startswith("newsdesk is starting (")

        seen: list[str] = []
        while (ready := http.get("/readyz")).status_code == 503:
            seen.append(error_of(ready)["message"])
            assert http.get("/healthz").status_code == 200
            time.sleep(0.05)
        assert ready.status_code == 200 and ready.json()["articles"] == 14
        progress = [
            m
            for m in seen
            if re.fullmatch(
                r"newsdesk is starting \(ingesting the bundled corpus: \d+/14\); "
                r"retry in 5 s",
                m,
            )
        ]
        assert progress, seen
        assert http.post("/v1/articles", json=HOSTILE_ARTICLE).status_code == 201


def test_a_failed_start_up_is_reported_not_a_crash(tmp_path: Path, embedder: Embedder) -> None:
    dead = Settings(data_dir=tmp_path, chroma_host="127.0.0.1", chroma_port=free_port(), rate_limit_per_minute=0)
    with live_server(dead, embedder, wait_ready=False) as server, httpx.Client(base_url=server.url) as http:
        while (ready := http.get("/readyz")).status_code == 503 and error_of(ready)["code"] == "starting":
            time.sleep(0.05)
        assert ready.status_code == 503
        failed = error_of(ready)
        assert failed["code"] == "start_up_failed"
        assert failed["message"] == (
            "newsdesk failed to start; the cause is in the server log: fix it and restart the service"
        )
        assert http.get("/healthz").status_code == 503
        assert http.get("/v1/articles").status_code == 503


# ``python -m app`` with the import of HOLD_IMPORT held (the first module serve needs once its port is
# open) until a line comes on stdin; HOLD_REPORT gets the heavy packages already imported by then.
HELD_IMPORT = """
import importlib.abc, json, os, runpy, sys

HEAVY = {"chromadb", "fastapi", "langchain_core", "openai", "sentence_transformers", "torch", "trafilatura"}


class Hold(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["HOLD_IMPORT"]:
            sys.meta_path.remove(self)
            report = os.environ["HOLD_REPORT"]
            with open(report + ".part", "w") as out:
                json.dump(sorted(HEAVY & {module.split(".")[0] for module in sys.modules}), out)
            os.replace(report + ".part", report)
            sys.stdin.readline()
        return None


sys.meta_path.insert(0, Hold())
runpy.run_module("app", run_name="__main__", alter_sys=True)
"""


def test_serve_listens_before_it_imports_the_app_and_answers_what_waited(tmp_path: Path) -> None:
    port = free_port()
    held = tmp_path / "held.json"
    env = {
        **os.environ,
        "NEWSDESK_DATA_DIR": str(tmp_path),
        "NEWSDESK_SEED_CORPUS": "false",
        "HOLD_IMPORT": "app.api",
        "HOLD_REPORT": str(held),
    }
    command = [sys.executable, "-c", HELD_IMPORT, "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env)
    assert process.stdin is not None
    try:
        deadline = time.monotonic() + 120
        while not held.exists():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.05)
        # The app's import is held: no server runs yet, but the port takes the connection and the request.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: newsdesk\r\nConnection: close\r\n\r\n")
            assert json.loads(held.read_text()) == [], "the port opens before the heavy imports"
            process.stdin.write(b"go\n")
            process.stdin.flush()
            conn.settimeout(120)
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply
        assert reply.endswith(b'\r\n\r\n{"status":"ok"}'), reply
    finally:
        process.stdin.close()
        stop(process)
    assert "listening on http://127.0.0.1:" in log.read_text()


def test_serve_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "NEWSDESK_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
        command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use (another newsdesk serve?); "
        "stop that server or pick a free port with --port\n"
    )


# -- the page -------------------------------------------------------------------------------------


@needs_chromium
def test_the_page_uploads_files_and_shows_each_outcome(tmp_path: Path, embedder: Embedder) -> None:
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(b"%PDF-1.7")
    markdown = tmp_path / "skarvik.md"
    markdown.write_text(LIGHTHOUSE)
    with live_server(fresh_settings(tmp_path / "data"), embedder) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(server.url + "/")
            page.set_input_files("#upload-file", [str(markdown), str(pdf)])
            page.click("#upload")
            lines = page.locator("#upload-status li")
            expect(lines.filter(has_text="skarvik.md")).to_have_text(
                "skarvik.md: added, “Lighthouse Keeper Retires” (1 chunk)"
            )
            expect(lines.filter(has_text="scan.pdf")).to_contain_text("unsupported file type '.pdf'")
            expect(page.locator("#brief-article option", has_text="Lighthouse Keeper Retires")).to_have_count(1)
        finally:
            browser.close()
