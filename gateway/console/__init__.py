"""The reviewer web console (``/console``): the review queue in a browser, for people with a reviewer key.

Server-rendered pages (Jinja) with a little plain JavaScript, no build step. Sign-in exchanges a reviewer API key
for a server-side session (``sessions``); approvals and rejections take the same path as the JSON review API
(``queue.decide``), so provenance and the audit entry are identical. See ``docs/console.md``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gateway.console import api, pages
from gateway.console.html import STATIC_DIR


def install_console(app: FastAPI) -> None:
    """Add the console's pages, JSON endpoints and static files (``/console/static``) to the app."""
    app.include_router(pages.router)
    app.include_router(api.router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
