"""``GET /v1/assets/{id}``: tenant-scoped downloads. Apps get released assets only; reviewers see held ones too."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlmodel import Session, select

from gateway.deps import PrincipalDep, RuntimeDep
from gateway.errors import DependencyUnavailable, HeldForReview, NotFound, PolicyDenied
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
    if principal.role == "app" and asset.status != "released":
        raise PolicyDenied(f"asset {asset_id!r} was rejected and is not released", generation_id=asset.generation_id)
    try:
        data = rt.assets.get(asset.sha256)
    except OSError as exc:
        raise DependencyUnavailable(f"asset {asset_id!r} cannot be read from the store") from exc
    return Response(data, media_type=asset.content_type, headers={
        "ETag": f'"{asset.sha256}"', "Cache-Control": "private, max-age=31536000, immutable",
        "X-Mediagate-Status": asset.status,
    })
