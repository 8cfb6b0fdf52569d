"""The retention lifecycle job: asset bytes expire per the tenant's policy; audit entries never do.

For each tenant the bundle gives ``data.mediagate.retention.days``. Assets older than that are marked ``expired`` in
one audited transaction (an ``assets.expired`` entry listing every asset and hash), and only after that commit are
their bytes deleted from the store, so no byte disappears without an entry saying so. A byte string still used by a
live asset (the store is content-addressed) is kept. Deletion that fails after the commit is retried by the next
run, which sweeps expired assets whose bytes are still there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlmodel import Session, col, select

from audit.background import Periodic
from audit.base import AuditStore
from audit.group_commit import GroupCommitter
from gateway.assets import LocalAssetStore
from gateway.commit import commit
from gateway.models import Asset
from gateway.policy.base import PolicyEngineError
from gateway.render_cache import RenderCacheStore

log = logging.getLogger(__name__)

RETENTION = "data.mediagate.retention.days"
LIVE = ("released", "held", "rejected")


@dataclass(frozen=True)
class Expired:
    tenant: str
    days: float
    asset_ids: tuple[str, ...]
    audit_entry: str | None  # None on a dry run
    bytes_deleted: int


class PolicyLookup(Protocol):
    @property
    def revision(self) -> str: ...

    def evaluate(self, path: str, input_doc: Mapping[str, Any]) -> Any: ...


class RetentionJob:
    def __init__(self, *, db: Any, committer: GroupCommitter, audit: AuditStore, policy: PolicyLookup,
                 assets: LocalAssetStore, interval_s: float = 0.0, cache: RenderCacheStore | None = None) -> None:
        self.db, self.committer, self.audit, self.policy, self.assets = db, committer, audit, policy, assets
        self.cache = cache  # the prompt cache's renders expire with the tenant's assets
        self._periodic = Periodic("retention", interval_s, self._tick)

    def run_once(self, *, now: datetime | None = None, dry_run: bool = False) -> list[Expired]:
        now = now or datetime.now(UTC)
        with Session(self.db) as session:
            tenants = sorted(set(session.exec(select(Asset.tenant).where(col(Asset.status).in_(LIVE))).all()))
        results = [r for t in tenants if (r := self._expire_tenant(t, now, dry_run)) is not None]
        if not dry_run:
            self._sweep()
        return results

    def _expire_tenant(self, tenant: str, now: datetime, dry_run: bool) -> Expired | None:
        try:
            days = self.policy.evaluate(RETENTION, {"tenant": tenant})
        except PolicyEngineError as exc:
            if "undefined" in str(exc):
                return None  # a bundle without a retention package keeps everything
            raise
        if days is None:
            return None
        cutoff = now - timedelta(days=float(days))
        if self.cache is not None and not dry_run:
            self.cache.drop_tenant_before(tenant, cutoff)
        with Session(self.db) as session:
            due = list(session.exec(
                select(Asset).where(Asset.tenant == tenant, col(Asset.status).in_(LIVE), Asset.created_at < cutoff)
            ).all())
        if not due or dry_run:
            return Expired(tenant, float(days), tuple(a.id for a in due), None, 0) if due else None
        ids = [a.id for a in due]

        def write(session: Session) -> str:
            rows = list(session.exec(select(Asset).where(col(Asset.id).in_(ids), col(Asset.status).in_(LIVE))).all())
            entry = self.audit.append(session, tenant=tenant, kind="assets.expired", payload={
                "retention_days": days, "cutoff": cutoff.isoformat(), "policy_revision": self.policy.revision,
                "assets": [{"asset_id": a.id, "sha256": a.sha256, "signed_sha256": a.signed_sha256,
                            "previous_status": a.status} for a in rows],
            })
            for row in rows:
                row.status = "expired"
                session.add(row)
            return entry.id

        entry_id = commit(self.committer, write, what="no asset was expired")
        return Expired(tenant, float(days), tuple(ids), entry_id, self._sweep())

    def _sweep(self) -> int:
        """Delete the bytes of expired assets that no live asset shares; returns how many files went."""
        deleted = 0
        with Session(self.db) as session:
            expired = session.exec(select(Asset.sha256, Asset.signed_sha256).where(Asset.status == "expired")).all()
            digests = {d for pair in expired for d in pair if d}
            live = session.exec(select(Asset.sha256, Asset.signed_sha256).where(col(Asset.status).in_(LIVE))).all()
            keep = {d for pair in live for d in pair if d}
        for digest in sorted(digests - keep):
            try:
                deleted += self.assets.delete(digest)
            except OSError:
                log.exception("could not delete expired asset bytes %s; the next run retries", digest)
        return deleted

    def _tick(self) -> None:
        for result in self.run_once():
            log.info("expired %d assets of tenant %s (entry %s)", len(result.asset_ids), result.tenant,
                     result.audit_entry)

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
