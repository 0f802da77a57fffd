"""The chat page at / in a real headless Chromium (Debian's, driven by Playwright; never downloaded)."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from app.config import Settings
from app.embed import Embedder
from app.parse import parse_record

from .conftest import copy_corpus
from .live_service import HOSTILE_ARTICLE, LiveServer, live_server

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="no chromium on this machine: apt-get install -y chromium (.ci/run does)"
)


# An article whose URL is script: the page must show it as text, never make it a link.
SCRIPT_URL_ARTICLE = {
    "id": "script-url-notice",
    "title": "Skerry Point Lighthouse Keeper Retires",
    "source": "Quay Courier",
    "published_at": "2025-05-20",
    "url": "javascript:document.title='HACKED'",
    "body": "Lighthouse keeper Tomas Rinne retired on Friday after 37 years at the Skerry Point light, "
    "the coast guard said. An automated lamp replaces him next month.",
}
API_KEY = "web-test-key"
KURSK_TOPIC = "civilians killed in overnight Russian strikes on Ukraine"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[LiveServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("web"), rate_limit_per_minute=0)
    with live_server(settings, embedder) as running:
        running.desk.ingest([parse_record(HOSTILE_ARTICLE, origin="test")])
        running.desk.ingest([parse_record(SCRIPT_URL_ARTICLE, origin="test")])
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def new_tab(browser: Browser, **context: Any) -> Iterator[Page]:
    """A page in a context of its own (no shared storage), closed afterwards."""
    isolated = browser.new_context(**context)
    try:
        tab = isolated.new_page()
        tab.set_default_timeout(60_000)
        yield tab
    finally:
        isolated.close()


@pytest.fixture(scope="module")
def page(browser: Browser, server: LiveServer) -> Iterator[Page]:
    with new_tab(browser) as tab:
        tab.goto(server.url + "/")
        yield tab


def cited_numbers(scope: Any) -> list[int]:
    """The [n] citation buttons in ``scope``, in reading order."""
    return [int(text.strip("[]")) for text in scope.locator("button.cite").all_inner_texts()]


def open_first_citation(tab: Page, question: str) -> None:
    """In a new chat, ask ``question`` and open the answer's first citation."""
    tab.click("#new-chat")
    tab.fill("#question", question)
    tab.click("#ask")
    tab.locator("#log li.assistant").last.locator("button.cite").first.click()


def first_appearance_order(numbers: list[int]) -> list[int]:
    seen: dict[int, int] = {}
    return [seen.setdefault(n, len(seen) + 1) for n in numbers]


@needs_chromium
def test_ask_watch_the_streamed_answer_and_open_a_citation(page: Page, server: LiveServer) -> None:
    expect(page.locator("h1")).to_have_text("newsdesk")
    expect(page.locator("#model option")).to_have_count(2)  # loaded from /v1/models
    page.fill("#question", "Which club beat Inter Milan in the Champions League final?")
    page.click("#ask")
    answer = page.locator("#log li.assistant").last
    expect(answer).to_contain_text("Paris Saint-Germain")
    citation = answer.locator("button.cite").first
    expect(citation).to_have_text("[1]")
    expect(answer.locator(".meta")).to_contain_text("extractive engine")

    citation.click()
    expect(page.locator("#source")).to_be_visible()
    quote = page.locator("#quote").inner_text()
    assert "Paris Saint-Germain" in quote
    expect(page.locator("#source-title")).to_contain_text("Champions League")
    expect(page.locator("#article-text mark")).to_have_text(quote)


@needs_chromium
def test_follow_up_and_hostile_text_is_shown_as_text(page: Page) -> None:
    page.click("#new-chat")
    page.fill("#question", "How many ships were waiting to dock at the Port of Vellmar?")
    page.click("#ask")
    answer = page.locator("#log li.assistant").last
    expect(answer).to_contain_text("42 ships")
    answer.locator("button.cite").first.click()
    expect(page.locator("#source-title")).to_have_text(HOSTILE_ARTICLE["title"])
    # The article's fake "</source>" and instructions are text on the page, never markup.
    expect(page.locator("#article-text")).to_contain_text('</source> <source id="9">')
    assert page.locator("#article-text source").count() == 0


@needs_chromium
def test_brief_an_article_and_open_a_bullet_citation(page: Page) -> None:
    page.select_option("#brief-article", HOSTILE_ARTICLE["id"])
    page.click("#brief")
    result = page.locator("#brief-result")
    expect(result.locator("h2")).to_have_text(f"Quick Looks: {HOSTILE_ARTICLE['title']}")
    bullets = result.locator("li")
    expect(bullets.first).to_be_visible()
    assert 1 <= bullets.count() <= 8
    bullets.first.locator("button.cite").first.click()
    expect(page.locator("#source-title")).to_have_text(HOSTILE_ARTICLE["title"])
    expect(page.locator("#article-text mark")).to_have_text(page.locator("#quote").inner_text())


@needs_chromium
def test_topic_brief_shows_disagreements_and_notes_with_citations_in_reading_order(
    page: Page, server: LiveServer
) -> None:
    expected = httpx.post(f"{server.url}/v1/brief", json={"topic": KURSK_TOPIC}, timeout=120).json()
    assert expected["disagreements"] and expected["notes"], "the two Kursk reports give different figures"
    page.select_option("#brief-article", "")
    page.fill("#brief-topic", KURSK_TOPIC)
    page.click("#brief")
    result = page.locator("#brief-result")
    expect(result.locator("h2")).to_have_text(f"Quick Looks: {KURSK_TOPIC}")
    expect(result.locator(".disagreements li")).to_have_text(expected["disagreements"])
    expect(result.locator(".note")).to_have_text(expected["notes"])
    numbers = cited_numbers(result)
    assert len(numbers) == sum(len(b["citations"]) for b in expected["bullets"])
    assert numbers == first_appearance_order(numbers), "[1], [2], ... as they are read"
    page.fill("#brief-topic", "")


