"""Campaign feeds (``POST /v1/batches``): validated before anything is generated, then one async job per row.

A feed is parsed (``quality.feeds``) and checked with great-expectations (``quality.feed_suite``: one suite per
template, plus the template's own render checks). An invalid feed generates nothing and is answered with its row-
and column-level errors, unless the caller asked for ``partial``: then only the valid rows run. Accepting a batch is
one transaction: the batch, its rows, their jobs and the ``batch.accepted`` audit entry commit together or not at
all. When the last row's job has finished, a second suite (``quality.card_suite``) checks the batch's score cards and
its report is stored with the batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from audit.base import AuditEntry, AuditStore
from audit.group_commit import GroupCommitter
from gateway.auth import Principal
from gateway.commit import commit
from gateway.errors import GatewayError, InvalidInput
from gateway.flow import FlowRequest
from gateway.jobs import TERMINAL, JobRunner
from gateway.models import Batch, BatchItem, Generation, Job, utcnow
from gateway.policy.manager import new_id
from gateway.quotas import Quotas, images_of
from gateway.scoring import Scoring

log = logging.getLogger(__name__)


class FeedRejected(InvalidInput):
    """The feed breaks its templates' rules and ``partial`` was not asked for: nothing is generated."""

    slug = "invalid-feed"
    title = "Invalid campaign feed"


