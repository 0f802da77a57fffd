"""The MCP server as agents use it: the SDK's own client over stdio (a real ``newsdesk mcp`` process) and
over streamable HTTP (``/mcp`` of a real server), with real Chroma and the bundled embedding model."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from app.api.mcp import article_uri, build_server, desk_when_ready
from app.api.schemas import AnswerOut, ArticleOut, BriefOut
from app.api.state import Service, Startup
from app.config import Settings
from app.embed import Embedder
from app.service import Newsdesk

from .conftest import CORPUS, REPO
from .live_service import LiveServer, live_server

pytestmark = pytest.mark.slow
NEWSDESK = Path(sys.executable).parent / "newsdesk"  # the command the README's desktop configuration runs

ARTICLES = (
    "2024-12-18-fed-rate-cut.txt",
    "2025-03-19-starliner-astronauts-return.txt",
    "2025-04-26-russia-kursk-control.txt",
)
QUESTION = "Who dissented from the Fed's December rate decision?"
TOOLS = {"search", "ask", "brief", "list_articles", "get_article"}
MODES = ("legacy", "auto")  # the initialize handshake desktop agents use, and the SDK's default
KEY = "agent-key"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def corpus_files(target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(CORPUS / name, target / name)) for name in ARTICLES]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A data directory holding three of our corpus articles, ingested with the real model into embedded Chroma."""
    root = tmp_path_factory.mktemp("mcp-store")
    desk = Newsdesk(Settings(data_dir=root / "data"), embedder=embedder)
    try:
        assert desk.ingest_paths(corpus_files(root / "corpus")).articles == len(ARTICLES)
    finally:
        desk.close()
    return root / "data"


