"""``POST /v1/generations`` (the native API), ``GET /v1/generations/{id}``, ``GET /v1/models`` and
``GET /v1/templates``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from sqlmodel import Session, col, select

from gateway.auth import Principal
from gateway.deps import PrincipalDep, RuntimeDep
from gateway.errors import DependencyUnavailable, NotFound
from gateway.flow import FlowRequest, FlowResult
from gateway.jobs import TERMINAL
from gateway.models import Asset, Generation, Job, Review
from gateway.policy.base import PolicyEngineError
from gateway.quotas import images_of
from gateway.runtime import Runtime
from gateway.schemas import GenerationBody, preview_request, to_flow_request

router = APIRouter(tags=["generations"])


def asset_url(request: Request, asset_id: str) -> str:
    return str(request.url_for("get_asset", asset_id=asset_id))


def result_body(result: FlowResult, request: Request) -> dict[str, Any]:
    return {
        "id": result.generation_id,
        "decision": result.decision,
        "reasons": [{"code": r.code, "msg": r.msg} for r in result.reasons],
        "assets": [
            {
                "id": a.id, "sha256": a.file_sha256, "pixels_sha256": a.sha256, "watermark_id": a.watermark_id,
                "index": a.index, "seed": a.seed, "status": a.status,
                "url": asset_url(request, a.id) if a.status == "released" else None,
            }
            for a in result.assets
            if a.status != "rejected"
        ],
        "review": {"id": result.review_id, "status": "pending"} if result.review_id else None,
        "audit_entry": result.audit_entry.id,
        "audit_entry_hash": result.audit_entry.hash,
        "policy": {"revision": result.policy_revision, "pre_decision_id": result.pre_decision_id,
                   "release_decision_id": result.release_decision_id},
        "model": {"revision": result.model_revision},
    }


@router.post("/v1/generations", response_model=None)
def create_generation(
    body: GenerationBody, principal: PrincipalDep, rt: RuntimeDep, request: Request
) -> dict[str, Any] | JSONResponse:
    """Run the governed flow synchronously (200 carries release, review or reject; a pre-policy denial is 403), or,
    with ``Prefer: respond-async`` or ``"async": true``, accept it as a job: 202 and ``Location: /v1/jobs/{id}``."""
    principal.require("app")
    req = to_flow_request(body, rt.settings, rt.registry, rt.templates)
    if body.preview:
        return preview_then_final(rt, principal, req, request)
    if body.run_async or "respond-async" in request.headers.get("prefer", "").lower():
        # quotas (429) are charged in the transaction that queues the job: refused, nothing is queued or charged
        job = rt.quotas.run_admitted(principal, lambda s: rt.jobs.add(s, principal, req), images=images_of(req), jobs=1)
        rt.jobs.wake()
        location = str(request.url_for("get_job", job_id=job.id))
        return JSONResponse(job_body(job, request), status_code=202,
                            headers={"Location": location, "Preference-Applied": "respond-async"})
    rt.quotas.admit(principal, images=images_of(req))  # 429 before any work, and then nothing is charged
    return result_body(rt.flow.run(principal, req), request)


def preview_then_final(rt: Runtime, principal: Principal, final: FlowRequest, request: Request) -> JSONResponse:
    """The hybrid pattern: a preview-tier render through the whole governed flow now, and the final render as a job
    whose request (so its audit entry) names the preview's generation and audit entry. A preview denied by the
    pre-policy is a 403 and no job is made."""
    first = preview_request(final, rt.settings, rt.registry)
    rt.quotas.admit(principal, images=images_of(first) + images_of(final), jobs=1)  # both tiers, before either runs
    preview = rt.flow.run(principal, first)
    later = dataclasses.replace(final, preview={
        "generation_id": preview.generation_id, "audit_entry": preview.audit_entry.id})
    job = rt.quotas.run_admitted(principal, lambda s: rt.jobs.add(s, principal, later), requests=0, jobs=1)
    rt.jobs.wake()
    body = {**result_body(preview, request), "tier": "preview", "final": job_body(job, request)}
    return JSONResponse(body, status_code=200, headers={"Location": str(request.url_for("get_job", job_id=job.id))})


def job_body(job: Job, request: Request) -> dict[str, Any]:
    return {
        "id": job.id, "status": job.status, "attempts": job.attempts, "decision": job.decision,
        "generation_id": job.generation_id, "error": json.loads(job.error_json) if job.error_json else None,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "links": {"self": str(request.url_for("get_job", job_id=job.id)),
                  "events": str(request.url_for("job_events", job_id=job.id)),
                  "cancel": str(request.url_for("cancel_job", job_id=job.id)),
                  "generation": str(request.url_for("get_generation", generation_id=job.generation_id))
                  if job.generation_id else None},
    }


@router.get("/v1/jobs/{job_id}")
def get_job(job_id: str, principal: PrincipalDep, rt: RuntimeDep, request: Request) -> dict[str, Any]:
    """A job's status; once completed, its decision and generation (``GET /v1/generations/{id}``)."""
    principal.require("app", "auditor", "reviewer")
    job = rt.jobs.get(job_id, principal.tenant)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job_body(job, request)


