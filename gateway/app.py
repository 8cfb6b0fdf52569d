"""``create_app(settings)``: the FastAPI application factory. Nothing heavy happens at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.console import install_console
from gateway.metrics import Metrics
from gateway.middleware import BodyLimitMiddleware, MetricsMiddleware
from gateway.problems import install_problem_handlers
from gateway.request_id import RequestIdMiddleware
from gateway.routes import (
    assets,
    audit,
    batches,
    generations,
    health,
    openai_images,
    policies,
    provenance,
    reviews,
    score,
    usage,
)
from gateway.runtime import Runtime, build_runtime
from gateway.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the app; the lifespan loads the bundle, database and models.

    With ``runtime`` given (tests, benchmarks) the lifespan reuses it instead of loading models again.
    """
    settings = settings or (runtime.settings if runtime else Settings())
    metrics = runtime.metrics if runtime else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime if runtime is not None else build_runtime(settings, metrics=metrics)
        app.state.runtime = rt
        rt.start_background()
        log.info("mediagate ready: policy %s, models %s", rt.policy.revision, rt.registry.names())
        try:
            yield
        finally:
            rt.stop_background()
            if runtime is None:
                rt.close()

    app = FastAPI(
        title="mediagate", version="0.1.0", lifespan=lifespan,
        description="Governance-first quality and safety gateway for AI media generation.",
    )
    install_problem_handlers(app)
    for module in (health, generations, openai_images, assets, reviews, audit, policies, provenance, score,
                   batches, usage):
        app.include_router(module.router)
    install_console(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes,
                       overrides={"/v1/policies": settings.policy_max_bundle_bytes,
                                  "/v1/provenance/verify": settings.provenance_max_upload_bytes,
                                  "/v1/score": settings.score_max_upload_bytes,
                                  "/v1/batches": settings.feed_max_bytes})
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)  # outermost: every response and log line of a request has its id
    return app
