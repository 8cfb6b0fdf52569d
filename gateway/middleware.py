"""ASGI middleware: request-body size limit, and request metrics with the access log. Pure ASGI, so no per-request
task overhead."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import InvalidInput, PayloadTooLarge
from gateway.metrics import Metrics
from gateway.problems import problem_response

access_log = logging.getLogger("mediagate.access")

# A JSON \\u escape of a UTF-16 surrogate that is not half of a pair: JSON allows it, but it is no Unicode
# character, cannot be encoded as UTF-8, and crashed native code it reached (regorus). Refused at the edge.
# Scanned left to right, an escaped backslash (``\\``) is consumed first, so ``\\ud800`` (the text "\ud800") is
# never mistaken for an escape; a high surrogate takes the low one after it when there is one.
_SURROGATE_ESCAPES = re.compile(
    rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}(?P<low>\\u[dD][c-fC-F][0-9a-fA-F]{2})?|(?P<lone>\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)


def lone_surrogate(body: bytes) -> int | None:
    """The byte offset of the first unpaired surrogate escape in a JSON body, or None."""
    if b"\\u" not in body:
        return None
    for found in _SURROGATE_ESCAPES.finditer(body):
        if found.group(0) == b"\\\\":
            continue
        if found.group("lone") is not None or found.group("low") is None:
            return found.start()
    return None


class BodyLimitMiddleware:
    """Refuses bodies over ``limit`` bytes with 413 before the app sees them, whether or not Content-Length is set,
    and JSON bodies carrying an unpaired UTF-16 surrogate escape with 422.

    The body is buffered (it is at most ``limit`` bytes) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, limit: int, overrides: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.overrides = overrides or {}  # path prefix -> limit, e.g. policy bundle uploads

    def _limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.overrides.items() if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        too_large = PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes", limit=limit)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await problem_response(too_large, scope["path"])(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await problem_response(too_large, scope["path"])(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if b"json" in content_type and (offset := lone_surrogate(body)) is not None:
            bad = InvalidInput("body", "unicode", f"the JSON body has an unpaired UTF-16 surrogate escape at byte "
                               f"{offset} ({body[offset:offset + 6].decode('ascii', 'replace')}): not a Unicode "
                               "character", offset=offset)
            await problem_response(bad, scope["path"])(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class MetricsMiddleware:
    """Times each request once for two readers: the latency histogram, per route template (not raw path, to bound
    label cardinality) and outcome class, and the access log, one line on logger ``mediagate.access`` in place of
    uvicorn's (``method``, ``path`` without the query, ``status``, ``duration_ms`` as ``extra=``, so the JSON
    formatter writes them as members; the request id comes from ``RequestIdMiddleware``, which wraps this one).
    A request whose handler raised counts as 500, the response Starlette then sends."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - start
            route: Any = scope.get("route")
            method, template = scope["method"], getattr(route, "path", None) or "unmatched"
            self.metrics.request_seconds.labels(method, template, f"{status // 100}xx").observe(seconds)
            if access_log.isEnabledFor(logging.INFO):
                duration_ms, path = round(seconds * 1000, 2), scope["path"]
                access_log.info("%s %s %d %.2fms", method, path, status, duration_ms,
                                extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms})
