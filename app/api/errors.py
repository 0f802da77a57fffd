"""The one place where errors become HTTP responses.

    raised                                  status  error.type
    NewsdeskError (app/errors.py)
     ├── NotFoundError                      404     not_found_error
     ├── InputError, ParseError             422     invalid_request_error
     ├── NotConfiguredError                 400     invalid_request_error (engine llm, none configured)
     ├── LLMUnavailableError                502     upstream_error        (details logged, not sent)
     ├── StoreError, EmbeddingMismatchError 503     service_unavailable   (details logged, not sent)
     ├── EmbeddingError                     503     service_unavailable   (details logged, not sent)
     └── ConfigError, PromptError           500     server_error          (the server's settings or prompt
                                                                            files are broken; details logged)
    ApiError (raised by the edge itself)    its own: 401, 404, 413, 415, 429
    RequestValidationError                  422     invalid_request_error: one sentence per problem saying
                                                    what to fix, and its place in ``fields``
    HTTPException (routing, body limit)     its own; a 405 lists every method of the path in ``Allow``,
                                                    and an OPTIONS request gets that list with a 204
    anything else                           500     server_error, code internal_error (``ErrorBoundary``):
                                                    logged with its traceback under a request id that the
                                                    response carries (X-Request-ID), never sent to the client

Every body has the shape OpenAI clients read: ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from typing import Any, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import (
    ConfigError,
    EmbeddingError,
    InputError,
    LLMUnavailableError,
    NewsdeskError,
    NotConfiguredError,
    NotFoundError,
    StoreError,
)

log = logging.getLogger("newsdesk.api")

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
EDGE_CODES = {404: "unknown_endpoint", 405: "method_not_allowed", 413: "body_too_large"}
REQUEST_ID_HEADER = "X-Request-ID"


class ApiError(Exception):
    """An error answered with ``status`` and an OpenAI-style error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        fields: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.headers = headers or {}
        self.fields = fields

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.kind, "code": self.code}
        if self.fields is not None:
            error["fields"] = self.fields
        return {"error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def from_newsdesk(error: NewsdeskError) -> ApiError:
    """The HTTP form of a newsdesk error. Server-side failures keep their details in the log."""
    if isinstance(error, NotFoundError):
        return ApiError(404, f"{error} (see GET /v1/articles)", kind="not_found_error", code="not_found")
    if isinstance(error, InputError):
        return ApiError(422, str(error), kind="invalid_request_error", code="invalid_input")
    if isinstance(error, NotConfiguredError):
        return ApiError(400, str(error), kind="invalid_request_error", code="not_configured")
    log.error("%s: %s", type(error).__name__, error)
    if isinstance(error, ConfigError):
        return ApiError(
            500, "the server is misconfigured; details are in the server log", kind="server_error", code="misconfigured"
        )
    if isinstance(error, LLMUnavailableError):
        return ApiError(
            502,
            "the language model is unavailable; try again later, or ask with the extractive engine",
            kind="upstream_error",
            code="llm_unavailable",
        )
    if isinstance(error, StoreError | EmbeddingError):
        what = "article store" if isinstance(error, StoreError) else "embedding model"
        return ApiError(
            503,
            f"the {what} is unavailable; try again shortly (details are in the server log)",
            kind="service_unavailable",
            code="store_unavailable" if isinstance(error, StoreError) else "embedding_unavailable",
            headers={"Retry-After": "5"},
        )
    return ApiError(500, "the request failed; details are in the server log", kind="server_error")


def edge_error(status: int, message: str, headers: dict[str, str] | None = None) -> ApiError:
    """An error of the HTTP edge itself (routing, the body limit), with the code clients can match on."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return ApiError(status, message, kind=kind, code=EDGE_CODES.get(status), headers=headers)


# -- validation errors ---------------------------------------------------------------------------

PLACES = {"query": "the query parameter", "path": "the path parameter", "header": "the header", "cookie": "the cookie"}
PYDANTIC_SHOULD = re.compile(r"^\w+ should (.+)$", re.DOTALL)


def validation_problems(
    errors: Sequence[Any], request: Request | None = None, body: Any = None
) -> list[tuple[str, str]]:
    """Pydantic's errors as (where, what to fix): ``body.filters.since`` and one sentence naming the field,
    never echoing the input. ``request`` lets a missing field be explained by its description in the
    schema; ``body`` is the malformed JSON text, to say where it breaks."""
    problems = []
    for error in errors:
        loc = list(error.get("loc", ()))
        place = str(loc[0]) if loc else "body"
        parts = loc[1:] if place in ("body", *PLACES) else loc
        where = ".".join(filter(None, (place, _dotted(parts)))) if error.get("type") != "json_invalid" else place
        problems.append((where, _problem(error, place, parts, request, body)))
    return problems


def _problem(error: Any, place: str, parts: list[Any], request: Request | None, body: Any) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    subject = _subject(place, parts)
    if kind == "json_invalid":
        at = _json_position(body, parts[0]) if parts and isinstance(parts[0], int) else ""
        return f"the request body is not valid JSON: {_lowered(str(ctx.get('error', 'malformed')))}{at}"
    if kind == "missing":
        hint = _description(request, place, parts)
        if place != "body":
            needed = f"the request needs {subject}"
        else:
            needed = f'{_subject(place, parts[:-1])} needs "{parts[-1]}"' if parts else "the request needs a body"
        return needed + (f" ({hint})" if hint else "")
    if kind == "extra_forbidden":
        return f"{subject} is not a known field; remove it (the fields are listed at /docs)"
    if kind in ("model_attributes_type", "model_type", "dict_type"):
        return f"{subject} must be a JSON object" + ("" if parts else " (with Content-Type: application/json)")
    if kind == "value_error" and "error" in ctx:  # a validator's own message, without pydantic's "Value error, "
        return str(ctx["error"]) if not parts else f"{subject}: {ctx['error']}"
    message = str(error.get("msg", "is invalid"))
    should = PYDANTIC_SHOULD.match(message)  # "Input should be ...", "String should have ..."
    return f"{subject} should {should.group(1)}" if should else f"{subject}: {message}"


def _subject(place: str, parts: Sequence[Any]) -> str:
    path = _dotted(parts)
    if place == "body":
        return f'the request body\'s "{path}"' if path else "the request body"
    return f'{PLACES.get(place, "the parameter")} "{path}"'


def _dotted(parts: Sequence[Any]) -> str:
    """``('history', 0, 'answer')`` as ``history[0].answer``."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _lowered(text: str) -> str:
    """'Expecting value' as 'expecting value', to go inside a sentence; 'URL ...' stays."""
    return text if text[1:2].isupper() else text[:1].lower() + text[1:]


def _json_position(body: Any, offset: int) -> str:
    if not isinstance(body, str) or offset > len(body):
        return f" at character {offset}"
    line = body.count("\n", 0, offset) + 1
    column = offset - (body.rfind("\n", 0, offset) + 1) + 1
    return f" at line {line}, column {column}"


def _description(request: Request | None, place: str, parts: Sequence[Any]) -> str | None:
    """What the schema says a field is (its description), as a phrase: 'the text of a question'."""
    route = request.scope.get("route") if request is not None else None
    info: FieldInfo | None = None
    if place == "body":
        body_field = getattr(route, "body_field", None)
        if body_field is not None:
            info = _field_at(body_field.field_info.annotation, parts)
    elif parts:
        params = getattr(getattr(route, "dependant", None), f"{place}_params", None) or []
        info = next((param.field_info for param in params if param.alias == parts[0]), None)
    if info is None or not info.description:
        return None
    return _lowered(info.description.strip().rstrip("."))


def _field_at(annotation: Any, parts: Sequence[Any]) -> FieldInfo | None:
    info = None
    for part in parts:
        if isinstance(part, int):  # an item of a list: the same model
            continue
        model = _model_in(annotation)
        if model is None or part not in model.model_fields:
            return None
        info = model.model_fields[part]
        annotation = info.annotation
    return info


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model in ``X``, ``X | None``, ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        if model := _model_in(argument):
            return model
    return None


# -- the handlers --------------------------------------------------------------------------------


async def _newsdesk_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, NewsdeskError)
    return from_newsdesk(error).response()


