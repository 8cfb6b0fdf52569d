"""Read access to the audit log: tenant-scoped entries and their inclusion proofs; the signed checkpoint and
consistency proofs, which reveal nothing about any tenant's entries, for every role."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from sqlmodel import Session

from audit.base import AuditEntry
from audit.checkpoint import Checkpoint, parse_checkpoint
from audit.proofs import consistency_document, inclusion_document
from audit.sql_store import CheckpointRow
from gateway.deps import PrincipalDep, RuntimeDep
from gateway.errors import InvalidInput, NotFound

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


def _checkpoint(rt: Any, covering: int | None = None) -> Checkpoint:
    """The checkpoint to answer with: signed now (``covering`` None), or the latest covering that many entries."""
    checkpoint = rt.checkpointer.checkpoint_now() if covering is None else rt.checkpointer.covering(covering)
    if checkpoint is None:
        raise NotFound("the audit log is empty; there is nothing to checkpoint yet")
    return checkpoint


@router.get("/v1/audit/checkpoint")
def checkpoint(principal: PrincipalDep, rt: RuntimeDep) -> dict[str, Any]:
    """The latest signed tree head (a C2SP signed note). Signed on demand if the log grew since the last one."""
    principal.require("app", "auditor", "reviewer", "policy-admin")
    return _checkpoint(rt).as_dict()


@router.get("/v1/audit/entries/{entry_id}/proof")
def proof(
    entry_id: str, principal: PrincipalDep, rt: RuntimeDep,
    tree_size: int | None = Query(None, ge=1, description="default: the latest checkpoint's size"),
) -> dict[str, Any]:
    """Inclusion proof of one of the tenant's entries in the tree of ``tree_size`` leaves (RFC 9162)."""
    principal.require("app", "auditor")
    with Session(rt.db) as session:
        found = rt.audit.get(session, entry_id, tenant=principal.tenant)
    if found is None:
        raise NotFound(f"no audit entry {entry_id!r} for this tenant")
    size = tree_size or _checkpoint(rt, covering=found.seq).size
    with Session(rt.db) as session:
        current = rt.audit.size(session)
        if not found.seq <= size <= current:
            raise InvalidInput("tree_size", "tree_size_range",
                               f"`tree_size` must be between the entry's position {found.seq} and the log's size "
                               f"{current} but is {size}")
        root = rt.audit.root(session, size)
        path = rt.audit.inclusion_proof(session, found.seq, size)
        at = session.get(CheckpointRow, size)
    signed = parse_checkpoint(at.note)[0] if at is not None else None
    return inclusion_document(found, size, root, path, signed)


@router.get("/v1/audit/consistency")
def consistency(
    principal: PrincipalDep, rt: RuntimeDep,
    from_: int = Query(..., alias="from", ge=1), to: int | None = Query(None, ge=1),
) -> dict[str, Any]:
    """Proof that the log of ``from`` entries is a prefix of the log of ``to`` entries (default: latest checkpoint)."""
    principal.require("app", "auditor", "policy-admin")
    to = to or _checkpoint(rt, covering=from_).size
    with Session(rt.db) as session:
        current = rt.audit.size(session)
        if not from_ <= to <= current:
            raise InvalidInput("from", "size_order", f"need 1 <= from <= to <= {current} (the log's size), "
                                                     f"got from={from_}, to={to}")
        path = rt.audit.consistency_proof(session, from_, to)
        roots = rt.audit.root(session, from_), rt.audit.root(session, to)
        old, new = session.get(CheckpointRow, from_), session.get(CheckpointRow, to)
    return consistency_document(
        from_, to, roots[0], roots[1], path,
        parse_checkpoint(old.note)[0] if old else None, parse_checkpoint(new.note)[0] if new else None,
    )
