"""Database set-up: SQLite (embedded default) or PostgreSQL, and the schema with its append-only guards.

SQLite runs in WAL mode with full fsync so an acknowledged audit entry survives a crash. On PostgreSQL the schema
is best created by an owner role (``MEDIAGATE_DATABASE_ADMIN_URL``) that grants the gateway's own role
(``MEDIAGATE_DATABASE_URL``) no UPDATE, DELETE or TRUNCATE on the audit tables: then even the gateway's own
credentials cannot rewrite history, triggers or not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

from audit.sql_store import AUDIT_TABLES, SqlAuditStore


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
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def create_schema(engine: Engine, *, app_role: str | None = None) -> None:
    """Create the gateway's tables and the audit log with its append-only guards.

    With ``app_role`` (PostgreSQL, ``engine`` connected as the owner), that role gets SELECT and INSERT on the
    audit tables and nothing more, and full use of the gateway's other tables.
    """
    from gateway import models  # noqa: F401 - registers the tables on SQLModel.metadata

    SqlAuditStore.create_schema(engine)
    tables = [t for name, t in SQLModel.metadata.tables.items() if name not in AUDIT_TABLES]
    SQLModel.metadata.create_all(engine, tables=tables)
    add_missing_columns(engine, tables)
    if app_role is not None:
        grant_app_role(engine, app_role, [t.name for t in tables])


def grant_app_role(engine: Engine, role: str, tables: list[str]) -> None:
    if engine.dialect.name != "postgresql":
        raise ValueError("separate owner and gateway roles exist on PostgreSQL only")
    quoted = engine.dialect.identifier_preparer.quote
    with engine.begin() as conn:
        for table in AUDIT_TABLES:
            conn.execute(text(f"REVOKE ALL ON {table} FROM {quoted(role)}"))
            conn.execute(text(f"GRANT SELECT, INSERT ON {table} TO {quoted(role)}"))
        for table in tables:
            conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {quoted(table)} TO {quoted(role)}"))
        # serial ids (job_events): inserting takes the sequence's next value
        conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted(role)}"))


def prepare_database(url: str, admin_url: str | None, *, busy_timeout_ms: int = 30_000) -> Engine:
    """The gateway's engine, with the schema created (by the owner role when ``admin_url`` is given)."""
    engine = make_engine(url, busy_timeout_ms=busy_timeout_ms)
    if admin_url is None:
        create_schema(engine)
        return engine
    admin = make_engine(admin_url, busy_timeout_ms=busy_timeout_ms)
    try:
        create_schema(admin, app_role=engine.url.username)
    finally:
        admin.dispose()
    return engine


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