async def agent_session(client: Client) -> None:
    """What an agent does: list the tools, ask, check the citations against the articles, brief, and get
    tool errors (not a dropped session) for bad arguments."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    assert all(tool.output_schema for tool in tools.values()), "every result is structured content"
    assert "citations" in tools["ask"].output_schema["properties"]
    assert tools["ask"].input_schema["required"] == ["question"]

    asked = await client.call_tool("ask", {"question": QUESTION})
    assert not asked.is_error, asked.content
    answer = AnswerOut.model_validate(asked.structured_content)
    assert "Hammack" in answer.answer and not answer.refused
    assert answer.citations, "a cited answer"
    assert any("Hammack" in citation.quote for citation in answer.citations)
    for citation in answer.citations:
        got = await client.call_tool("get_article", {"article_id": citation.article_id})
        article = ArticleOut.model_validate(got.structured_content)
        assert article.text[citation.start : citation.end] == citation.quote, "the span is the quote"
    assert asked.content[0].type == "text" and QUESTION in asked.content[0].text, "and as text for text-only clients"

    briefed = await client.call_tool("brief", {"article_id": answer.citations[0].article_id, "bullets": 3})
    brief = BriefOut.model_validate(briefed.structured_content)
    assert len(brief.bullets) == 3 and all(bullet.citations for bullet in brief.bullets)

    for name, arguments, says in (
        ("ask", {"question": 42}, "question"),
        ("ask", {"question": QUESTION, "k": 0}, "greater than or equal to 1"),
        ("ask", {"question": "   "}, "the question is empty"),
        ("ask", {"question": QUESTION, "since": "2025-05-01", "until": "2025-01-01"}, "'since' must be on or before"),
        ("brief", {}, "give exactly one of 'article_id' (a stored article) or 'topic'"),
        ("get_article", {"article_id": "no-such-article"}, "the list_articles tool lists"),
        ("search", {}, "query"),
    ):
        failed = await client.call_tool(name, arguments)
        assert failed.is_error, (name, arguments)
        assert says in failed.content[0].text, failed.content[0].text
        assert failed.structured_content is None

    listed = await client.call_tool("list_articles", {"limit": 2})
    assert not listed.is_error, "the session carries on after the errors"
    page = listed.structured_content
    assert page is not None and len(page["articles"]) == 2 and page["next_offset"] == 2


async def resources_session(client: Client) -> None:
    resources = (await client.list_resources()).resources
    titles = {resource.title for resource in resources}
    assert len(resources) == len(ARTICLES) and any("Fed Cuts Rates" in str(title) for title in titles)
    fed = next(resource for resource in resources if "Fed Cuts Rates" in str(resource.title))
    read = (await client.read_resource(str(fed.uri))).contents[0]
    assert read.mime_type == "application/json"
    assert ArticleOut.model_validate_json(getattr(read, "text", "")).id == fed.name
    with pytest.raises(MCPError, match="no article with id 'gone'"):
        await client.read_resource(article_uri("gone"))


def test_stdio_serves_the_tools_and_the_articles(stored: Path, tmp_path: Path) -> None:
    """``newsdesk mcp`` as Claude Desktop starts it: the command and its environment, nothing else."""
    server = StdioServerParameters(
        command=str(NEWSDESK),
        args=["mcp"],
        env={"NEWSDESK_DATA_DIR": str(stored)},
        cwd=tmp_path,
    )

    async def sessions() -> None:
        with (tmp_path / "server.log").open("w") as log:
            for mode in MODES:
                async with Client(stdio_client(server, errlog=log), mode=mode) as client:
                    await agent_session(client)
                    await resources_session(client)

    anyio.run(sessions)
    assert "Traceback" not in (tmp_path / "server.log").read_text()


@pytest.fixture(scope="module")
def http_server(stored: Path, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("mcp-http")
    shutil.copytree(stored, data, dirs_exist_ok=True)
    settings = Settings(data_dir=data, seed_corpus=False, api_keys=f"{KEY},other-key")  # type: ignore[arg-type]
    with live_server(settings, embedder) as server:
        yield server


def test_http_serves_the_tools_behind_the_api_keys(http_server: LiveServer) -> None:
    url = f"{http_server.url}/mcp"

    async def sessions() -> None:
        for mode in MODES:
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http,
                Client(streamable_http_client(url, http_client=http), mode=mode) as client,
            ):
                await agent_session(client)
                await resources_session(client)

    anyio.run(sessions)
    metrics = httpx.get(f"{http_server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'method="POST",route="/mcp",status="200"' in metrics, "counted under its route, not as unmatched"


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "missing_api_key"), ({"Authorization": "Bearer wrong"}, "invalid_api_key")],
)
def test_http_without_a_valid_key_is_refused_like_v1(
    http_server: LiveServer, headers: dict[str, str], code: str
) -> None:
    response = httpx.post(f"{http_server.url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_http_shares_the_rate_limit_of_v1(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path, seed_corpus=False, rate_limit_per_minute=1)
    with live_server(settings, embedder) as server:
        first = httpx.post(f"{server.url}/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert first.status_code == 200, first.text
        again = httpx.post(f"{server.url}/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert again.status_code == 429 and again.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(again.headers["Retry-After"]) > 0
        assert httpx.get(f"{server.url}/v1/articles").status_code == 429, "one bucket per caller for both"


def test_tools_called_while_the_service_starts_say_so(embedder: Embedder) -> None:
    """Before start-up has built the desk, the tools are listed and a call is a tool error saying what
    start-up is doing; listing the articles is a protocol error saying the same."""
    server = build_server(partial(desk_when_ready, Startup()), Service(Settings()).run)

    async def session() -> None:
        async with Client(server) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
            asked = await client.call_tool("ask", {"question": QUESTION})
            assert asked.is_error and "newsdesk is starting (starting); retry in 5 s" in asked.content[0].text
            with pytest.raises(MCPError, match="newsdesk is starting"):
                await client.list_resources()

    anyio.run(session)


def test_readme_shows_the_desktop_configuration() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## MCP server", 1)[1].split("\n## ", 1)[0]
    assert '"mcpServers"' in section and '"args": ["mcp"]' in section and "NEWSDESK_DATA_DIR" in section
    assert "/mcp" in section and "Authorization: Bearer" in section
