"""``POST /v1/images/generations``: the OpenAI Images API, so ``openai.OpenAI(base_url=..., api_key=...)`` works.

The same governed flow runs. Only released images are returned; a held or rejected result is an error the SDK
raises (403, ``code`` ``held_for_review`` or the first release-policy code), since the API has no other way to
say "not now". Errors carry OpenAI's ``{"error": {...}}`` member beside the problem+json fields.
"""

from __future__ import annotations

import base64
import dataclasses
import time
from typing import Any

from fastapi import APIRouter, Request

from gateway.deps import PrincipalDep, RuntimeDep
from gateway.errors import HeldForReview, PolicyDenied
from gateway.flow import random_seed
from gateway.routes.generations import asset_url
from gateway.schemas import OpenAIImagesBody, prompt_request

router = APIRouter(tags=["openai-compatible"])


@router.post("/v1/images/generations")
def images_generations(body: OpenAIImagesBody, principal: PrincipalDep, rt: RuntimeDep, request: Request
                       ) -> dict[str, Any]:
    principal.require("app")
    req = prompt_request(body.prompt, None, body.model, body.n, body.size, random_seed(), rt.settings, rt.registry)
    req = dataclasses.replace(req, end_user=body.user)
    rt.quotas.admit(principal, images=req.n)  # 429 (the SDK's RateLimitError) before any work; nothing charged
    result = rt.flow.run(principal, req)
    governance = {
        "id": result.generation_id, "decision": result.decision, "audit_entry": result.audit_entry.id,
        "policy_revision": result.policy_revision, "release_decision_id": result.release_decision_id,
        "reasons": [{"code": r.code, "msg": r.msg} for r in result.reasons],
    }
    if result.decision == "review":
        raise HeldForReview(
            "the images are held for human review; poll GET /v1/generations/" + result.generation_id,
            codes=["held_for_review", *[r.code for r in result.reasons]], review_id=result.review_id,
            audit_entry=result.audit_entry.id, generation_id=result.generation_id,
        )
    if result.decision == "reject":
        raise PolicyDenied(
            "; ".join(r.msg for r in result.reasons) or "rejected by the release policy",
            codes=[r.code for r in result.reasons], audit_entry=result.audit_entry.id,
            generation_id=result.generation_id,
        )
    data = []
    for a in result.assets:
        if body.response_format == "b64_json":
            data.append({"b64_json": base64.b64encode(rt.assets.get(a.file_sha256)).decode(), "revised_prompt": None})
        else:
            data.append({"url": asset_url(request, a.id), "revised_prompt": None})
    return {"created": int(time.time()), "data": data, "mediagate": governance}
