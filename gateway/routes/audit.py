"""Read access to the audit log, tenant-scoped: ``GET /v1/audit/entries`` and ``GET /v1/audit/entries/{id}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from sqlmodel import Session

from audit.base import AuditEntry
from gateway.deps import PrincipalDep, RuntimeDep
from gateway.errors import NotFound

router = APIRouter(tags=["audit"])


def entry_body(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "seq": entry.seq, "ts": entry.ts, "tenant": entry.tenant, "kind": entry.kind,
        "payload": dict(entry.payload), "prev_hash": entry.prev_hash, "hash": entry.hash,
    }


@router.get("/v1/audit/entries")
def entries(
    principal: PrincipalDep, rt: RuntimeDep,
    after: int = Query(0, ge=0, description="return entries with seq greater than this"),
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    principal.require("app", "auditor")
    with Session(rt.db) as session:
        rows = rt.audit.list(session, tenant=principal.tenant, limit=limit, after_seq=after)
    return {"data": [entry_body(e) for e in rows]}


@router.get("/v1/audit/entries/{entry_id}")
def entry(entry_id: str, principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    principal.require("app", "auditor")
    with Session(rt.db) as session:
        found = rt.audit.get(session, entry_id, tenant=principal.tenant)
    if found is None:
        raise NotFound(f"no audit entry {entry_id!r} for this tenant")
    return entry_body(found)