class BatchService:
    def __init__(self, *, db: Engine, committer: GroupCommitter, audit: AuditStore, jobs: JobRunner,
                 scoring: Scoring, templates: Callable[[], Any],
                 to_request: Callable[[Any, dict[str, Any]], FlowRequest], max_rows: int,
                 quotas: Quotas | None = None) -> None:
        self.db = db
        self.committer = committer
        self.audit = audit
        self.jobs = jobs
        self.scoring = scoring
        self.templates = templates
        self.to_request = to_request  # (template library, row) -> FlowRequest, through the edge checks
        self.max_rows = max_rows
        self.quotas = quotas  # the batch is charged (request, images, jobs) in its own transaction

    def submit(self, principal: Principal, data: bytes, content_type: str, *, partial: bool,
               brand: str | None) -> tuple[Batch, dict[str, Any]]:
        """Validate the feed and queue its runnable rows; refuse the whole feed (422) when nothing may run."""
        from quality.feed_suite import validate_feed
        from quality.feeds import parse_feed

        self.scoring.brand_kit(principal.tenant, brand)  # an unknown brand refuses the feed before validation
        feed = parse_feed(data, content_type, max_rows=self.max_rows)
        library = self.templates()
        report = validate_feed(feed, library, max_rows=self.max_rows)
        runnable = set(report.runnable(partial))
        requests: list[tuple[int, str, FlowRequest]] = []
        for row in feed.rows:
            if row.number not in runnable:
                continue
            try:  # the same edge checks as POST /v1/generations: a row the suite let through may still break one
                req = self.to_request(library, {"template": row.template_id, "fields": row.fields,
                                                "locale": row.values.get("locale"), "brand": brand})
            except GatewayError as exc:
                raise FeedRejected("feed", "row_request", f"row {row.number} cannot be rendered: {exc.detail}",
                                   row=row.number, report=report.as_dict()) from exc
            requests.append((row.number, str(row.values.get("sku") or ""), req))
        summary = report.as_dict()
        if not requests:
            first = summary["errors"][0]["message"] if summary["errors"] else "the feed has no valid rows"
            raise FeedRejected(
                "feed", "feed_invalid",
                f"the feed has {summary['invalid_rows']} invalid row(s) and {summary['error_count']} error(s); "
                f"nothing was generated (first: {first})"
                + ("" if partial else "; send `partial=true` to run only the valid rows"),
                errors=summary["errors"], report=summary)
        batch_id = new_id("bat")
        digest = hashlib.sha256(data).hexdigest()

        def write(session: Session) -> AuditEntry:
            if self.quotas is not None:  # a refusal (429) rolls back this writer alone: no batch, no jobs, no charge
                self.quotas.charge(session, principal, images=sum(images_of(req) for _, _, req in requests),
                                   jobs=len(requests))
            entry = self.audit.append(session, tenant=principal.tenant, kind="batch.accepted", payload={
                "batch_id": batch_id, "principal": principal.as_dict(), "feed_sha256": digest,
                "format": feed.format, "partial": partial, "brand": brand, "rows": len(feed.rows),
                "accepted": [{"row": n, "sku": sku} for n, sku, _ in requests],
                "rejected_rows": sorted({e["row"] for e in summary["errors"] if e.get("row") is not None}),
                "error_count": summary["error_count"],
            })
            session.add(Batch(id=batch_id, tenant=principal.tenant, key_id=principal.key_id, partial=partial,
                              feed_sha256=digest, feed_format=feed.format, rows_total=len(feed.rows),
                              rows_accepted=len(requests), rows_rejected=len(feed.rows) - len(requests),
                              feed_report_json=json.dumps(summary), audit_entry_id=entry.id))
            session.flush()
            for number, sku, req in requests:
                job = self.jobs.add(session, principal, req)
                session.flush()
                session.add(BatchItem(batch_id=batch_id, row=number, sku=sku, job_id=job.id))
            return entry

        commit(self.committer, write)  # the batch, its jobs and its audit entry, or nothing
        self.jobs.wake()
        batch = self.get(batch_id, principal.tenant)
        assert batch is not None
        return batch, summary

    def get(self, batch_id: str, tenant: str) -> Batch | None:
        with Session(self.db) as session:
            return session.exec(select(Batch).where(Batch.id == batch_id, Batch.tenant == tenant)).first()

    def items(self, batch_id: str) -> list[tuple[BatchItem, Job]]:
        with Session(self.db) as session:
            rows = session.exec(select(BatchItem, Job).join(Job, col(BatchItem.job_id) == Job.id)
                                .where(BatchItem.batch_id == batch_id).order_by(col(BatchItem.row))).all()
            return [(item, job) for item, job in rows]

    def job_finished(self, job_id: str) -> None:
        """The job runner's hook: when a batch's last job has finished, check its score cards and complete it."""
        with Session(self.db) as session:
            item = session.exec(select(BatchItem).where(BatchItem.job_id == job_id)).first()
        if item is not None:
            self.finish_if_done(item.batch_id)

    def finish_if_done(self, batch_id: str) -> bool:
        with Session(self.db) as session:
            batch = session.get(Batch, batch_id)
            if batch is None or batch.status != "running":
                return False
            jobs = session.exec(select(Job).join(BatchItem, col(BatchItem.job_id) == Job.id)
                                .where(BatchItem.batch_id == batch_id)).all()
            if any(job.status not in TERMINAL for job in jobs):
                return False
            cards = self._cards(session, [j.generation_id for j in jobs if j.generation_id])
        from quality.card_suite import validate_cards

        report = validate_cards(cards) if cards else {"success": True, "images": 0, "note": "no images were scored"}
        with Session(self.db) as session:  # conditional: two finishing workers store one report
            session.execute(text("UPDATE batches SET status = 'completed', cards_report_json = :report, "
                                 "finished_at = :now WHERE id = :id AND status = 'running'"),
                            {"report": json.dumps(report), "now": utcnow(), "id": batch_id})
            session.commit()
        return True

    def _cards(self, session: Session, generation_ids: list[str]) -> list[dict[str, Any]]:
        """Every scored image's card, from the audit entries of the batch's generations."""
        cards: list[dict[str, Any]] = []
        for generation_id in generation_ids:
            generation = session.get(Generation, generation_id)
            if generation is None:
                continue
            entry = self.audit.get(session, generation.audit_entry_id)
            if entry is not None:
                cards.extend(image["card"] for image in entry.payload.get("images", []))
        return cards
