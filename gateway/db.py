"""Database engine set-up. SQLite runs in WAL mode with full fsync so an acknowledged audit entry survives a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

from audit.sql_store import SqlAuditStore


def make_engine(url: str, *, busy_timeout_ms: int = 30_000) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Create the gateway's tables and the audit log with its append-only guards."""
    from gateway import models  # noqa: F401 - registers the tables on SQLModel.metadata

    SqlAuditStore.create_schema(engine)
    tables = [t for name, t in SQLModel.metadata.tables.items() if name != "audit_entries"]
    SQLModel.metadata.create_all(engine, tables=tables)
    add_missing_columns(engine, tables)


def add_missing_columns(engine: Engine, tables: list[Table]) -> None:
    """Bring a database made by an earlier version up to date: add columns that are new and nullable.

    ``create_all`` creates missing tables but never alters existing ones. Only additive, nullable columns are
    handled here; anything else would need a real migration and fails loudly instead.
    """
    inspector = inspect(engine)
    for table in tables:
        existing = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in existing:
                continue
            if not column.nullable:
                raise RuntimeError(f"table {table.name} lacks the required column {column.name}; migrate the database")
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
