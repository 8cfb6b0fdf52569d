"""``POST /v1/provenance/verify``: from an image back to its audit entry, with a proof a third party can check.

Three independent pieces of evidence, any of which can find the record: the file is an exact copy of a released
file; its C2PA manifest is signed by this gateway's CA and names an audit entry; its invisible watermark decodes to
a mark id on record. The manifest and the watermark must agree when both are present. A record of another tenant is
reported exactly like no record (never another tenant's data), and so is one that was never released.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, File, Request, UploadFile
from sqlmodel import Session, col, or_, select
from starlette.concurrency import run_in_threadpool

from audit.c2pa_manifest import ManifestError, ManifestReport
from audit.proofs import entry_document, inclusion_document
from gateway.auth import Principal, authenticate
from gateway.deps import RuntimeDep
from gateway.models import Asset, Generation, Review
from gateway.provenance import decode_mark
from gateway.runtime import Runtime
from gateway.uploads import open_image

router = APIRouter(tags=["provenance"])

MIME = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def _principal(request: Request, rt: Runtime) -> Principal | None:
    """An auditor, or nobody when verification is public (MEDIAGATE_PROVENANCE_VERIFY_PUBLIC)."""
    header = request.headers.get("authorization")
    if header is None and rt.settings.provenance_verify_public:
        return None
    principal = authenticate(rt.db, header)
    principal.require("auditor")
    return principal


def verify_image(rt: Runtime, principal: Principal | None, data: bytes) -> dict[str, Any]:
    image = open_image(data, field="image", max_pixels=rt.settings.provenance_max_pixels)
    mime = next((m for magic, m in MIME.items() if data.startswith(magic)), None)
    reasons: list[str] = []
    c2pa: dict[str, Any] = {"present": False}
    report: ManifestReport | None = None
    if mime is not None:
        try:
            report = rt.flow.provenance.reader.read(data, mime)
            c2pa = {"present": report.present, "valid": report.valid, "trusted": report.trusted,
                    "errors": list(report.errors), "signer": report.signer_subject,
                    "claims": report.claims.to_assertion() if report.claims else None}
        except ManifestError as exc:
            c2pa = {"present": True, "valid": False, "trusted": False, "errors": [str(exc)]}
    digest = hashlib.sha256(data).hexdigest()
    with Session(rt.db) as session:
        sizes = [(int(w), int(h)) for w, h in session.exec(select(Asset.width, Asset.height).distinct()).all()]
        mark = decode_mark(image, sizes)
        mark_hex = mark.mark_id.hex() if mark and mark.mark_id else None

        candidates: dict[str, Asset] = {}
        exact = session.exec(select(Asset).where(or_(col(Asset.signed_sha256) == digest, Asset.sha256 == digest)))
        for a in exact.all():
            candidates[a.id] = a
        if mark_hex:
            for a in session.exec(select(Asset).where(Asset.watermark_id == mark_hex)).all():
                candidates[a.id] = a
        claims = report.claims if report and report.trusted else None
        if report is not None and report.present and not report.trusted:
            reasons.append("the C2PA manifest is not signed by this gateway's certificate authority"
                           if report.valid else "the C2PA manifest does not validate (the file was altered)")
        if claims is not None and claims.watermark_id not in ("none", mark_hex) and mark_hex is not None:
            reasons.append("the C2PA manifest and the watermark name different images")
        if claims is not None and claims.watermark_id != "none":
            for a in session.exec(select(Asset).where(Asset.watermark_id == claims.watermark_id)).all():
                candidates[a.id] = a
        visible = [a for a in candidates.values() if principal is None or a.tenant == principal.tenant]
        released = [a for a in visible if a.status in ("released", "expired")]
        if len({a.id for a in released}) > 1:
            reasons.append("the evidence points at more than one asset")
        found = released[0] if len(released) == 1 else None
        body: dict[str, Any] = {
            "exact_copy": found is not None and digest in (found.signed_sha256, found.sha256),
            "c2pa": c2pa,
            "watermark": {"found": mark_hex is not None, "id": mark_hex,
                          "confidence": round(mark.confidence, 3) if mark else None},
        }
        if found is None:
            reasons.append("no released asset on record matches this image" +
                           ("" if principal is None else " for this tenant"))
            return {"verdict": "not_verified", "reasons": reasons, **body}
        asset = found
        release_entry_id = _release_entry(session, asset)
        entry = rt.audit.get(session, release_entry_id)
        assert entry is not None  # rows are only ever written with their entry
    if claims is not None and claims.audit_entry_id != entry.id:
        reasons.append("the C2PA manifest names another audit entry than the asset's release")
    checkpoint = rt.checkpointer.covering(entry.seq)
    assert checkpoint is not None  # the log holds at least this entry
    with Session(rt.db) as session:
        proof = inclusion_document(entry, checkpoint.size, checkpoint.root,
                                   rt.audit.inclusion_proof(session, entry.seq, checkpoint.size), checkpoint)
    if principal is None:  # public verification: the hashes and the proof, not the tenant's data
        proof["entry"] = {"id": entry.id, "seq": entry.seq, "hash": entry.hash}
    return {
        "verdict": "not_verified" if reasons else "verified", "reasons": reasons, **body,
        "asset": {"id": asset.id, "status": asset.status, "watermark_id": asset.watermark_id},
        "audit_entry": entry_document(entry) if principal is not None else {"id": entry.id, "hash": entry.hash},
        "proof": proof,
    }


def _release_entry(session: Session, asset: Asset) -> str:
    """The entry that released the asset: its generation's, or the approving review's."""
    review = session.exec(select(Review).where(Review.generation_id == asset.generation_id)).first()
    if review is not None and review.status == "approved" and review.audit_entry_id:
        return review.audit_entry_id
    generation = session.get(Generation, asset.generation_id)
    assert generation is not None
    return generation.audit_entry_id


@router.post("/v1/provenance/verify")
async def verify(request: Request, rt: RuntimeDep, image: Annotated[UploadFile, File()]) -> dict[str, Any]:
    """Verify an image: C2PA manifest, watermark, the audit entry that released it and its inclusion proof."""
    principal = await run_in_threadpool(_principal, request, rt)
    data = await image.read()
    return await run_in_threadpool(verify_image, rt, principal, data)
