"""Settings from the environment (``MEDIAGATE_*``), with embedded defaults that run on a fresh machine."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_POLICIES = Path(__file__).resolve().parents[1] / "policies"


class Settings(BaseSettings):
    """Everything configurable. ``home`` holds the SQLite file, assets and demo models unless overridden."""

    model_config = SettingsConfigDict(env_prefix="MEDIAGATE_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    home: Path = Path("var")
    database_url: str | None = None
    db_busy_timeout_ms: int = 30_000
    policy_dir: Path = REPO_POLICIES
    policy_engine: Literal["embedded"] = "embedded"
    asset_dir: Path | None = None
    models_dir: Path | None = None
    template_dirs: list[Path] = Field(default_factory=list)
    init_demo_models: bool = True
    device: str = "auto"

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1_048_576
    max_prompt_chars: int = 2000
    default_model: str = "demo-tiny"
    demo_default_size: str = "128x128"
    demo_steps: int = 2
    scorers: list[str] = Field(default_factory=lambda: ["perceptual", "nsfw"])

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.home = self.home.expanduser()
        if self.database_url is None:
            self.database_url = f"sqlite:///{(self.home / 'mediagate.db').as_posix()}"
        if self.asset_dir is None:
            self.asset_dir = self.home / "assets"
        if self.models_dir is None:
            self.models_dir = self.home / "models"
        if self.environment == "production" and self.init_demo_models:
            raise ValueError("MEDIAGATE_INIT_DEMO_MODELS must be false in production: demo weights are random")
        return self

    @property
    def db_url(self) -> str:
        assert self.database_url is not None
        return self.database_url
