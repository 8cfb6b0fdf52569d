"""Request ids: one per HTTP request, echoed as ``X-Request-ID``, written on every log line and audit entry it causes.

A client (or the proxy in front of the gateway) may send its own ``X-Request-ID``; it is kept if it is 1-128
characters of ``[A-Za-z0-9._:-]`` (so it can never smuggle a header, a log line or markup), otherwise a new one is
made. The id lives in a context variable for the request's task, and so reaches the threads FastAPI runs sync
endpoints in, the group committer (``gateway.commit`` runs each write in its caller's context) and, stored on the
job row, the worker thread that runs an async job (``bound``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode()
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass
class RequestContext:
    """What logs and audit entries say about the request being served. Mutable on purpose: the tenant is learnt
    only once the API key is resolved, in a dependency that runs in another thread (with a copy of the context, so
    setting a new value there would not reach the request's own task; changing this shared object does)."""

    request_id: str | None
    tenant: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("mediagate_request", default=None)


def current() -> RequestContext | None:
    return _current.get()


def current_request_id() -> str | None:
    ctx = _current.get()
    return ctx.request_id if ctx is not None else None


def note_tenant(tenant: str) -> None:
    """Record the authenticated tenant on the current request (for its log lines); no-op outside a request."""
    ctx = _current.get()
    if ctx is not None:
        ctx.tenant = tenant


@contextmanager
def bound(request_id: str | None, tenant: str | None = None) -> Iterator[RequestContext]:
    """Run a block as part of request ``request_id``: an async job's worker restores the id of the request that
    queued it, so that the job's log lines and audit entry carry it."""
    ctx = RequestContext(request_id, tenant)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def valid_request_id(value: str | None) -> bool:
    return value is not None and _VALID.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Assigns the request id (the client's, when valid) and returns it as ``X-Request-ID`` on every response.

    Outermost of the gateway's middlewares. Errors rendered further out (Starlette's server-error handler, for an
    unhandled exception) do not pass through ``send_with_id``; for them the context is left set when an exception
    escapes, and ``gateway.problems`` adds the header itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == _HEADER_KEY), None)
        request_id = incoming if incoming is not None and valid_request_id(incoming) else new_request_id()
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER_KEY]
                message = {**message, "headers": [*headers, (_HEADER_KEY, encoded)]}
            await send(message)

        token = _current.set(RequestContext(request_id))
        await self.app(scope, receive, send_with_id)
        _current.reset(token)  # not on an exception: the server-error handler outside still needs the id
