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
    RequestValidationError                  422     invalid_request_error, one line per problem
    HTTPException (routing, body limit)     its own
    anything else                           500 from Starlette: "Internal Server Error", logged with its
                                                traceback on the server, never sent to the client

Every body has the shape OpenAI clients read: ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

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


def validation_problems(errors: list[Any]) -> list[str]:
    """Pydantic's errors as '<where>: <what to fix>' lines (never echoing the input)."""
    lines = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        place = loc[0] if loc else "body"
        where = ".".join(loc[1:]) if place in ("body", "query", "path", "header") and len(loc) > 1 else place
        kind = error.get("type", "")
        if kind == "json_invalid":
            problem = error.get("ctx", {}).get("error", "malformed")
            lines.append(f"body: not valid JSON ({problem}); send a JSON object with Content-Type: application/json")
            continue
        if kind == "missing":
            what = "is required; add it"
        elif kind == "extra_forbidden":
            what = "is not a known field; remove it (the fields are listed at /docs)"
        elif kind in ("model_attributes_type", "dict_type") and where == "body":
            what = "must be a JSON object"
        elif kind == "value_error" and "error" in error.get("ctx", {}):
            what = str(error["ctx"]["error"])  # a validator's own message, without pydantic's "Value error, "
        else:
            what = str(error.get("msg", "is invalid"))
        lines.append(f"{place if where == place else f'{place}.{where}'}: {what}")
    return lines


async def _newsdesk_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, NewsdeskError)
    return from_newsdesk(error).response()


async def _api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error.response()


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = validation_problems(list(error.errors()))
    message = "invalid request: " + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
    return ApiError(422, message, kind="invalid_request_error", code="invalid_request", fields=problems).response()


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if error.status_code == 404 and error.detail == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path} (the endpoints are listed at /docs)"
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path} (see /docs)"
    else:
        message = str(error.detail)
    kind = "invalid_request_error" if error.status_code < 500 else "server_error"
    headers = dict(error.headers or {})
    return ApiError(error.status_code, message, kind=kind, headers=headers).response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NewsdeskError, _newsdesk_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
