"""The access log: one line per HTTP request on logger ``mediagate.access``, in place of uvicorn's.

Fields (as ``extra=``, so the JSON formatter writes them as members): ``method``, ``path`` (no query string),
``status``, ``duration_ms``; the request id comes from the context ``RequestIdMiddleware`` set, which must wrap
this middleware. A request whose handler raised is logged with status 500, the response Starlette then sends.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("mediagate.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
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
            duration_ms = round((time.perf_counter() - start) * 1000, 2)
            method, path = scope["method"], scope["path"]
            log.info("%s %s %d %.2fms", method, path, status, duration_ms,
                     extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms})
