"""Everything a running gateway holds, built once by the app's lifespan (or handed in by tests and tools)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from audit.sql_store import SqlAuditStore
from gateway.assets import LocalAssetStore
from gateway.db import create_schema, make_engine
from gateway.flow import Flow
from gateway.metrics import Metrics
from gateway.policy.base import PolicyEngine
from gateway.policy.bundle import load_bundle
from gateway.policy.embedded import EmbeddedRegoEngine
from gateway.schemas import parse_size
from gateway.settings import Settings
from generators.registry import TEMPLATE_MODEL, ModelRegistry, build_default_registry
from quality.base import Scorer


@dataclass
class Runtime:
    settings: Settings
    db: Engine
    policy: PolicyEngine
    registry: ModelRegistry
    scorers: list[Scorer]
    audit: SqlAuditStore
    assets: LocalAssetStore
    metrics: Metrics
    flow: Flow

    def close(self) -> None:
        """Stop the policy engine's threads and close database connections."""
        self.policy.close()
        self.db.dispose()

    @property
    def templates(self) -> Any:
        """The template library of the template generator (``generators.template.TemplateLibrary``)."""
        entry = self.registry.get(TEMPLATE_MODEL)
        assert entry is not None
        return entry.generator.library  # type: ignore[attr-defined]


def build_scorers(names: list[str]) -> list[Scorer]:
    from quality.nsfw import OpenNsfwScorer
    from quality.perceptual import PerceptualScorer

    known: dict[str, Any] = {"perceptual": PerceptualScorer, "nsfw": OpenNsfwScorer}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"MEDIAGATE_SCORERS names unknown scorers {unknown}; known: {sorted(known)}")
    return [known[n]() for n in names]


def build_registry(settings: Settings) -> ModelRegistry:
    assert settings.models_dir is not None
    return build_default_registry(
        models_dir=settings.models_dir, template_dirs=[settings.home / "templates", *settings.template_dirs],
        init_demo=settings.init_demo_models, device=settings.device,
        default_size=parse_size(settings.demo_default_size, "MEDIAGATE_DEMO_DEFAULT_SIZE"),
        demo_steps=settings.demo_steps,
    )


def build_runtime(
    settings: Settings, *, registry: ModelRegistry | None = None, scorers: list[Scorer] | None = None,
    metrics: Metrics | None = None,
) -> Runtime:
    """Open the database, compile the policy bundle, load models and scorers. Fails loudly on any bad part."""
    db = make_engine(settings.db_url, busy_timeout_ms=settings.db_busy_timeout_ms)
    create_schema(db)
    policy = EmbeddedRegoEngine(load_bundle(settings.policy_dir))
    registry = registry if registry is not None else build_registry(settings)
    scorers = scorers if scorers is not None else build_scorers(settings.scorers)
    assert settings.asset_dir is not None
    assets = LocalAssetStore(settings.asset_dir)
    audit = SqlAuditStore()
    metrics = metrics or Metrics()
    flow = Flow(db=db, policy=policy, registry=registry, scorers=scorers, audit=audit, assets=assets, metrics=metrics)
    return Runtime(settings, db, policy, registry, scorers, audit, assets, metrics, flow)
