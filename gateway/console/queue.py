"""What a reviewer sees of a held item, and the one way the console decides it.

A review row says little by itself: the scores, the prompt or template and its fields live in the generation's
audit entry (``generation.decided``), the policy's reasons on the review row, the images on asset rows. This module
joins them, for the reviewer's tenant only. Decisions go through :func:`gateway.reviews.decide_review` with the
flow's provenance hook, exactly as ``POST /v1/reviews/{id}/approve`` does, so a console approval is signed and
audited like any other release.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlmodel import Session, col, select

from audit.base import AuditEntry
from gateway.auth import Principal
from gateway.errors import Conflict, Gone, InvalidInput, NotFound
from gateway.models import Asset, Generation, Review
from gateway.reviews import ReviewOutcome, decide_review
from gateway.runtime import Runtime

MAX_REASON_CHARS = 2000
Action = Literal["approve", "reject"]


@dataclass(frozen=True)
class ImageView:
    asset_id: str
    index: int
    width: int
    height: int
    status: str
    card: Mapping[str, Any]  # the ScoreCard as audited: {"complete", "scores", "failed", "versions"}
    locale: str | None = None

    @property
    def url(self) -> str:
        return f"/console/assets/{self.asset_id}"


@dataclass(frozen=True)
class ItemView:
    """One review as the console shows it."""

    id: str
    generation_id: str
    status: str
    created_at: datetime
    reasons: Sequence[Mapping[str, str]]
    kind: str
    model: str
    policy_revision: str
    request: Mapping[str, Any]
    images: Sequence[ImageView] = field(default_factory=tuple)
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = None
    audit_entry: str | None = None

    @property
    def codes(self) -> list[str]:
        return [r.get("code", "") for r in self.reasons]

    def age(self, now: datetime | None = None) -> str:
        seconds = max(0, int(((now or datetime.now(UTC)) - _aware(self.created_at)).total_seconds()))
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= size:
                return f"{seconds // size} {unit} ago"
        return f"{seconds} s ago"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _views(rt: Runtime, session: Session, tenant: str, reviews: Sequence[Review]) -> list[ItemView]:
    """Join reviews with their generations, assets and generation audit entries (a few queries, not per row)."""
    if not reviews:
        return []
    ids = [r.generation_id for r in reviews]
    generations = {g.id: g for g in session.exec(select(Generation).where(col(Generation.id).in_(ids)))}
    assets: dict[str, list[Asset]] = {}
    for a in session.exec(select(Asset).where(col(Asset.generation_id).in_(ids)).order_by(col(Asset.index))):
        assets.setdefault(a.generation_id, []).append(a)
    out = []
    for review in reviews:
        generation = generations[review.generation_id]  # the foreign key guarantees it
        entry = rt.audit.get(session, generation.audit_entry_id, tenant=tenant)
        payload: Mapping[str, Any] = entry.payload if entry is not None else {}
        audited = {img.get("asset_id"): img for img in payload.get("images", [])}
        images = [ImageView(a.id, a.index, a.width, a.height, a.status, audited.get(a.id, {}).get("card", {}),
                            audited.get(a.id, {}).get("locale")) for a in assets.get(review.generation_id, [])]
        out.append(ItemView(
            id=review.id, generation_id=review.generation_id, status=review.status, created_at=review.created_at,
            reasons=json.loads(review.reasons_json), kind=generation.kind, model=generation.model,
            policy_revision=generation.policy_revision, request=payload.get("request", {}), images=images,
            decided_by=review.decided_by, decided_at=review.decided_at, note=review.decision_note,
            audit_entry=review.audit_entry_id,
        ))
    return out


def pending(rt: Runtime, principal: Principal, *, limit: int = 100, skip: frozenset[str] = frozenset()
            ) -> tuple[list[str], list[ItemView]]:
    """The tenant's pending review ids, oldest first, and full views of those not in ``skip`` (already shown)."""
    with Session(rt.db) as session:
        reviews = list(session.exec(
            select(Review).where(Review.tenant == principal.tenant, Review.status == "pending")
            .order_by(col(Review.created_at), col(Review.id)).limit(limit)
        ))
        return [r.id for r in reviews], _views(rt, session, principal.tenant, [r for r in reviews if r.id not in skip])


def item(rt: Runtime, principal: Principal, review_id: str) -> ItemView:
    """One review of the reviewer's tenant; another tenant's id is indistinguishable from a missing one."""
    with Session(rt.db) as session:
        review = session.exec(select(Review).where(Review.id == review_id, Review.tenant == principal.tenant)).first()
        if review is None:
            raise NotFound(f"no such review for your tenant: {review_id!r}")
        return _views(rt, session, principal.tenant, [review])[0]


def asset_bytes(rt: Runtime, principal: Principal, asset_id: str) -> tuple[Asset, bytes]:
    """An image of the tenant for the reviewer's eyes: held ones as the audited pixels, released ones as signed."""
    with Session(rt.db) as session:
        asset = session.exec(select(Asset).where(Asset.id == asset_id, Asset.tenant == principal.tenant)).first()
    if asset is None:
        raise NotFound(f"no such image for your tenant: {asset_id!r}")
    if asset.status == "expired":
        raise Gone(f"image {asset_id!r} expired under the tenant's retention policy")
    digest = asset.signed_sha256 if asset.status == "released" and asset.signed_sha256 else asset.sha256
    return asset, rt.assets.get(digest)


def require_reason(reason: str | None) -> str:
    note = (reason or "").strip()
    if not note:
        raise InvalidInput("reason", "required", "a reason is required to approve or reject; nothing was changed")
    if len(note) > MAX_REASON_CHARS:
        raise InvalidInput("reason", "max_length", f"the reason has {len(note)} characters; at most "
                           f"{MAX_REASON_CHARS} are allowed; nothing was changed")
    return note


def decide(rt: Runtime, principal: Principal, review_id: str, action: Action, reason: str | None) -> ReviewOutcome:
    """Approve or reject through the same call as the JSON API: one audit entry, provenance on approval.

    A second decision on the same item is refused by ``decide_review``'s conditional UPDATE before anything is
    written; the console restates that conflict with the decision already taken and its audit entry.
    """
    note = require_reason(reason)
    try:
        return decide_review(rt.committer, rt.audit, principal, review_id, approve=action == "approve", note=note,
                             on_release=rt.flow.provenance_for_approval, metrics=rt.metrics)
    except NotFound:
        raise NotFound(f"no such review for your tenant: {review_id!r}") from None
    except Conflict:
        current = item(rt, principal, review_id)
        raise Conflict(f"this review was already {current.status} (audit entry {current.audit_entry}); nothing was "
                       "changed", audit_entry=current.audit_entry, review_status=current.status) from None


def outcome_body(outcome: ReviewOutcome) -> dict[str, Any]:
    entry: AuditEntry = outcome.audit_entry
    return {"id": outcome.review.id, "status": outcome.review.status, "audit_entry": entry.id,
            "audit_entry_hash": entry.hash}
