"""Structured logs: one JSON object per line (or plain text), each naming the request and tenant it belongs to.

``mediagate serve`` calls :func:`configure_logging` with ``MEDIAGATE_LOG_FORMAT`` (``json``, the default, or
``text``) and ``MEDIAGATE_LOG_LEVEL``. A JSON line has ``ts`` (RFC 3339, UTC), ``level``, ``logger``, ``message``,
``request_id`` and ``tenant`` (null outside a request, or before the API key is known), ``exc_type`` and ``exc``
(the traceback) when an exception is logged, and every ``extra=`` field the call passed (the access line's
``method``, ``path``, ``status``, ``duration_ms``).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

from gateway.request_id import current

# The attributes every LogRecord has; anything else on a record came from ``extra=`` and is written as a field
# (but uvicorn's ``color_message``, the message again with terminal colour codes).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName",
                                                                            "color_message"}
_CONTEXT = ("request_id", "tenant")


class RequestContextFilter(logging.Filter):
    """Copies the current request's id and tenant onto each record, in the thread that logs it (a record formatted
    later, or elsewhere, keeps them). A record given its own ``request_id`` via ``extra=`` keeps that one."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current()
        for name in _CONTEXT:
            if not hasattr(record, name):
                setattr(record, name, getattr(ctx, name) if ctx is not None else None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "tenant": getattr(record, "tenant", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def configure_logging(fmt: Literal["json", "text"] = "json", level: str = "INFO", *, stream: IO[str] | None = None
                      ) -> logging.Handler:
    """Send every logger's records (uvicorn's included: it is run with ``log_config=None``) to one handler on the
    root logger, in ``fmt``. Replaces the root logger's handlers; returns the new one."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # uvicorn's own logging config (any earlier uvicorn.run in this process without log_config=None) gives its
    # loggers handlers of their own and stops them propagating: undo that, so they reach this handler only.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    return handler
