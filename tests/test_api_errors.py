"""Errors a client can read, against a real uvicorn server on loopback: an unexpected failure is a JSON
500 that leaves the keep-alive connection usable, both kinds of 413 say the same, OPTIONS lists a path's
methods, the OpenAPI schema states the rules the validators enforce, and 422s read as sentences."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi.middleware.cors import CORSMiddleware
from fastapi.testclient import TestClient

from app.api import create_app
from app.api.guard import BodySizeLimit
from app.config import Settings
from app.embed import Embedder

from .live_service import LiveServer, live_server

pytestmark = pytest.mark.slow

MAX_BODY_BYTES = 20_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[LiveServer]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("api-errors"),
        seed_corpus=False,
        rate_limit_per_minute=0,
        max_body_bytes=MAX_BODY_BYTES,
    )
    with live_server(settings, embedder) as running:
        yield running


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    """One keep-alive connection to the server."""
    with httpx.Client(base_url=server.url, limits=httpx.Limits(max_connections=1), timeout=60) as client:
        yield client


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "code"} <= set(body["error"]), body
    return dict(body["error"])


def local_port(response: httpx.Response) -> int:
    """The client side's port of the connection the response came on."""
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


# -- unexpected errors ---------------------------------------------------------------------------


def test_an_unexpected_error_is_a_json_500_and_the_connection_stays_usable(
    server: LiveServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail: /srv/secret/path")

    monkeypatch.setattr(server.desk, "articles", bug)
    caplog.set_level(logging.ERROR, logger="newsdesk.api")
    failed = http.get("/v1/articles")
    failed_port = local_port(failed)
    after = http.get("/healthz")  # a reset connection raises httpx.ReadError here

    assert after.status_code == 200
    assert local_port(after) == failed_port, "the second request went over the same connection"
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/json"
    error = error_of(failed)
    request_id = failed.headers["X-Request-ID"]
    assert error == {
        "message": f"the request failed unexpectedly; the server log has the details under request id {request_id}",
        "type": "server_error",
        "code": "internal_error",
    }
    for internal in ("secret", "RuntimeError", "Traceback", "internal detail"):
        assert internal not in failed.text
    logged = [r for r in caplog.records if r.name == "newsdesk.api" and request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "internal detail: /srv/secret/path" in caplog.text


def test_a_failing_middleware_is_a_json_500_too(
    server: LiveServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def bug(*args: object) -> None:
        raise RuntimeError("internal detail: the limit table")

    monkeypatch.setattr(BodySizeLimit, "__call__", bug)  # outside the routes and their handlers
    caplog.set_level(logging.ERROR, logger="newsdesk.api")
    failed = http.get("/v1/articles")
    monkeypatch.undo()
    after = http.get("/healthz")

    assert after.status_code == 200 and local_port(after) == local_port(failed)
    assert failed.status_code == 500 and failed.headers["content-type"] == "application/json"
    assert error_of(failed)["code"] == "internal_error"
    assert "internal detail" not in failed.text and "internal detail: the limit table" in caplog.text


# -- body limits ---------------------------------------------------------------------------------


def test_a_chunked_body_over_the_limit_gets_the_same_413_as_a_declared_one(http: httpx.Client) -> None:
    oversized = b'{"question": "x", "history": [{"question": "q", "answer": "' + b"a" * 25_000 + b'"}]}'

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(oversized), 5_000):
            yield oversized[start : start + 5_000]

    declared = http.post("/v1/ask", content=oversized, headers={"Content-Type": "application/json"})
    chunked = http.post("/v1/ask", content=chunks(), headers={"Content-Type": "application/json"})

    assert chunked.request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in chunked.request.headers
    assert declared.status_code == chunked.status_code == 413
    assert chunked.content == declared.content
    assert error_of(chunked)["code"] == "body_too_large"
    message = error_of(chunked)["message"]
    assert f"the {MAX_BODY_BYTES:,}-byte limit" in message and "NEWSDESK_MAX_BODY_BYTES" in message


# -- OPTIONS and Allow ---------------------------------------------------------------------------


def test_options_lists_every_method_of_every_api_path(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert len(paths) >= 10
    for template, operations in paths.items():
        path = template.replace("{", "").replace("}", "")  # '/v1/articles/{article_id}' -> a concrete path
        response = http.options(path)
        assert response.status_code == 204, (path, response.text)
        allowed = {method.strip() for method in response.headers["Allow"].split(",")}
        # ('/v1/articles/upload' is also '/v1/articles/{article_id}': GET and DELETE are routed there too)
        assert {method.upper() for method in operations} | {"OPTIONS"} <= allowed, path
    assert http.options("/v1/articles/some-id").headers["Allow"] == "GET, DELETE, OPTIONS"
    assert http.options("/v1/articles").headers["Allow"] == "GET, POST, OPTIONS"
    assert http.options("/v1/ask").headers["Allow"] == "POST, OPTIONS"


def test_a_method_not_allowed_names_all_the_allowed_ones(http: httpx.Client) -> None:
    response = http.put("/v1/articles")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST, OPTIONS"
    assert error_of(response) == {
        "message": "PUT is not allowed on /v1/articles (see /docs)",
        "type": "invalid_request_error",
        "code": "method_not_allowed",
    }


def test_cors_preflight_still_works_when_cors_is_configured(tmp_path: Path, embedder: Embedder) -> None:
    app = create_app(Settings(data_dir=tmp_path, seed_corpus=False), embedder=embedder)
    app.add_middleware(CORSMiddleware, allow_origins=["https://desk.example"], allow_methods=["*"])
    client = TestClient(app)  # OPTIONS needs no desk: the lifespan is not run
    preflight = client.options(
        "/v1/ask", headers={"Origin": "https://desk.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://desk.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    plain = client.options("/v1/ask", headers={"Origin": "https://desk.example"})
    assert plain.status_code == 204
    assert plain.headers["Allow"] == "POST, OPTIONS"
    assert plain.headers["Access-Control-Allow-Origin"] == "https://desk.example"


# -- the OpenAPI schema --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi(server: LiveServer) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/openapi.json").json())


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"article_id": "no-such-article"}, True),
        ({"article_id": "no-such-article", "topic": None}, True),
        ({}, False),
        ({"article_id": "no-such-article", "topic": "Kursk"}, False),
        ({"article_id": None, "topic": None}, False),
    ],
)
def test_the_brief_schema_states_exactly_one_of_article_id_or_topic(
    openapi: dict[str, Any], http: httpx.Client, body: dict[str, Any], valid: bool
) -> None:
    brief = openapi["components"]["schemas"]["BriefIn"]
    assert "exactly one of ``article_id``" in brief["description"]
    schema = {**brief, "components": openapi["components"]}
    assert jsonschema.Draft202012Validator(schema).is_valid(body) is valid
    response = http.post("/v1/brief", json=body)
    if valid:
        assert response.status_code == 404, response.text  # past validation: the article is looked up
    else:
        assert response.status_code == 422
        assert error_of(response)["message"].startswith("send exactly one of 'article_id' (one stored article)")


def test_the_upload_schema_states_the_accepted_files(openapi: dict[str, Any]) -> None:
    content = openapi["paths"]["/v1/articles/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]
    body = openapi["components"]["schemas"][content["schema"]["$ref"].rsplit("/", 1)[1]]
    described = body["properties"]["file"]["description"]
    accepted_types = content["encoding"]["file"]["contentType"]
    for extension in (".txt", ".text", ".md", ".markdown", ".html", ".htm"):
        assert extension in described
    for media_type in ("text/plain", "text/markdown", "text/html"):
        assert media_type in described and media_type in accepted_types


# -- 422s that read naturally --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_args", "message", "field"),
    [
        (
            {"url": "/v1/ask", "json": {}},
            'the request body needs "question" (the text of a question, not blank, '
            "at most NEWSDESK_MAX_QUESTION_CHARS characters)",
            "body.question",
        ),
        (
            {"url": "/v1/ask", "content": b'{"question": ', "headers": {"Content-Type": "application/json"}},
            "the request body is not valid JSON: expecting value at line 1, column 14",
            "body",
        ),
        (
            {"url": "/v1/ask", "json": [1, 2]},
            "the request body must be a JSON object (with Content-Type: application/json)",
            "body",
        ),
        (
            {"url": "/v1/ask", "json": {"question": "hi", "colour": "red"}},
            'the request body\'s "colour" is not a known field; remove it (the fields are listed at /docs)',
            "body.colour",
        ),
        (
            {"url": "/v1/ask", "json": {"question": "hi", "history": [{"question": "q"}]}},
            'the request body\'s "history[0]" needs "answer"',
            "body.history[0].answer",
        ),
        (
            {"url": "/v1/ask", "json": {"question": "hi", "filters": {"since": "2025-05-01", "until": "2025-04-01"}}},
            "the request body's \"filters\": 'since' must be on or before 'until'",
            "body.filters",
        ),
        (
            {"url": "/v1/brief", "json": {"topic": "Kursk", "bullets": 0}},
            'the request body\'s "bullets" should be greater than or equal to 1',
            "body.bullets",
        ),
        (
            {"url": "/v1/articles/upload", "files": {"other": ("a.txt", b"text", "text/plain")}},
            'the request body needs "file" (an article file',
            "body.file",
        ),
    ],
)
def test_validation_errors_are_one_sentence_naming_the_field(
    http: httpx.Client, request_args: dict[str, Any], message: str, field: str
) -> None:
    response = http.post(**request_args)
    assert response.status_code == 422
    error = error_of(response)
    assert error["message"].startswith(message), error
    assert error["code"] == "invalid_request"
    assert error["fields"] == [f"{field}: {error['message']}"]


def test_query_errors_name_the_parameter_and_never_echo_the_input(http: httpx.Client) -> None:
    missing = error_of(http.get("/v1/search"))
    assert missing["message"] == 'the request needs the query parameter "q" (what to look for)'
    several = error_of(http.get("/v1/search", params={"q": "x", "k": "SECRET-INPUT", "until": "soon"}))
    assert several["message"] == (
        'the query parameter "k" should be a valid integer, unable to parse string as an integer; '
        'the query parameter "until" should be a valid date or datetime, input is too short'
    )
    assert [line.split(":")[0] for line in several["fields"]] == ["query.k", "query.until"]
    assert "SECRET-INPUT" not in str(several)
