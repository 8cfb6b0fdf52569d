"""The console's session-authenticated JSON endpoints and its image route.

``GET /console/api/queue`` is what the page polls for live updates: the pending ids, and the rendered card of each
item the page does not show yet (so items are rendered, and escaped, in one place: the Jinja templates).
Decisions need the session's CSRF token in ``X-CSRF-Token``. Images are authorised by the session and its
tenant, never by a bearer key, so the browser never holds an API key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict

from gateway.console import queue
from gateway.console.html import ConsoleApiRoute, render_fragment
from gateway.console.sessions import CSRF_HEADER, ReviewerDep, check_csrf
from gateway.deps import RuntimeDep
from gateway.errors import DependencyUnavailable

router = APIRouter(prefix="/console", tags=["console"], route_class=ConsoleApiRoute, include_in_schema=False)

MAX_KNOWN = 500


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = None  # checked by queue.require_reason, after the CSRF check


@router.get("/api/queue")
def queue_state(reviewer: ReviewerDep, rt: RuntimeDep, known: str = "") -> dict[str, Any]:
    """Pending ids oldest first, plus ``items`` with the HTML card of every pending item not in ``known``."""
    shown = frozenset(k for k in known.split(",")[:MAX_KNOWN] if k)
    ids, items = queue.pending(rt, reviewer.principal, skip=shown)
    return {
        "ids": ids,
        "count": len(ids),
        "items": [{"id": it.id, "html": render_fragment("_item.html", {"item": it, "csrf": reviewer.csrf_token})}
                  for it in items],
    }


@router.post("/api/reviews/{review_id}/{action}")
def decide(
    review_id: str, action: queue.Action, body: DecisionBody, request: Request, reviewer: ReviewerDep,
    rt: RuntimeDep, csrf: Annotated[str | None, Header(alias=CSRF_HEADER)] = None,
) -> dict[str, Any]:
    """Approve or reject: CSRF first, then the reason, then the same decision path as ``/v1/reviews``."""
    check_csrf(request, reviewer, csrf)
    outcome = queue.decide(rt, reviewer.principal, review_id, action, body.reason)
    return queue.outcome_body(outcome)


@router.get("/assets/{asset_id}")
def asset(asset_id: str, reviewer: ReviewerDep, rt: RuntimeDep) -> Response:
    try:
        found, data = queue.asset_bytes(rt, reviewer.principal, asset_id)
    except OSError as exc:
        raise DependencyUnavailable(f"image {asset_id!r} cannot be read from the store") from exc
    return Response(data, media_type=found.content_type, headers={"X-Mediagate-Status": found.status})
