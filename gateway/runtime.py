"""Everything a running gateway holds, built once by the app's lifespan (or handed in by tests and tools)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from audit.c2pa_manifest import C2paSigner, ManifestReader
from audit.checkpointer import Checkpointer
from audit.group_commit import GroupCommitter
from audit.keys import KeyMaterialError, SigningPaths, init_signing, load_checkpoint_private_key
from audit.sql_store import SqlAuditStore
from gateway.assets import LocalAssetStore
from gateway.audit_store import RequestAuditStore
from gateway.batches import BatchService
from gateway.db import prepare_database
from gateway.errors import DependencyUnavailable
from gateway.features import ConceptSimilarity, PromptFeatures
from gateway.flow import Flow
from gateway.jobs import JobRunner
from gateway.metrics import Metrics
from gateway.policy.base import PolicyEngine
from gateway.policy.bundle import Bundle
from gateway.policy.embedded import EmbeddedRegoEngine
from gateway.policy.manager import PolicyManager
from gateway.policy.watcher import BundleWatcher
from gateway.provenance import Provenance
from gateway.quotas import Quotas
from gateway.render_cache import RenderCacheStore
from gateway.retention import RetentionJob
from gateway.schemas import feed_row_request, parse_size
from gateway.scoring import BrandDirectory, Scoring, build_brands, build_scorers
from gateway.settings import Settings
from generators.registry import (
    DEMO_MODEL,
    TEMPLATE_MODEL,
    ModelEntry,
    ModelRegistry,
    ModelSpec,
    default_specs,
    load_registry_file,
)
from generators.registry import build_registry as build_model_registry
from quality.base import Scorer

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Engine
    committer: GroupCommitter
    policy: PolicyManager
    registry: ModelRegistry
    scoring: Scoring
    audit: SqlAuditStore
    assets: LocalAssetStore
    metrics: Metrics
    flow: Flow
    checkpointer: Checkpointer
    retention: RetentionJob
    jobs: JobRunner
    batches: BatchService
    quotas: Quotas
    watcher: BundleWatcher | None = None

    def start_background(self) -> None:
        """The checkpointer, the retention job, async job workers (after requeueing jobs a dead process left
        running), and hot reload of the policy directory where this gateway owns activation."""
        self.checkpointer.start()
        self.retention.start()
        self.jobs.start()
        if self.settings.policy_watch and not self.external_policy and self.watcher is None:
            self.watcher = BundleWatcher(self.policy, self.settings.policy_dir,
                                         debounce_ms=self.settings.policy_watch_debounce_ms)
            self.watcher.start()

    def stop_background(self) -> None:
        self.jobs.stop()
        self.checkpointer.stop()
        self.retention.stop()
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    @property
    def scorers(self) -> list[Scorer]:
        return self.scoring.scorers

    @property
    def external_policy(self) -> bool:
        """An OPA server serving its own bundle decides which revision is active, not this gateway."""
        return self.settings.policy_engine == "opa" and self.settings.opa_mode == "bundle"

    def close(self) -> None:
        """Stop the watcher and the policy engines' threads, and close database connections."""
        self.stop_background()
        self.flow.provenance.close()
        self.policy.close()
        self.committer.close()
        self.db.dispose()

    @property
    def templates(self) -> Any:
        """The template library of the template generator (``generators.template.TemplateLibrary``)."""
        entry = self.registry.get(TEMPLATE_MODEL)
        assert entry is not None
        return entry.generator.library  # type: ignore[attr-defined,union-attr]


def registry_specs(settings: Settings) -> tuple[list[ModelSpec], Path | None]:
    """The registry file's entries (checked, not loaded), or the built-in ones when there is no file."""
    assert settings.models_dir is not None and settings.model_registry is not None
    if settings.model_registry.exists():
        return load_registry_file(settings.model_registry), settings.model_registry
    return default_specs(models_dir=settings.models_dir, device=settings.device,
                         default_size=parse_size(settings.demo_default_size, "MEDIAGATE_DEMO_DEFAULT_SIZE"),
                         demo_steps=settings.demo_steps), None


def build_registry(settings: Settings, metrics: Metrics | None = None) -> ModelRegistry:
    """Load every model of the registry; without a registry file, build the demo pipeline first if allowed. With
    the Celery backend, diffusers models are proxies to `mediagate worker` processes (``generators.remote``)."""
    specs, source = registry_specs(settings)
    if source is None and settings.init_demo_models:
        from generators.demo import ensure_demo_pipeline

        for spec in specs:
            if spec.name == DEMO_MODEL and spec.path is not None:
                ensure_demo_pipeline(spec.path)
    if settings.generation_backend == "celery":
        return remote_registry(settings, specs, source)
    def observe(model: str, requests: int, images: int) -> None:
        if metrics is not None:
            metrics.batch_requests.labels(model).observe(requests)

    return build_model_registry(specs, template_dirs=[settings.home / "templates", *settings.template_dirs],
                                source=source, batch_max_images=settings.batch_max_images,
                                batch_max_wait_ms=settings.batch_max_wait_ms, observe_batch=observe)


def remote_registry(settings: Settings, specs: list[ModelSpec], source: Path | None) -> ModelRegistry:
    from generators.diffusers_txt2img import directory_revision
    from generators.remote import CeleryGenerator, make_celery

    app = make_celery(settings.celery_broker_url, settings.celery_result_backend,
                      visibility_timeout_s=settings.celery_visibility_timeout_s,
                      restore_interval_s=settings.celery_restore_interval_s)
    local = build_model_registry([s for s in specs if s.backend == "template"],
                                 template_dirs=[settings.home / "templates", *settings.template_dirs], source=source)
    remote = [ModelEntry(spec, CeleryGenerator(spec.name, directory_revision(spec.path), app,
                                               timeout_s=settings.celery_task_timeout_s))
              for spec in specs if spec.backend != "template" and spec.path is not None]
    return ModelRegistry([*local, *remote])