async def _api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error.response()


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = validation_problems(error.errors(), request, error.body)
    sentences = [sentence for _, sentence in problems]
    message = "; ".join(sentences[:5]) + (f"; and {len(sentences) - 5} more (see fields)" if len(sentences) > 5 else "")
    fields = [f"{where}: {sentence}" for where, sentence in problems]
    return ApiError(422, message, kind="invalid_request_error", code="invalid_request", fields=fields).response()


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    headers = dict(error.headers or {})
    if error.status_code == 404 and error.detail == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path} (the endpoints are listed at /docs)"
    elif error.status_code == 405:
        allowed = allowed_methods(request.app.router.routes, request.scope)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=headers)
        message = f"{request.method} is not allowed on {request.url.path} (see /docs)"
    else:
        message = str(error.detail)
    return edge_error(error.status_code, message, headers).response()


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method a route serves at this request's path, and OPTIONS (answered here); [] under a mount
    (static files), whose methods its app decides."""
    routed = [route for route in routes if not isinstance(route, Mount)]
    served = [
        method
        for method in HTTP_METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in routed)
    ]
    return [*served, "OPTIONS"] if served else []


class ErrorBoundary:
    """ASGI middleware around the routes and the other middleware: an exception no handler maps is
    answered with a JSON 500 and not raised further.

    Starlette's own last resort sends a plain-text 500 and then re-raises, so that the server can log
    it; uvicorn answers an exception raised after a response by closing the connection, which resets
    the client's next request on a keep-alive connection. Here the traceback is logged once, under
    a request id the response carries."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            request_id = secrets.token_hex(8)
            log.exception("request %s failed: %s %r", request_id, scope.get("method"), scope.get("path"))
            if started:  # part of a response is out: only closing the connection tells the client it is cut
                raise
            await unexpected_error(request_id).response()(scope, receive, send)


def unexpected_error(request_id: str) -> ApiError:
    return ApiError(
        500,
        f"the request failed unexpectedly; the server log has the details under request id {request_id}",
        kind="server_error",
        code="internal_error",
        headers={REQUEST_ID_HEADER: request_id},
    )


def install_error_handlers(app: FastAPI) -> None:
    """The handlers, and ``ErrorBoundary`` as the outermost middleware (call after adding the others):
    a failure in another middleware is a JSON 500 too."""
    app.add_exception_handler(NewsdeskError, _newsdesk_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(ErrorBoundary)
