"""Server-side rendering for the console: Jinja templates, friendly error pages, and the browser security headers.

Errors keep the one hierarchy (``GatewayError``): the JSON endpoints let the app's handler turn them into
problem+json, and the HTML pages turn the same errors into a page that says what happened, through the route class
below. A missing or dead session on a page is a redirect to the sign-in form, with a message picked from a fixed
list (nothing from the request is reflected into it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from gateway.console.sessions import SignInRequired, clear_cookie
from gateway.errors import GatewayError
from gateway.problems import validation_to_error

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"

# No inline script or style, no framing, no third-party anything; forms post only back to the gateway.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

SIGN_IN_MESSAGES = {
    "signin": "Sign in with a reviewer API key.",
    "expired": "Your session expired, sign in again.",
    "ended": "Your session has ended (signed out or expired), sign in again.",
    "revoked": "The key your session was made from was revoked; sign in with another reviewer key.",
    "signedout": "You are signed out.",
}


def _fmt(value: Any) -> str:
    """A score value for people: 3 significant digits, yes/no, lists joined."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value) if value else "—"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).isoformat(timespec="seconds")


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["fmt"] = _fmt
templates.env.filters["iso"] = _iso
templates.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False,
                                                              default=str)


def render(request: Request, name: str, context: Mapping[str, Any], status_code: int = 200) -> Response:
    return templates.TemplateResponse(request, name, dict(context), status_code=status_code)


def render_fragment(name: str, context: Mapping[str, Any]) -> str:
    return templates.get_template(name).render(**context)


def error_page(request: Request, exc: GatewayError) -> Response:
    return render(request, "message.html", {"title": exc.title, "detail": exc.detail, "status": exc.status},
                  status_code=exc.status)


def sign_in_redirect(reason: str) -> Response:
    response = RedirectResponse(f"/console/login?m={reason}", status_code=303)
    if reason != "signin":
        clear_cookie(response)
    return response


class ConsoleApiRoute(APIRoute):
    """JSON endpoints: errors stay problem+json (the app's handler); responses get the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_headers(request: Request) -> Response:
            response = await handler(request)
            response.headers.update(SECURITY_HEADERS)
            return response

        return with_headers


class ConsolePageRoute(APIRoute):
    """HTML pages: a missing session redirects to sign-in; any other error renders a page saying what happened."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def as_page(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired as exc:
                response = sign_in_redirect(exc.reason)
            except GatewayError as exc:
                response = error_page(request, exc)
            except RequestValidationError as exc:
                response = error_page(request, validation_to_error(exc))
            response.headers.update(SECURITY_HEADERS)
            return response

        return as_page
