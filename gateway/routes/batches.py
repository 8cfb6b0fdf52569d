"""``POST /v1/batches`` (a campaign feed, validated before fan-out) and ``GET /v1/batches/{id}``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.deps import PrincipalDep, RuntimeDep
from gateway.errors import NotFound
from gateway.models import Batch
from gateway.runtime import Runtime

router = APIRouter(tags=["batches"])


def batch_body(rt: Runtime, batch: Batch, request: Request) -> dict[str, Any]:
    items = rt.batches.items(batch.id)
    return {
        "id": batch.id, "status": batch.status, "partial": batch.partial, "format": batch.feed_format,
        "feed_sha256": batch.feed_sha256,
        "rows": {"total": batch.rows_total, "accepted": batch.rows_accepted, "rejected": batch.rows_rejected},
        "jobs": {status: sum(1 for _, job in items if job.status == status)
                 for status in ("queued", "running", "completed", "failed", "cancelled")},
        "items": [
            {"row": item.row, "sku": item.sku, "job_id": job.id, "status": job.status, "decision": job.decision,
             "generation_id": job.generation_id,
             "job": str(request.url_for("get_job", job_id=job.id))}
            for item, job in items
        ],
        "feed_report": json.loads(batch.feed_report_json),
        "cards_report": json.loads(batch.cards_report_json) if batch.cards_report_json else None,
        "audit_entry": batch.audit_entry_id,
        "created_at": batch.created_at.isoformat(),
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
        "links": {"self": str(request.url_for("get_batch", batch_id=batch.id))},
    }


@router.post("/v1/batches", response_model=None)
async def create_batch(
    request: Request, rt: RuntimeDep, principal: PrincipalDep,
    partial: Annotated[bool, Query(description="run the valid rows of an invalid feed")] = False,
    brand: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> JSONResponse:
    """Validate a campaign feed (``text/csv`` or ``application/json`` body) and queue one job per runnable row:
    202 and ``Location: /v1/batches/{id}``. An invalid feed (without ``partial=true``) is a 422 listing its row- and
    column-level errors, and nothing is generated."""
    principal.require("app")
    data = await request.body()
    content_type = request.headers.get("content-type", "")
    batch, _ = await run_in_threadpool(rt.batches.submit, principal, data, content_type, partial=partial,
                                       brand=brand)
    body = await run_in_threadpool(batch_body, rt, batch, request)
    return JSONResponse(body, status_code=202, headers={"Location": body["links"]["self"]})


@router.get("/v1/batches/{batch_id}", name="get_batch")
def get_batch(batch_id: str, rt: RuntimeDep, principal: PrincipalDep, request: Request) -> dict[str, Any]:
    """The batch, its rows' jobs and decisions, the feed report and (once every job has finished) the score-card
    report."""
    principal.require("app", "auditor", "reviewer")
    batch = rt.batches.get(batch_id, principal.tenant)
    if batch is None:
        raise NotFound(f"no batch {batch_id!r} for this tenant")
    if batch.status == "running" and rt.batches.finish_if_done(batch.id):
        batch = rt.batches.get(batch_id, principal.tenant)
        assert batch is not None
    return batch_body(rt, batch, request)
