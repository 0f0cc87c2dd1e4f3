"""Errors as RFC 9457 problem details: the one place ragline's error tree meets HTTP."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragline.core.errors import (
    DependencyTimeout,
    DependencyUnavailable,
    DocumentError,
    Forbidden,
    InvalidInput,
    NotFound,
    NotImplementedInShape,
    Overloaded,
    RaglineError,
    RateLimited,
    TooLarge,
    Unauthorized,
)
from ragline.service.api.ratelimit import retry_after_header
from ragline.service.api.schemas import Problem

log = logging.getLogger("ragline.api")

_STATUS: list[tuple[type[RaglineError], int, str]] = [
    (Unauthorized, 401, "Unauthorized"),
    (Forbidden, 403, "Forbidden"),
    (NotFound, 404, "Not Found"),
    (TooLarge, 413, "Payload Too Large"),
    (InvalidInput, 422, "Invalid input"),
    (DocumentError, 422, "Unreadable document"),
    (RateLimited, 429, "Too Many Requests"),
    (NotImplementedInShape, 501, "Not Implemented"),
    (DependencyTimeout, 504, "Dependency timed out"),
    (Overloaded, 503, "Busy"),
    (DependencyUnavailable, 503, "Dependency unavailable"),
]
# How long a client should wait before retrying a dependency that is down.
_UNAVAILABLE_RETRY_S = 5.0

_PROBLEM_CODES = {
    400: "Malformed request",
    401: "Missing or invalid credentials",
    403: "Missing scope",
    404: "Not found in the caller's tenant",
    408: "Request body not sent in time",
    413: "Request body too large",
    422: "Invalid request",
    429: "Rate limited (see Retry-After)",
    500: "Internal error",
    503: "A dependency is unavailable or ragline is busy (see Retry-After)",
    504: "A dependency timed out",
}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {
        "description": text,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for code, text in _PROBLEM_CODES.items()
}


def problem(
    status: int,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail, errors=errors).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")


def from_error(exc: RaglineError) -> JSONResponse:
    """ragline's error tree -> HTTP status, problem details and headers."""
    for kind, status, title in _STATUS:
        if isinstance(exc, kind):
            return problem(status, title, str(exc), _headers(exc, status))
    return problem(500, "Internal error", str(exc))


def _headers(exc: RaglineError, status: int) -> dict[str, str] | None:
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, (RateLimited, Overloaded)):
        return {"Retry-After": retry_after_header(exc.retry_after_s)}
    if status == 503:
        return {"Retry-After": retry_after_header(_UNAVAILABLE_RETRY_S)}
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RaglineError)
    async def ragline_error(request: Request, exc: RaglineError) -> JSONResponse:
        return from_error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(500, "Internal error", f"unexpected {type(exc).__name__}; see the server log")


def install_openapi(app: FastAPI, *extra_models: type[BaseModel]) -> None:
    """Put Problem (and models read by hand, off the event loop) in the spec's components."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            models: tuple[type[BaseModel], ...] = (Problem, *extra_models)
            for model in models:
                components.update(model.model_json_schema(ref_template="#/components/schemas/{model}").pop("$defs", {}))
                components[model.__name__] = {
                    k: v
                    for k, v in model.model_json_schema(ref_template="#/components/schemas/{model}").items()
                    if k != "$defs"
                }
            for path in schema["paths"].values():  # FastAPI's own 422 schema is not what we send
                for operation in path.values():
                    operation.get("responses", {})["422"] = PROBLEM_RESPONSES[422]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
