"""The bulk verifier: it says "all good" exactly when the exact verifier does, in one process or several."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from audit.bulk_verify import BulkResult, bulk_verify
from audit.sql_store import SqlAuditStore


def run_bulk(engine: Engine, sizes: list[int], *, workers: int = 1, chunk_level: int = 2) -> BulkResult | None:
    with engine.connect() as conn:
        size = int(conn.exec_driver_sql("SELECT count(*) FROM audit_entries").scalar_one())
        cursor = conn.connection.cursor()
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        return bulk_verify(lambda sql, params: cursor.execute(sql, params) or cursor, engine.dialect.name,
                           size=size, sizes=sizes, sqlite_path=path, workers=workers, chunk_level=chunk_level)


@pytest.mark.parametrize("entries", [1, 2, 5, 8, 13, 33])
def test_roots_at_every_size_equal_the_stored_tree(make_store: Callable[..., Any], entries: int) -> None:
    engine, store, _ = make_store(entries=entries)
    sizes = list(range(1, entries + 1))
    result = run_bulk(engine, sizes)
    assert result is not None
    with Session(engine) as s:
        assert result.root == store.root(s, entries)
        assert result.roots == {n: store.root(s, n) for n in sizes}


def test_chunks_checked_in_worker_processes_agree(make_store: Callable[..., Any], backend: str) -> None:
    engine, store, _ = make_store(entries=37)
    result = run_bulk(engine, [5, 16, 37], workers=2, chunk_level=3)  # 5 chunks: the SQLite file uses 2 processes
    assert result is not None
    with Session(engine) as s:
        assert result.root == store.root(s, 37) and result.roots[16] == store.root(s, 16)
        assert store.verify(s).root == store.root(s, 37).hex()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET payload = '{\"i\":99}' WHERE seq = 6",
        "UPDATE audit_entries SET prev_hash = hash WHERE seq = 10",
        "DELETE FROM audit_entries WHERE seq = 11",
        "DELETE FROM audit_entries WHERE seq = 12",
        "UPDATE audit_tree_nodes SET hash = '00' WHERE level = 1 AND \"index\" = 4",
        "UPDATE audit_tree_nodes SET hash = '00' WHERE level = 3 AND \"index\" = 0",  # above the chunks (level 2)
        "DELETE FROM audit_tree_nodes WHERE level = 2 AND \"index\" = 1",
        "INSERT INTO audit_tree_nodes (level, \"index\", hash) VALUES (1, 6, 'ab')",  # beyond the log
        "UPDATE audit_entries SET ts = ts || ' ' WHERE seq = 3",
    ],
)
@pytest.mark.parametrize("workers", [1, 2])
def test_any_tampering_fails_the_bulk_check_and_the_exact_one(
    make_store: Callable[..., Any], statement: str, workers: int
) -> None:
    engine, store, raw = make_store(entries=12)
    conn = raw()
    conn.execute(statement)
    conn.commit()
    conn.close()
    assert run_bulk(engine, [12], workers=workers) is None
    with Session(engine) as s:
        assert not store.verify(s).ok


def test_entries_that_need_escaping_go_to_the_exact_verifier(make_store: Callable[..., Any]) -> None:
    engine, store, _ = make_store(entries=3)
    with Session(engine) as s:
        store.append(s, tenant='tenant "quoted" \\ name', kind="test", payload={"x": 1})
        s.commit()
    assert run_bulk(engine, []) is None  # the database cannot write that envelope by concatenation
    with Session(engine) as s:
        report = store.verify(s)
    assert report.ok and report.checked == 4


def test_the_default_verify_reports_roots_from_the_bulk_path(make_store: Callable[..., Any]) -> None:
    engine, store, _ = make_store(entries=20)
    with Session(engine) as s:
        report = SqlAuditStore.verify(s)
        assert report.ok and report.checked == 20 and report.root == store.root(s, 20).hex()
