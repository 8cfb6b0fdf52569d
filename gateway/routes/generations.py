"""``POST /v1/generations`` (the native API), ``GET /v1/generations/{id}``, ``GET /v1/models`` and
``GET /v1/templates``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from sqlmodel import Session, col, select

from gateway.deps import PrincipalDep, RuntimeDep
from gateway.errors import DependencyUnavailable, NotFound
from gateway.flow import FlowResult
from gateway.models import Asset, Generation, Review
from gateway.policy.base import PolicyEngineError
from gateway.schemas import GenerationBody, to_flow_request

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


@router.post("/v1/generations")
def create_generation(
    body: GenerationBody, principal: PrincipalDep, rt: RuntimeDep, request: Request
) -> dict[str, Any]:
    """Run the governed flow synchronously. 200 carries release, review or reject; a pre-policy denial is 403."""
    principal.require("app")
    req = to_flow_request(body, rt.settings, rt.registry, rt.templates)
    return result_body(rt.flow.run(principal, req), request)


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
