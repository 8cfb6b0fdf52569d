"""Policy administration: the active bundle and its history, uploads, rollback, and shadow mode.

``PUT /v1/policies`` and ``PUT /v1/policies/shadow`` take an OPA bundle tarball (``opa build`` output or any
``.tar.gz`` of the bundle directory). A candidate must parse and pass its own tests; a refusal is 422 with the
problems and failing tests listed, and the active bundle stays.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gateway.deps import PrincipalDep, RuntimeDep
from gateway.errors import Conflict, MalformedRequest, NotFound, UnsupportedMediaType
from gateway.runtime import Runtime

router = APIRouter(tags=["policies"])

BUNDLE_TYPES = (
    "application/gzip", "application/x-gzip", "application/x-tar", "application/octet-stream",
    "application/vnd.openpolicyagent.bundle",
)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revision: str = Field(min_length=1, max_length=200, description="a revision label or a digest prefix")


def _managed_here(rt: Runtime) -> None:
    if rt.external_policy:
        raise Conflict("policies are served by the OPA server's own bundle (MEDIAGATE_OPA_MODE=bundle); "
                       "activate bundles there")


async def _bundle_body(request: Request) -> bytes:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in BUNDLE_TYPES:
        raise UnsupportedMediaType(
            f"send the bundle as a tar.gz with Content-Type one of {', '.join(BUNDLE_TYPES)}, not {media or 'none'!r}",
            field="Content-Type", rule="bundle_media_type",
        )
    blob = await request.body()
    if not blob:
        raise MalformedRequest("the request body is empty; send the bundle tarball", field="body", rule="non_empty")
    return blob


@router.get("/v1/policies")
def policies(principal: PrincipalDep, rt: RuntimeDep, limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    """The active bundle, the shadow (if any) and the history of activations and refusals, newest first."""
    principal.require("policy-admin", "auditor")
    active = rt.policy.active
    shadow = rt.policy.shadow.bundle
    return {
        "active": {
            "revision": active.bundle.label, "manifest_revision": active.bundle.revision,
            "digest": active.bundle.digest, "engine": active.engine.name, "source": active.source,
            "event": active.event_id, "concepts": sorted(active.catalogue),
        },
        "shadow": {"revision": shadow.label, "digest": shadow.digest} if shadow else None,
        "managed_by": "opa-bundle" if rt.external_policy else "gateway",
        "history": rt.policy.history(limit),
    }


@router.get("/v1/policies/bundle")
def active_bundle(principal: PrincipalDep, rt: RuntimeDep) -> Response:
    """The active bundle as a reproducible ``.tar.gz`` (what ``PUT /v1/policies`` takes), so that a team's CI can
    run the adversarial suites against exactly what the gateway enforces. ``ETag`` is the bundle's digest."""
    principal.require("policy-admin", "auditor")
    bundle = rt.policy.active.bundle
    return Response(bundle.archive(), media_type="application/gzip", headers={
        "ETag": f'"{bundle.digest}"', "X-Policy-Revision": bundle.label,
        "Content-Disposition": f'attachment; filename="bundle-{bundle.digest[:12]}.tar.gz"'})


@router.put("/v1/policies")
async def upload(
    request: Request, principal: PrincipalDep, rt: RuntimeDep,
    dry_run: bool = Query(False, description="test the bundle without activating it"),
) -> dict[str, Any]:
    """Activate an uploaded bundle once it passes its tests (or only test it, with ``dry_run``)."""
    principal.require("policy-admin")
    _managed_here(rt)
    blob = await _bundle_body(request)
    return await run_in_threadpool(rt.policy.activate_upload, blob, principal, dry_run=dry_run)


@router.post("/v1/policies/rollback")
def rollback(body: RollbackBody, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """Activate an earlier revision again (it passes the gate again first)."""
    principal.require("policy-admin")
    _managed_here(rt)
    return rt.policy.rollback(body.revision, principal)


@router.get("/v1/policies/shadow")
def shadow_report(principal: PrincipalDep, rt: RuntimeDep, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """What the shadow bundle would have decided differently on live traffic, newest first."""
    principal.require("policy-admin", "auditor")
    report = rt.policy.shadow.report(limit)
    if report is None:
        raise NotFound("no shadow bundle is running; start one with PUT /v1/policies/shadow")
    return report


@router.put("/v1/policies/shadow")
async def start_shadow(request: Request, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """Run a candidate bundle beside the active one; it sees every live decision and changes none."""
    principal.require("policy-admin")
    blob = await _bundle_body(request)
    return await run_in_threadpool(rt.policy.start_shadow, blob, principal)


@router.delete("/v1/policies/shadow")
def stop_shadow(principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    principal.require("policy-admin")
    return rt.policy.stop_shadow(principal)
