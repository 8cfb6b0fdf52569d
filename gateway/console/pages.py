"""The console's HTML pages: sign-in and sign-out, the queue, one item, and the no-JavaScript decision forms.

Every page is rendered on the server and works without JavaScript; ``static/console.js`` adds keyboard triage,
live queue updates and decisions without a reload on top of the same endpoints.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from gateway.console import queue
from gateway.console.html import SIGN_IN_MESSAGES, ConsolePageRoute, render
from gateway.console.sessions import (
    COOKIE,
    ReviewerDep,
    SignInRequired,
    check_csrf,
    check_origin,
    clear_cookie,
    resolve,
    set_cookie,
    sign_in,
    sign_out,
)
from gateway.deps import RuntimeDep
from gateway.errors import Forbidden, Unauthorized

router = APIRouter(prefix="/console", tags=["console"], route_class=ConsolePageRoute, include_in_schema=False)

QUEUE_LIMIT = 100


@router.get("/login")
def login_form(request: Request, rt: RuntimeDep, m: str = "signin") -> Response:
    try:
        resolve(rt, request.cookies.get(COOKIE))
        return RedirectResponse("/console", status_code=303)  # already signed in
    except SignInRequired:
        pass
    return render(request, "login.html", {"message": SIGN_IN_MESSAGES.get(m, SIGN_IN_MESSAGES["signin"])})


@router.post("/login")
def login(request: Request, rt: RuntimeDep, key: Annotated[str, Form()] = "") -> Response:
    """Exchange a reviewer API key for a session cookie; a bad key or another role gets the form back, no session."""
    check_origin(request)
    try:
        token, _ = sign_in(rt, key)
    except (Unauthorized, Forbidden) as exc:
        return render(request, "login.html", {"error": exc.detail}, status_code=exc.status)
    sign_out(rt, request.cookies.get(COOKIE))  # a fresh token on every sign-in, never the old one
    response = RedirectResponse("/console", status_code=303)
    set_cookie(rt, response, token)
    return response


@router.post("/logout")
def logout(request: Request, rt: RuntimeDep, reviewer: ReviewerDep,
           csrf_token: Annotated[str | None, Form()] = None) -> Response:
    check_csrf(request, reviewer, csrf_token)
    sign_out(rt, request.cookies.get(COOKIE))
    response = RedirectResponse("/console/login?m=signedout", status_code=303)
    clear_cookie(response)
    return response


@router.get("")
def queue_page(request: Request, rt: RuntimeDep, reviewer: ReviewerDep) -> Response:
    _, items = queue.pending(rt, reviewer.principal, limit=QUEUE_LIMIT)
    return render(request, "queue.html", {"reviewer": reviewer, "csrf": reviewer.csrf_token, "items": items,
                                          "limit": QUEUE_LIMIT})


@router.get("/reviews/{review_id}")
def review_page(review_id: str, request: Request, rt: RuntimeDep, reviewer: ReviewerDep) -> Response:
    item = queue.item(rt, reviewer.principal, review_id)
    return render(request, "review.html", {"reviewer": reviewer, "csrf": reviewer.csrf_token, "item": item})


@router.post("/reviews/{review_id}/{action}")
def decide_form(
    review_id: str, action: queue.Action, request: Request, rt: RuntimeDep, reviewer: ReviewerDep,
    csrf_token: Annotated[str | None, Form()] = None, reason: Annotated[str | None, Form()] = None,
) -> Response:
    """The form fallback: CSRF, then the reason, then the decision; the item page then shows the outcome."""
    check_csrf(request, reviewer, csrf_token)
    queue.decide(rt, reviewer.principal, review_id, action, reason)
    return RedirectResponse(f"/console/reviews/{review_id}", status_code=303)
