"""The one place errors become responses: RFC 9457 problem+json, plus an OpenAI-style ``error`` member on the
OpenAI-compatible routes so that the ``openai`` SDK raises its own exception classes for them."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import GatewayError, InvalidInput, MalformedRequest, NotFound
from gateway.request_id import HEADER, current_request_id

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
OPENAI_PREFIX = "/v1/images/"


class _HttpError(GatewayError):
    """Framework-level HTTP errors (unknown route, wrong method) in our hierarchy."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status  # type: ignore[misc]
        self.slug = "http-error"  # type: ignore[misc]
        self.title = "HTTP error"  # type: ignore[misc]


def problem_response(exc: GatewayError, path: str) -> JSONResponse:
    body: dict[str, Any] = exc.to_problem(instance=path)
    headers = dict(exc.headers or {})
    if (request_id := current_request_id()) is not None:  # also where RequestIdMiddleware cannot add it (a 500)
        body["request_id"] = request_id
        headers[HEADER] = request_id
    if path.startswith(OPENAI_PREFIX):
        codes = body.get("codes") or []
        body["error"] = {
            "message": exc.detail,
            "type": exc.slug,
            "code": codes[0] if codes else body.get("rule", exc.slug),
            "param": body.get("field"),
        }
    return JSONResponse(body, status_code=exc.status, headers=headers, media_type=PROBLEM_JSON)


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def validation_to_error(exc: RequestValidationError) -> GatewayError:
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {"loc": ("body",), "type": "invalid", "msg": "invalid"}
    if first.get("type") == "json_invalid":
        return MalformedRequest(f"the body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    if first.get("loc") == ("body",) and first.get("type") in ("model_attributes_type", "dict_type", "missing"):
        return MalformedRequest("the body must be a JSON object")
    field, rule = _field_of(tuple(first["loc"])), str(first["type"])
    details = [{"field": _field_of(tuple(e["loc"])), "rule": str(e["type"]), "msg": e["msg"]} for e in errors]
    return InvalidInput(field, rule, f"`{field}`: {first['msg']}", errors=details)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway(request: Request, exc: GatewayError) -> JSONResponse:
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(validation_to_error(exc), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error: GatewayError = NotFound(f"no route {request.url.path}") if exc.status_code == 404 else _HttpError(
            exc.status_code, str(exc.detail)
        )
        return problem_response(error, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(GatewayError("an unexpected error occurred; nothing was released"), request.url.path)
