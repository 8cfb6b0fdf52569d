"""Audit fixtures: every store test runs on SQLite and on PostgreSQL (a throw-away cluster, see tests/conftest.py)."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from audit.sql_store import SqlAuditStore
from gateway.db import create_schema, make_engine


class Raw:
    """The database as an attacker with full access sees it: append-only guards (triggers) disabled."""

    def __init__(self, backend: str, target: Any) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.conn: Any = sqlite3.connect(target)
            for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                self.conn.execute(f"DROP TRIGGER {name}")
        else:
            import psycopg

            self.conn = psycopg.connect(target)
            for table in ("audit_entries", "audit_tree_nodes", "audit_checkpoints"):
                self.conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql if self.backend == "sqlite" else sql.replace("?", "%s"), params)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``make(entries)`` -> (app engine, store, raw opener). On PostgreSQL the app role has no UPDATE/DELETE."""
    engines: list[Engine] = []

    def make(entries: int = 0) -> tuple[Engine, SqlAuditStore, Callable[[], Raw]]:
        if backend == "sqlite":
            path = tmp_path / f"audit{len(engines)}.db"
            engine = make_engine(f"sqlite:///{path}")
            create_schema(engine)
            opener: Callable[[], Raw] = lambda: Raw("sqlite", path)  # noqa: E731
        else:
            cluster = request.getfixturevalue("postgres")
            name = f"t_{secrets.token_hex(6)}"
            owner_url, app_url = cluster.new_database(name)
            owner = make_engine(owner_url)
            create_schema(owner, app_role=cluster.app)
            owner.dispose()
            engine = make_engine(app_url)
            opener = lambda: Raw("postgresql", f"host=127.0.0.1 port={cluster.port} user=postgres dbname={name}")  # noqa: E731
        engines.append(engine)
        store = SqlAuditStore()
        for i in range(entries):
            with Session(engine) as s:
                store.append(s, tenant="a" if i % 2 == 0 else "b", kind="test", payload={"i": i})
                s.commit()
        return engine, store, opener

    yield make
    for engine in engines:
        engine.dispose()
