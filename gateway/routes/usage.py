"""``GET /v1/usage``: a tenant's usage and cost per model and template; auditors see every tenant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from gateway.auth import validate_tenant
from gateway.deps import PrincipalDep, RuntimeDep
from gateway.errors import Forbidden
from gateway.usage import Prices, parse_range, summarize

router = APIRouter(tags=["usage"])


@router.get("/v1/usage")
async def get_usage(
    principal: PrincipalDep, rt: RuntimeDep,
    start: Annotated[str | None, Query(alias="from", description="ISO 8601; default: the start of `to`'s UTC month")]
    = None,
    end: Annotated[str | None, Query(alias="to", description="ISO 8601, exclusive; default: now")] = None,
    tenant: Annotated[str | None, Query(description="auditors: one tenant instead of all")] = None,
) -> dict[str, Any]:
    """Images, GPU/CPU-seconds, storage bytes and cost in ``[from, to)`` per tenant, model and template, with the
    prices used and ``cost_per_asset``. Apps, reviewers and policy admins see their own tenant."""
    begin, stop = parse_range(start, end, max_days=rt.settings.usage_max_range_days)
    if tenant is not None:
        validate_tenant(tenant)
    if principal.role == "auditor":
        scope = tenant
    elif tenant is None or tenant == principal.tenant:
        scope = principal.tenant
    else:
        raise Forbidden(f"role {principal.role!r} sees its own tenant's usage only; auditors see every tenant's")
    return await run_in_threadpool(summarize, rt.db, start=begin, end=stop, tenant=scope,
                                   prices=Prices.from_settings(rt.settings))
