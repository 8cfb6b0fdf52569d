"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from gateway.deps import RuntimeDep
from gateway.errors import DependencyUnavailable
from gateway.policy.base import PolicyEngineError

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(rt: RuntimeDep) -> dict[str, object]:
    """The database answers, the policy engine evaluates and models are loaded; 503 otherwise."""
    try:
        with rt.db.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any DB failure means not ready
        raise DependencyUnavailable(f"database not reachable: {type(exc).__name__}") from exc
    try:
        rt.policy.check()
    except PolicyEngineError as exc:
        raise DependencyUnavailable(f"policy engine not ready: {exc}") from exc
    if not rt.registry.names():
        raise DependencyUnavailable("no models loaded")
    broken = rt.registry.unavailable()
    if broken:
        raise DependencyUnavailable("models not loaded: " + "; ".join(f"{n}: {why}" for n, why in broken.items()),
                                    models=broken)
    return {
        "status": "ready",
        "policy": {"engine": rt.policy.active.engine.name, "revision": rt.policy.revision,
                   "shadow": rt.policy.shadow.bundle.label if rt.policy.shadow.bundle else None},
        "models": rt.registry.names(),
        "scorers": [s.name for s in rt.scorers],
    }


@router.get("/metrics")
def metrics(rt: RuntimeDep) -> Response:
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)
