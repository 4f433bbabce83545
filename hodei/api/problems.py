"""Errors as ``application/problem+json`` (RFC 9457) carrying hodei's error class and
exit code, so a remote client raises the same :class:`~hodei.errors.HodeiError`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from hodei import errors

logger = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"

# Most specific first: the first base class of the error found here gives its status.
_STATUS: tuple[tuple[type[errors.HodeiError], int], ...] = (
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.MethodNotAllowed, 405),
    (errors.InvalidInput, 422),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.ServiceUnavailable, 503),
    (errors.SchemaOutOfDate, 503),
    (errors.TokenRejected, 403),
    (errors.WaitTimeout, 408),
)


class Problem(BaseModel):
    """An error (RFC 9457): ``code`` is the HodeiError class, ``exit_code`` the CLI's."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    exit_code: int


def _documented(status: int, what: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"description": what, "model": Problem, "content": {PROBLEM_TYPE: {"schema": schema}}}


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented(400, "another hodei error"),
    401: _documented(401, "no, unknown, revoked or expired token (Unauthorized)"),
    403: _documented(403, "the token's role may not do this (Forbidden)"),
    404: _documented(404, "no such job, worker, provider or token (NotFound)"),
    409: _documented(409, "not in this state (Conflict)"),
    405: _documented(405, "the endpoint does not take this method (MethodNotAllowed)"),
    422: _documented(422, "invalid input (InvalidInput)"),
    503: _documented(503, "the database, broker or a provider is unreachable"),
}
"""The problems every /v1 route may answer with, for the OpenAPI schema."""


NOT_JSON = "the body is not valid JSON in UTF-8"


def _json_content(request: Request) -> bool:
    """Whether the request says its body is JSON (``application/json``, ``...+json``)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path takes (Starlette's own Allow names only
    those of the first route that matched the path: POST, for GET and POST /v1/jobs)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]
    return ", ".join(allowed)


def status_for(exc: errors.HodeiError) -> int:
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 400)


def problem(status: int, code: str, exit_code: int, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"https://hodei.dev/errors/{code}",
        "title": code,
        "status": status,
        "detail": detail,
        "code": code,
        "exit_code": exit_code,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def hodei_problem(exc: errors.HodeiError) -> JSONResponse:
    return problem(status_for(exc), type(exc).__name__, exc.exit_code, exc.message)


def install(app: FastAPI) -> None:
    """Every error a route can end with becomes a problem document; never a traceback."""

    @app.exception_handler(errors.HodeiError)
    async def _hodei(_request: Request, exc: errors.HodeiError) -> JSONResponse:
        return hodei_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = tuple(first.get("loc", ()))
        if first.get("type") == "json_invalid":
            message = f"{NOT_JSON} ({first.get('ctx', {}).get('error', 'a syntax error')})"
        elif loc[:1] == ("body",) and not _json_content(request):
            # FastAPI reads a body as JSON only when the request says it is JSON.
            shown = request.headers.get("content-type") or "none"
            message = f"send Content-Type: application/json (got {shown[:60]!r})"
        else:
            where = ".".join(str(p) for p in loc if p != "body")
            message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        return problem(422, "InvalidInput", errors.InvalidInput.exit_code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body json.loads cannot read at all: bytes that are
            # not UTF-8, or nesting deeper than Python's recursion limit.
            invalid = errors.InvalidInput
            return problem(
                422, "InvalidInput", invalid.exit_code, NOT_JSON + " (or nested too deep)"
            )
        if exc.status_code == 405:
            allowed = _allowed_methods(request) or (exc.headers or {}).get("Allow", "")
            detail = f"{request.method} is not allowed on {request.url.path}"
            detail += f"; use {allowed}" if allowed else ""
            response = problem(405, "MethodNotAllowed", errors.MethodNotAllowed.exit_code, detail)
            if allowed:
                response.headers["Allow"] = allowed
            return response
        code = "NotFound" if exc.status_code == 404 else "HodeiError"
        exit_code = errors.NotFound.exit_code if exc.status_code == 404 else 1
        return problem(exc.status_code, code, exit_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        response = problem(500, "InternalError", 70, f"internal error: {type(exc).__name__}")
        # Starlette raises the error again once this is sent, and uvicorn then closes the
        # connection; saying so lets a keep-alive client open a new one for its next call
        # rather than send it on a connection being closed (ConnectionResetError).
        response.headers["Connection"] = "close"
        return response
