"""``GET /v1/assets/{id}``: tenant-scoped downloads. Apps get released assets only; reviewers see held ones too."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlmodel import Session, select

from gateway.deps import PrincipalDep, RuntimeDep
from gateway.errors import DependencyUnavailable, Gone, HeldForReview, NotFound, PolicyDenied
from gateway.models import Asset

router = APIRouter(tags=["assets"])


@router.get("/v1/assets/{asset_id}", name="get_asset")
def get_asset(asset_id: str, principal: PrincipalDep, rt: RuntimeDep) -> Response:
    principal.require("app", "reviewer", "auditor")
    with Session(rt.db) as session:
        asset = session.exec(select(Asset).where(Asset.id == asset_id, Asset.tenant == principal.tenant)).first()
    if asset is None:  # a foreign tenant's id is indistinguishable from a missing one
        raise NotFound(f"no asset {asset_id!r} for this tenant")
    if principal.role == "app" and asset.status == "held":
        raise HeldForReview(f"asset {asset_id!r} is held for human review", generation_id=asset.generation_id)
    if asset.status == "expired":
        raise Gone(f"asset {asset_id!r} expired under the tenant's retention policy; its audit entries remain")
    if principal.role == "app" and asset.status != "released":
        raise PolicyDenied(f"asset {asset_id!r} was rejected and is not released", generation_id=asset.generation_id)
    # Released assets are served as signed (C2PA manifest inside); held ones, to reviewers, as the audited pixels.
    digest = asset.signed_sha256 if asset.status == "released" and asset.signed_sha256 else asset.sha256
    try:
        data = rt.assets.get(digest)
    except OSError as exc:
        raise DependencyUnavailable(f"asset {asset_id!r} cannot be read from the store") from exc
    headers = {"ETag": f'"{digest}"', "Cache-Control": "private, max-age=31536000, immutable",
               "X-Mediagate-Status": asset.status}
    if asset.watermark_id:
        headers["X-Mediagate-Watermark"] = asset.watermark_id
    return Response(data, media_type=asset.content_type, headers=headers)
