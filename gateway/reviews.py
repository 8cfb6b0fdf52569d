"""The human review queue: held generations wait here until a reviewer of the same tenant approves or rejects."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from audit.base import AuditEntry, AuditStore
from audit.group_commit import GroupCommitter
from gateway.auth import Principal
from gateway.collectors import age_seconds
from gateway.commit import commit
from gateway.errors import Conflict, NotFound
from gateway.metrics import Metrics
from gateway.models import Asset, Review, utcnow


@dataclass(frozen=True)
class ReviewOutcome:
    review: Review
    audit_entry: AuditEntry


def review_view(review: Review, assets: list[Asset]) -> dict[str, Any]:
    return {
        "id": review.id,
        "generation_id": review.generation_id,
        "status": review.status,
        "reasons": json.loads(review.reasons_json),
        "created_at": review.created_at.isoformat(),
        "decided_at": review.decided_at.isoformat() if review.decided_at else None,
        "decided_by": review.decided_by,
        "note": review.decision_note,
        "audit_entry": review.audit_entry_id,
        "assets": [{"id": a.id, "sha256": a.signed_sha256 or a.sha256, "pixels_sha256": a.sha256,
                    "watermark_id": a.watermark_id, "url": f"/v1/assets/{a.id}"} for a in assets],
    }


def list_reviews(db: Engine, principal: Principal, status: str, limit: int) -> list[dict[str, Any]]:
    with Session(db) as session:
        reviews = session.exec(
            select(Review).where(Review.tenant == principal.tenant, Review.status == status)
            .order_by(col(Review.created_at)).limit(limit)
        ).all()
        out = []
        for r in reviews:
            assets = session.exec(select(Asset).where(Asset.generation_id == r.generation_id)).all()
            out.append(review_view(r, list(assets)))
        return out


def get_review(db: Engine, principal: Principal, review_id: str) -> dict[str, Any]:
    with Session(db) as session:
        review = session.exec(select(Review).where(Review.id == review_id, Review.tenant == principal.tenant)).first()
        if review is None:
            raise NotFound(f"no review {review_id!r} for this tenant")
        assets = session.exec(select(Asset).where(Asset.generation_id == review.generation_id)).all()
        return review_view(review, list(assets))


def decide_review(
    committer: GroupCommitter, audit: AuditStore, principal: Principal, review_id: str, *, approve: bool, note: str,
    on_release: Callable[[Session, AuditEntry, list[Asset]], None] | None = None, metrics: Metrics | None = None,
) -> ReviewOutcome:
    """Approve or reject a pending review, audited in the same transaction as the state change.

    The conditional UPDATE claims the review: of two reviewers racing on one item exactly one sees it pending, the
    other gets 409 and nothing is written twice. ``on_release`` (provenance) runs in the same transaction after the
    approval's audit entry exists; if it fails, nothing is released. ``metrics`` observes how long the review
    waited (``mediagate_review_wait_seconds``).
    """
    status = "approved" if approve else "rejected"

    def write(session: Session) -> ReviewOutcome:
        claimed = session.execute(
            update(Review)
            .where(col(Review.id) == review_id, col(Review.tenant) == principal.tenant, col(Review.status) == "pending")
            .values(status=status, decided_at=utcnow(), decided_by=principal.key_id, decision_note=note)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            existing = session.exec(
                select(Review).where(Review.id == review_id, Review.tenant == principal.tenant)
            ).first()
            if existing is None:
                raise NotFound(f"no review {review_id!r} for this tenant")
            raise Conflict(f"review {review_id!r} was already {existing.status}", audit_entry=existing.audit_entry_id)
        review = session.exec(select(Review).where(Review.id == review_id)).one()
        assets = list(session.exec(select(Asset).where(Asset.generation_id == review.generation_id)).all())
        entry = audit.append(session, tenant=principal.tenant, kind=f"review.{status}", payload={
            "review_id": review.id,
            "generation_id": review.generation_id,
            "decision": status,
            "note": note,
            "reviewer": principal.as_dict(),
            "assets": [{"asset_id": a.id, "sha256": a.sha256, "watermark_id": a.watermark_id} for a in assets],
        })
        if approve and on_release is not None:
            on_release(session, entry, assets)
        for asset in assets:
            asset.status = "released" if approve else "rejected"
            session.add(asset)
        review.audit_entry_id = entry.id
        session.add(review)
        session.flush()
        return ReviewOutcome(review.model_copy(), entry)

    outcome = commit(committer, write, what="the review is unchanged")
    review = outcome.review
    if metrics is not None and review.decided_at is not None:
        metrics.review_wait.labels(status).observe(age_seconds(review.created_at, review.decided_at))
    return outcome
