"""The review queue over HTTP: ``GET /v1/reviews``, ``POST /v1/reviews/{id}/approve|reject`` (reviewer role)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from gateway.deps import PrincipalDep, RuntimeDep
from gateway.reviews import decide_review, get_review, list_reviews
from gateway.schemas import ReviewDecisionBody

router = APIRouter(tags=["reviews"])


@router.get("/v1/reviews")
def reviews(
    principal: PrincipalDep, rt: RuntimeDep,
    status: Literal["pending", "approved", "rejected"] = "pending", limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    principal.require("reviewer")
    return {"data": list_reviews(rt.db, principal, status, limit)}


@router.get("/v1/reviews/{review_id}")
def review(review_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    principal.require("reviewer")
    return get_review(rt.db, principal, review_id)


@router.post("/v1/reviews/{review_id}/{action}")
def decide(
    review_id: str, action: Literal["approve", "reject"], body: ReviewDecisionBody, principal: PrincipalDep,
    rt: RuntimeDep,
) -> dict[str, Any]:
    """Approve (release the held assets) or reject; either way one audit entry, committed with the state change."""
    principal.require("reviewer")
    outcome = decide_review(rt.committer, rt.audit, principal, review_id, approve=action == "approve",
                            note=body.reason, on_release=rt.flow.provenance_for_approval, metrics=rt.metrics)
    view = get_review(rt.db, principal, outcome.review.id)
    view["audit_entry_hash"] = outcome.audit_entry.hash
    return view
