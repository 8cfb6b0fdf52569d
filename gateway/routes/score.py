"""``POST /v1/score``: score images a tenant already has, through the same scorers and release policy as the flow.

Useful for auditing existing assets: nothing is generated and no image is stored, but the verdict is a decision like
any other, so it is written to the audit log (with each image's SHA-256, its score card and the release decision)
before it is answered. Bad uploads are refused before anything runs, and change nothing.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from audit.base import AuditEntry
from gateway.auth import Principal, authenticate
from gateway.commit import commit
from gateway.deps import RuntimeDep
from gateway.errors import InvalidInput, PayloadTooLarge
from gateway.policy.manager import new_id
from gateway.runtime import Runtime
from gateway.uploads import open_image, scorable
from quality.base import ImageContext

router = APIRouter(tags=["scoring"])


def score_uploads(rt: Runtime, principal: Principal, uploads: list[tuple[str, bytes]], *, prompt: str | None,
                  brand: str | None, locale: str | None, expected_text: list[str]) -> dict[str, Any]:
    settings = rt.settings
    if len(uploads) > settings.score_max_images:
        raise PayloadTooLarge(f"{len(uploads)} images in one request; the limit is {settings.score_max_images}",
                              field="image", rule="max_images", limit=settings.score_max_images)
    if prompt is not None and not (1 <= len(prompt) <= settings.max_prompt_chars):
        raise InvalidInput("prompt", "length", f"`prompt` must have 1 to {settings.max_prompt_chars} characters")
    if locale is not None and not (2 <= len(locale) <= 35):
        raise InvalidInput("locale", "length", "`locale` must be a BCP 47 tag of 2 to 35 characters")
    if any(not text.strip() or len(text) > 1000 for text in expected_text):
        raise InvalidInput("expected_text", "length", "each `expected_text` must have 1 to 1000 characters")
    images = []
    for i, (_, data) in enumerate(uploads):
        field = f"image[{i}]"
        images.append(scorable(open_image(data, field=field, max_pixels=settings.score_max_pixels), field=field))
    brand_kit = rt.scoring.brand_kit(principal.tenant, brand)  # an unknown brand is the client's error (422)
    rt.quotas.admit(principal)  # a scoring request counts against the request rate limits (429)
    score_id = new_id("scr")
    request = {"kind": "upload", "prompt": prompt, "brand": brand, "locale": locale,
               "expected_text": expected_text, "n": len(images)}
    context = rt.scoring.context(
        principal, kind="upload", prompt=prompt, brand=brand_kit,
        images=[ImageContext(locale, tuple(expected_text)) for _ in images])
    cards = rt.scoring.score(images, context)
    release_input = {
        "principal": principal.as_dict(), "request": request, "obligations": {},
        "images": [{"index": i, "card": c.as_dict()} for i, c in enumerate(cards)],
    }
    release = rt.policy.decide("release", release_input, ref=score_id, tenant=principal.tenant)
    described = [
        {"index": i, "filename": name, "sha256": hashlib.sha256(data).hexdigest(), "width": im.width,
         "height": im.height, "card": card.as_dict()}
        for i, ((name, data), im, card) in enumerate(zip(uploads, images, cards, strict=True))
    ]
    payload = {"score_id": score_id, "principal": principal.as_dict(), "request": request, "images": described,
               "release": release.as_dict(), "decision": release.result,
               "brand_kit": {"brand": brand, "revision": brand_kit.revision} if brand_kit is not None else None}

    def write(session: Session) -> AuditEntry:
        return rt.audit.append(session, tenant=principal.tenant, kind="score.decided", payload=payload)

    entry = commit(rt.committer, write)  # no committed entry, no verdict: 503 and nothing kept
    return {
        "id": score_id, "decision": release.result,
        "reasons": [r.as_dict() for r in release.reasons], "codes": release.codes,
        "images": described, "policy_revision": release.revision, "audit_entry": entry.id,
    }


@router.post("/v1/score")
async def score(
    request: Request, rt: RuntimeDep,
    image: Annotated[list[UploadFile], File(description="one or more images (PNG, JPEG, WebP...)")],
    prompt: Annotated[str | None, Form()] = None,
    brand: Annotated[str | None, Form()] = None,
    locale: Annotated[str | None, Form()] = None,
    expected_text: Annotated[list[str] | None, Form()] = None,
) -> dict[str, Any]:
    """Score uploaded images (multipart field ``image``, repeatable) and decide as the release policy would."""
    principal = await run_in_threadpool(authenticate, rt.db, request.headers.get("authorization"))
    principal.require("app", "auditor")
    uploads = [(upload.filename or "", await upload.read()) for upload in image]
    return await run_in_threadpool(score_uploads, rt, principal, uploads, prompt=prompt, brand=brand, locale=locale,
                                   expected_text=expected_text or [])