@router.post("/v1/jobs/{job_id}/cancel")
def cancel_job(job_id: str, principal: PrincipalDep, rt: RuntimeDep, request: Request) -> dict[str, Any]:
    """Cancel a queued job at once, or ask a running one to stop before its audit commit."""
    principal.require("app")
    job = rt.jobs.cancel(job_id, principal.tenant)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job_body(job, request)


@router.get("/v1/jobs/{job_id}/events")
async def job_events(job_id: str, principal: PrincipalDep, rt: RuntimeDep, request: Request) -> StreamingResponse:
    """Server-Sent Events: queued, started, stage, step (i of N), then completed, failed or cancelled. Each event's
    ``id`` is its sequence number: a client that reconnects with ``Last-Event-ID`` gets only what it missed."""
    principal.require("app", "auditor", "reviewer")
    if await run_in_threadpool(rt.jobs.get, job_id, principal.tenant) is None:
        raise NotFound(f"no job {job_id!r}")
    last = request.headers.get("last-event-id", "0")
    after = int(last) if last.isdigit() else 0

    async def stream() -> AsyncIterator[str]:
        nonlocal after
        while True:
            events = await run_in_threadpool(rt.jobs.events, job_id, after)
            for event in events:
                assert event.id is not None
                after = event.id
                yield f"id: {event.id}\nevent: {event.type}\ndata: {event.data_json}\n\n"
                if event.type in TERMINAL:
                    return
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.2)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("/v1/generations/{generation_id}")
def get_generation(generation_id: str, principal: PrincipalDep, rt: RuntimeDep, request: Request) -> dict[str, Any]:
    principal.require("app", "auditor", "reviewer")
    with Session(rt.db) as session:
        gen = session.exec(
            select(Generation).where(Generation.id == generation_id, Generation.tenant == principal.tenant)
        ).first()
        if gen is None:
            raise NotFound(f"no generation {generation_id!r} for this tenant")
        assets = session.exec(select(Asset).where(Asset.generation_id == gen.id).order_by(col(Asset.index))).all()
        review = session.exec(select(Review).where(Review.generation_id == gen.id)).first()
    return {
        "id": gen.id,
        "decision": gen.decision,
        "reasons": [{"code": r["code"], "msg": r["msg"]} for r in json.loads(gen.reasons_json)],
        "model": gen.model,
        "assets": [
            {"id": a.id, "sha256": a.signed_sha256 or a.sha256, "pixels_sha256": a.sha256,
             "watermark_id": a.watermark_id, "index": a.index, "seed": a.seed, "status": a.status,
             "url": asset_url(request, a.id) if a.status == "released" else None}
            for a in assets
        ],
        "review": {"id": review.id, "status": review.status} if review else None,
        "audit_entry": gen.audit_entry_id,
        "policy": {"revision": gen.policy_revision},
        "created_at": gen.created_at.isoformat(),
    }


@router.get("/v1/models")
def list_models(principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """The registry's models the caller's tenant may use (``data.mediagate.pre.allowed_models``): backend, tier,
    revision (the weight files' hash) and limits."""
    principal.require("app", "auditor", "reviewer")
    entries = list(rt.registry)
    try:
        allowed = set(rt.policy.evaluate(
            "data.mediagate.pre.allowed_models",
            {"principal": principal.as_dict(), "models": [e.name for e in entries]},
        ))
    except PolicyEngineError as exc:
        raise DependencyUnavailable(f"the model policy gave no decision: {exc}") from exc
    return {"data": [e.describe() for e in sorted(entries, key=lambda e: e.name) if e.name in allowed]}


@router.get("/v1/templates")
def list_templates(principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """Templates the caller's tenant may use, as decided by ``data.mediagate.pre.allowed_templates``."""
    templates = rt.templates.list()
    try:
        allowed = set(rt.policy.evaluate(
            "data.mediagate.pre.allowed_templates",
            {"principal": principal.as_dict(), "templates": [t.id for t in templates]},
        ))
    except PolicyEngineError as exc:
        raise DependencyUnavailable(f"the template policy gave no decision: {exc}") from exc
    return {"data": [t.describe() for t in templates if t.id in allowed]}
