"""The gateway's own tables (the audit log lives in ``audit.sql_store``). Only hashes of API keys are stored."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

ROLES = ("app", "reviewer", "policy-admin", "auditor")


def utcnow() -> datetime:
    return datetime.now(UTC)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    role: str
    key_hash: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class ConsoleSession(SQLModel, table=True):
    """A reviewer's signed-in web console session (``gateway.console``). Only the SHA-256 of the cookie's random
    token is stored; the row dies with its expiry, its sign-out, or its API key's revocation."""

    __tablename__ = "console_sessions"

    token_hash: str = Field(primary_key=True)
    key_id: str = Field(foreign_key="api_keys.id", index=True)
    tenant: str = Field(index=True)
    csrf_token: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


class Generation(SQLModel, table=True):
    """One request through the flow and where it ended. Written in the same transaction as its audit entry."""

    __tablename__ = "generations"

    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    key_id: str
    kind: str
    model: str
    model_revision: str | None = None
    template: str | None = Field(default=None, index=True)
    decision: str
    reasons_json: str = "[]"
    policy_revision: str
    audit_entry_id: str
    created_at: datetime = Field(default_factory=utcnow)


class Asset(SQLModel, table=True):
    """A stored image. Only ``released`` assets are downloadable by apps; ``held`` ones wait for a reviewer."""

    __tablename__ = "assets"

    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    generation_id: str = Field(foreign_key="generations.id", index=True)
    index: int
    sha256: str
    content_type: str = "image/png"
    size_bytes: int
    width: int
    height: int
    seed: int
    watermark_id: str | None = Field(default=None, unique=True)  # hex payload of the invisible watermark
    signed_sha256: str | None = None  # the released file, with its C2PA manifest (None until released)
    status: str  # released | held | rejected | expired
    created_at: datetime = Field(default_factory=utcnow)


class Review(SQLModel, table=True):
    __tablename__ = "reviews"

    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    generation_id: str = Field(foreign_key="generations.id", unique=True)
    status: str = Field(default="pending", index=True)  # pending | approved | rejected (indexed: queue metrics)
    reasons_json: str = "[]"
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_note: str | None = None
    audit_entry_id: str | None = None


class PolicyEvent(SQLModel, table=True):
    """One event in the life of policy bundles: activated, refused, shadow_started, shadow_stopped.

    Rows are only ever inserted, each in the same transaction as its audit entry. ``archive`` keeps the exact
    bundle (reproducible tar.gz) of activations and shadows, so any earlier revision can be rolled back to.
    """

    __tablename__ = "policy_events"

    id: str = Field(primary_key=True)
    event: str = Field(index=True)
    label: str | None = None  # revision+digest of the bundle; None when it could not even be loaded
    digest: str | None = Field(default=None, index=True)
    manifest_revision: str | None = None
    source: str  # directory | upload | rollback | restore
    tenant: str
    actor: str  # the key id, or "system"
    detail_json: str = "{}"
    archive: bytes | None = None
    audit_entry_id: str
    created_at: datetime = Field(default_factory=utcnow, index=True)


class ShadowDisagreement(SQLModel, table=True):
    """A live decision where the shadow bundle would have decided differently from the active one."""

    __tablename__ = "shadow_disagreements"

    id: str = Field(primary_key=True)
    shadow_label: str = Field(index=True)
    active_label: str
    stage: str  # pre | release
    tenant: str = Field(index=True)
    generation_id: str = Field(index=True)
    decision_id: str
    active_outcome: str
    shadow_outcome: str  # allow | deny | release | review | reject | error
    active_codes_json: str = "[]"
    shadow_codes_json: str = "[]"
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Job(SQLModel, table=True):
    """An asynchronous generation (``Prefer: respond-async``). ``status``: queued -> running -> completed (the flow
    reached an audited decision: release, review, reject or deny) | failed (no decision) | cancelled. Completion is
    written in the same transaction as the audit entry, so a job is never completed without one."""

    __tablename__ = "jobs"

    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    key_id: str
    role: str
    status: str = Field(default="queued", index=True)
    request_json: str
    attempts: int = 0
    max_attempts: int = 3
    cancel_requested: bool = False
    generation_id: str | None = None
    decision: str | None = None
    error_json: str | None = None
    request_id: str | None = None  # of the request that queued it: restored in the worker, named in its audit entry
    created_at: datetime = Field(default_factory=utcnow, index=True)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobEvent(SQLModel, table=True):
    """What happened to a job, in order: the stream ``GET /v1/jobs/{id}/events`` serves (and resumes from)."""

    __tablename__ = "job_events"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(index=True)
    type: str  # queued | started | stage | step | completed | failed | cancelled | requeued
    data_json: str = "{}"
    created_at: datetime = Field(default_factory=utcnow)