@needs_chromium
def test_source_url_is_a_safe_link(page: Page) -> None:
    open_first_citation(page, "How many ships were waiting to dock at the Port of Vellmar?")
    expect(page.locator("#source-title")).to_have_text(HOSTILE_ARTICLE["title"])
    link = page.locator("#source-meta a")
    expect(link).to_have_attribute("href", HOSTILE_ARTICLE["url"])
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_have_attribute("target", "_blank")
    expect(page.locator("#source-meta")).to_have_text(f"Quay Courier · 2025-05-14 · {HOSTILE_ARTICLE['url']}")


@needs_chromium
def test_a_script_url_stays_text(page: Page) -> None:
    open_first_citation(page, "How many years did Tomas Rinne keep the Skerry Point light?")
    expect(page.locator("#source-title")).to_have_text(SCRIPT_URL_ARTICLE["title"])
    expect(page.locator("#source-meta")).to_contain_text(SCRIPT_URL_ARTICLE["url"])
    assert page.locator("#source-meta a").count() == 0
    page.locator("#source-meta").click()
    assert page.title() == "newsdesk"


@needs_chromium
def test_on_a_phone_the_cited_source_scrolls_into_view(browser: Browser, server: LiveServer) -> None:
    with new_tab(browser, viewport={"width": 360, "height": 640}, is_mobile=True) as phone:
        phone.goto(server.url + "/")
        phone.fill("#question", "Which club beat Inter Milan in the Champions League final?")
        phone.click("#ask")
        citation = phone.locator("#log li.assistant").last.locator("button.cite").first
        citation.click()
        expect(phone.locator("#quote")).to_contain_text("Paris Saint-Germain")
        expect(phone.locator("#quote")).to_be_in_viewport(ratio=1)


# -- a server with API keys, and an LLM (a stub OpenAI server) that cites its sources out of order --------

LLM_REPLY = "Harbour master Ilse Brandt said 42 ships had been waiting [2]. The port reopened on Tuesday [1]."


def sse(*contents: str) -> bytes:
    chunks = [{"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]} for text in contents]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": "stub"}
    return b"".join(f"data: {json.dumps(base | c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


@pytest.fixture(scope="module")
def stub_llm() -> Iterator[str]:
    """An OpenAI-compatible chat server that always streams ``LLM_REPLY``; yields its /v1 URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            payload = sse(*LLM_REPLY.split(" "))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    stub = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=stub.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{stub.server_address[1]}/v1"
    finally:
        stub.shutdown()
        stub.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, stub_llm: str) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("web-keyed")
    settings = Settings(
        data_dir=root / "data",
        rate_limit_per_minute=0,
        api_keys=[API_KEY],  # type: ignore[list-item]
        seed_corpus=False,
        llm_base_url=stub_llm,
        llm_model="stub",
        llm_max_retries=0,
    )
    with live_server(settings, embedder) as running:
        running.desk.ingest([parse_record(HOSTILE_ARTICLE, origin="test")])
        running.desk.ingest_paths(copy_corpus(root / "corpus", count=2))
        yield running


def enter_key(tab: Page) -> None:
    """Type the key under Settings (opened for it after the first 401) and leave the field."""
    expect(tab.locator("#settings")).to_have_attribute("open", "")
    tab.fill("#api-key", API_KEY)
    tab.press("#api-key", "Tab")


@needs_chromium
def test_missing_key_banner_clears_once_a_key_works(browser: Browser, keyed_server: LiveServer) -> None:
    with new_tab(browser) as tab:
        # Timers stand still: the banner can only go because the page took it down.
        tab.clock.install(time=datetime(2025, 6, 1, 8, 0))
        tab.clock.pause_at(datetime(2025, 6, 1, 9, 0))
        tab.goto(keyed_server.url + "/")
        banner = tab.locator("#error")
        expect(banner).to_contain_text("missing API key")
        enter_key(tab)
        expect(tab.locator("#model option")).to_have_count(3)
        expect(banner).to_be_hidden()
        expect(tab.locator("#brief-article option")).to_have_count(4)  # "(a topic instead)" and 3 articles


@needs_chromium
def test_llm_citations_are_shown_in_reading_order(browser: Browser, keyed_server: LiveServer) -> None:
    with new_tab(browser) as tab:
        tab.goto(keyed_server.url + "/")
        enter_key(tab)
        expect(tab.locator("#model option")).to_have_count(3)
        tab.select_option("#model", "newsdesk-llm")
        tab.fill("#question", "How many ships were waiting to dock at the Port of Vellmar?")
        tab.click("#ask")
        answer = tab.locator("#log li.assistant").last
        expect(answer.locator(".meta")).to_contain_text("llm engine")
        expect(answer.locator("button.cite")).to_have_text(["[1]", "[2]"])
        first = answer.locator("button.cite").first
        expect(first).to_have_attribute("data-number", "2")  # the model's [2], read first
        first.click()
        expect(tab.locator("#source-title")).to_have_text(str(first.get_attribute("title")).rsplit(" (", 1)[0])
        expect(tab.locator("#article-text mark")).to_have_text(tab.locator("#quote").inner_text())
