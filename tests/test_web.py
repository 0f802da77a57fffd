"""The chat page at / in a real headless Chromium (Debian's, driven by Playwright; never downloaded)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from app.config import Settings
from app.embed import Embedder
from app.parse import parse_record

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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[LiveServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("web"), rate_limit_per_minute=0)
    with live_server(settings, embedder) as running:
        running.desk.ingest([parse_record(HOSTILE_ARTICLE, origin="test")])
        yield running


@pytest.fixture(scope="module")
def page(server: LiveServer) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            tab = browser.new_page()
            tab.set_default_timeout(60_000)
            tab.goto(server.url + "/")
            yield tab
        finally:
            browser.close()


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
    expect(result.locator("h2")).to_have_text(f"Quick Looks: {HOSTILE_ARTICLE['id']}")
    bullets = result.locator("li")
    expect(bullets.first).to_be_visible()
    assert 1 <= bullets.count() <= 8
    bullets.first.locator("button.cite").first.click()
    expect(page.locator("#source-title")).to_have_text(HOSTILE_ARTICLE["title"])
    expect(page.locator("#article-text mark")).to_have_text(page.locator("#quote").inner_text())