def engine_factory(settings: Settings) -> Callable[[Bundle], PolicyEngine]:
    """The configured engine for a bundle: regorus in-process, or an OPA server the bundle is pushed to."""
    if settings.policy_engine == "embedded":
        return lambda bundle: EmbeddedRegoEngine(bundle, workers=settings.policy_workers,
                                                 timeout_s=settings.policy_timeout_s)
    from gateway.policy.opa_server import OpaServerEngine

    return lambda bundle: OpaServerEngine(
        bundle, url=settings.opa_url, mode=settings.opa_mode, timeout_s=settings.opa_timeout_s,
        retries=settings.opa_retries, token=settings.opa_token,
    )


def ensure_signing_keys(settings: Settings) -> SigningPaths:
    """The key material, created on first start where allowed (development); otherwise it must exist."""
    paths = settings.keys
    missing = [p for p in paths.files() if not p.exists()]
    if missing and settings.init_signing_keys and len(missing) == len(paths.files()):
        init_signing(paths.directory)
        log.info("created development signing keys in %s", paths.directory)
    elif missing:
        raise KeyMaterialError(
            f"signing key material missing: {', '.join(str(p) for p in missing)}; run `mediagate keys "
            "init-signing` (development) or install the organisation's keys there"
        )
    return paths


def build_matcher(settings: Settings) -> ConceptSimilarity:
    from quality.concepts import ConceptMatcher

    return ConceptMatcher(settings.concept_model_dir, device=settings.features_device)


def build_runtime(
    settings: Settings, *, registry: ModelRegistry | None = None, scorers: list[Scorer] | None = None,
    metrics: Metrics | None = None, matcher: ConceptSimilarity | None = None, brands: BrandDirectory | None = None,
) -> Runtime:
    """Open the database, activate the policy bundle, load models and scorers. Fails loudly on any bad part."""
    ensure_signing_keys(settings)
    db = prepare_database(settings.db_url, settings.database_admin_url, busy_timeout_ms=settings.db_busy_timeout_ms)
    audit = RequestAuditStore()  # stamps each entry with the id of the request that wrote it
    metrics = metrics or Metrics()
    metrics.track_queues(db)

    def observe_commit(size: int, seconds: float) -> None:
        metrics.commit_batch_size.observe(size)
        metrics.commit_seconds.observe(seconds)

    committer = GroupCommitter(db, max_batch=settings.group_commit_max_batch,
                               max_wait_ms=settings.group_commit_wait_ms,
                               regroup_ms=settings.group_commit_regroup_ms, observe=observe_commit)
    policy = PolicyManager(
        db=db, committer=committer, audit=audit, metrics=metrics, engine_factory=engine_factory(settings),
        shadow_engine_factory=lambda bundle: EmbeddedRegoEngine(bundle, workers=1, timeout_s=settings.policy_timeout_s),
        max_bundle_bytes=settings.policy_max_bundle_bytes,
    )
    try:
        policy.start(settings.policy_dir)
        registry = registry if registry is not None else build_registry(settings, metrics)
        brands = brands if brands is not None else build_brands(settings)
        scorers = scorers if scorers is not None else build_scorers(settings)
        features = PromptFeatures(matcher if matcher is not None else build_matcher(settings), metrics,
                                  cache_size=settings.features_cache_size)
    except BaseException:
        policy.close()
        committer.close()
        db.dispose()
        raise
    assert settings.asset_dir is not None
    assets = LocalAssetStore(settings.asset_dir)
    try:
        provenance = Provenance(C2paSigner.from_directory(settings.keys.directory),
                                ManifestReader(settings.keys.ca_cert.read_bytes()), assets)
    except BaseException:
        policy.close()
        committer.close()
        db.dispose()
        raise
    cache = (RenderCacheStore(db, ttl_s=settings.prompt_cache_ttl_s, max_entries=settings.prompt_cache_max_entries)
             if settings.prompt_cache else None)
    scoring = Scoring(scorers=scorers, brands=brands, policy=policy, metrics=metrics, purify=settings.score_purify)
    flow = Flow(db=db, committer=committer, policy=policy, features=features, registry=registry, scoring=scoring,
                audit=audit, assets=assets, metrics=metrics, provenance=provenance, cache=cache)
    checkpointer = Checkpointer(db, load_checkpoint_private_key(settings.keys.checkpoint_key),
                                directory=settings.checkpoint_dir, every_n=settings.checkpoint_every_n,
                                every_s=settings.checkpoint_every_s)
    retention = RetentionJob(db=db, committer=committer, audit=audit, policy=policy, assets=assets,
                             interval_s=settings.retention_interval_s, cache=cache)
    jobs = JobRunner(db, flow, workers=settings.job_workers, max_attempts=settings.job_max_attempts)

    def templates() -> Any:
        entry = registry.get(TEMPLATE_MODEL)
        if entry is None or entry.generator is None:
            raise DependencyUnavailable("the template generator is not loaded")
        return entry.generator.library  # type: ignore[attr-defined]

    quotas = Quotas(db=db, policy=policy, enabled=settings.quotas)
    batches = BatchService(
        db=db, committer=committer, audit=audit, jobs=jobs, scoring=scoring, templates=templates,
        to_request=lambda library, row: feed_row_request(row, settings, registry, library),
        max_rows=settings.feed_max_rows, quotas=quotas)
    jobs.on_finished = batches.job_finished
    return Runtime(settings, db, committer, policy, registry, scoring, audit, assets, metrics, flow, checkpointer,
                   retention, jobs, batches, quotas)