class RenderCache(SQLModel, table=True):
    """A diffusion render kept for identical requests (``gateway.render_cache``): the generator's output before
    watermarking, keyed by tenant, model revision, prompt, parameters and seed."""

    __tablename__ = "render_cache"

    key: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    model: str
    revision: str
    hits: int = 0
    created_at: datetime = Field(default_factory=utcnow, index=True)


class RenderCacheImage(SQLModel, table=True):
    __tablename__ = "render_cache_images"

    key: str = Field(primary_key=True, foreign_key="render_cache.key")
    index: int = Field(primary_key=True)
    seed: int
    png: bytes


class Batch(SQLModel, table=True):
    """A campaign feed (``POST /v1/batches``): validated before anything runs, then one job per accepted row.

    ``feed_report_json`` is the feed validation report (great-expectations, row- and column-level errors);
    ``cards_report_json`` the score-card suite's report, stored once every row's job has finished."""

    __tablename__ = "batches"

    id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    key_id: str
    status: str = Field(default="running", index=True)  # running | completed
    partial: bool = False
    feed_sha256: str
    feed_format: str  # csv | json
    rows_total: int
    rows_accepted: int
    rows_rejected: int
    feed_report_json: str
    cards_report_json: str | None = None
    audit_entry_id: str
    created_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime | None = None


class BatchItem(SQLModel, table=True):
    """One accepted row of a batch and the job that renders it."""

    __tablename__ = "batch_items"

    batch_id: str = Field(primary_key=True, foreign_key="batches.id")
    row: int = Field(primary_key=True)  # 1-based data row of the feed, as the client numbers it
    sku: str
    job_id: str = Field(index=True, foreign_key="jobs.id")


class QuotaCounter(SQLModel, table=True):
    """One quota counter (``gateway.quotas``): what a key or tenant used of one limit in one fixed window (the UTC
    minute or day, by its start in epoch seconds; 0 for no window). Charged with atomic upserts, so every gateway
    process shares it and it survives restarts; rows whose window ended are pruned."""

    __tablename__ = "quota_counters"

    limit_name: str = Field(primary_key=True)  # a name of data.mediagate.quota.limits
    subject: str = Field(primary_key=True)  # the key id or the tenant
    window_start: int = Field(primary_key=True)
    used: float = 0.0
    ceiling: float | None = None  # the limit in force at the last charge (None: charged after the fact)
    expires_at: int = Field(default=0, index=True)  # the window's end (epoch seconds); 0 = never pruned
    updated_at: datetime = Field(default_factory=utcnow)


class UsageRecord(SQLModel, table=True):
    """What one generation used (``gateway.usage``), written in the same transaction as its audit entry: no usage
    without the entry and no generation entry without its usage. ``GET /v1/usage`` sums these."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_tenant_created", "tenant", "created_at"),)

    generation_id: str = Field(primary_key=True, foreign_key="generations.id")
    tenant: str
    key_id: str
    model: str
    template: str | None = None
    images: int
    gpu_seconds: float = 0.0
    cpu_seconds: float = 0.0
    storage_bytes: int = 0  # the asset files written (the audited pixels)
    audit_entry_id: str
    created_at: datetime = Field(default_factory=utcnow, index=True)
