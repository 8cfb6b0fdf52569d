"""The audit store on SQLite and PostgreSQL: append-only in the database, chained, verify() names the first bad
entry. Every test runs on both backends."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, select

from audit.sql_store import AuditRow, SqlAuditStore
from gateway.db import create_schema, make_engine


def verify(engine: Engine, store: SqlAuditStore):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return store.verify(s)


def test_append_chains_and_reads_back(make_store: Callable) -> None:
    engine, store, _ = make_store(entries=3)
    with Session(engine) as s:
        entries = store.list(s)
        assert [e.seq for e in entries] == [1, 2, 3]
        assert entries[0].prev_hash == "0" * 64
        assert entries[1].prev_hash == entries[0].hash and entries[2].prev_hash == entries[1].hash
        assert entries[2].payload == {"i": 2}
        assert store.get(s, entries[1].id) == entries[1]
    report = verify(engine, store)
    assert report.ok and report.checked == 3


def test_tenant_scoping(make_store: Callable) -> None:
    engine, store, _ = make_store(entries=4)
    with Session(engine) as s:
        a_entries = store.list(s, tenant="a")
        assert [e.payload["i"] for e in a_entries] == [0, 2]
        assert store.get(s, a_entries[0].id, tenant="b") is None
        assert store.list(s, tenant="a", after_seq=1, limit=1)[0].seq == 3


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_entries SET kind = 'x' WHERE seq = 1", "DELETE FROM audit_entries WHERE seq = 2",
     "DELETE FROM audit_entries", "UPDATE audit_tree_nodes SET hash = 'x'", "DELETE FROM audit_checkpoints"],
)
def test_database_refuses_update_and_delete(make_store: Callable, statement: str) -> None:
    """With the gateway's own credentials: triggers on SQLite; on PostgreSQL no privilege even to try."""
    engine, store, _ = make_store(entries=2)
    with Session(engine) as s:
        store.add_checkpoint(s, size=2, root=store.root(s, 2), note="(a note)")
        s.commit()
    with engine.connect() as conn:
        with pytest.raises(DBAPIError, match="append-only|permission denied"):
            conn.execute(text(statement))
        conn.rollback()
        assert conn.execute(text("SELECT count(*) FROM audit_entries")).scalar() == 2


def test_postgres_triggers_hold_even_for_the_owner(postgres: Any) -> None:
    """The owner role has every privilege on its tables; only the triggers stop it."""
    owner_url, _ = postgres.new_database(f"t_{secrets.token_hex(6)}")
    owner = make_engine(owner_url)
    create_schema(owner, app_role=postgres.app)
    with Session(owner) as s:
        SqlAuditStore().append(s, tenant="a", kind="test", payload={})
        s.commit()
    try:
        with owner.connect() as conn:
            for statement in ("UPDATE audit_entries SET kind = 'x'", "TRUNCATE audit_entries"):
                with pytest.raises(DBAPIError, match="append-only"):
                    conn.execute(text(statement))
                conn.rollback()
    finally:
        owner.dispose()


def test_orm_update_is_refused_too(make_store: Callable) -> None:
    engine, _, _ = make_store(entries=1)
    with Session(engine) as s:
        row = s.exec(select(AuditRow)).one()
        row.tenant = "forged"
        s.add(row)
        with pytest.raises(DBAPIError, match="append-only|permission denied"):
            s.commit()


def _alter_payload(conn: Any) -> None:
    conn.execute("""UPDATE audit_entries SET payload = '{"i":99}' WHERE seq = 3""")


def _alter_tenant(conn: Any) -> None:
    conn.execute("UPDATE audit_entries SET tenant = 'x' WHERE seq = 3")


def _remove_middle(conn: Any) -> None:
    conn.execute("DELETE FROM audit_entries WHERE seq = 3")


def _insert_forged(conn: Any) -> None:
    # Make room at seq 3 by shifting the tail up, then insert a forged entry that links to entry 2.
    for seq in (5, 4, 3):
        conn.execute("UPDATE audit_entries SET seq = seq + 1 WHERE seq = ?", (seq,))
    prev = conn.execute("SELECT hash FROM audit_entries WHERE seq = 2").fetchone()[0]
    conn.execute("INSERT INTO audit_entries VALUES (3, 'ae_forged', 't', 'a', 'test', '{\"i\":42}', ?, ?)",
                 (prev, "f" * 64))


def _swap(conn: Any) -> None:
    cols = "id, ts, tenant, kind, payload, prev_hash, hash"
    r3 = conn.execute(f"SELECT {cols} FROM audit_entries WHERE seq = 3").fetchone()
    r4 = conn.execute(f"SELECT {cols} FROM audit_entries WHERE seq = 4").fetchone()
    conn.execute("DELETE FROM audit_entries WHERE seq IN (3, 4)")
    conn.execute(f"INSERT INTO audit_entries (seq, {cols}) VALUES (3, ?, ?, ?, ?, ?, ?, ?)", r4)
    conn.execute(f"INSERT INTO audit_entries (seq, {cols}) VALUES (4, ?, ?, ?, ?, ?, ?, ?)", r3)


@pytest.mark.parametrize(
    ("tamper", "first_bad", "reason", "checked"),
    [
        (_alter_payload, 3, "hash mismatch", 2),
        (_alter_tenant, 3, "hash mismatch", 2),
        (_remove_middle, 4, "sequence gap", 2),
        (_insert_forged, 3, "hash mismatch", 2),
        (_swap, 3, "prev_hash", 2),
    ],
)
def test_verify_names_the_first_bad_entry(
    make_store: Callable, tamper: Callable, first_bad: int, reason: str, checked: int
) -> None:
    engine, store, raw = make_store(entries=5)
    assert verify(engine, store).ok
    conn = raw()
    tamper(conn)
    conn.commit()
    conn.close()
    report = verify(engine, store)
    assert not report.ok
    assert report.first_bad_seq == first_bad
    assert reason in (report.reason or "")
    assert report.checked == checked


def test_removing_the_tail_is_not_detectable_by_the_chain_alone(make_store: Callable) -> None:
    """Truncation leaves a valid shorter chain. Signed checkpoints held outside the database close this gap."""
    engine, store, raw = make_store(entries=5)
    conn = raw()
    conn.execute("DELETE FROM audit_entries WHERE seq = 5")
    conn.commit()
    conn.close()
    report = verify(engine, store)
    assert report.ok and report.checked == 4


def test_rolled_back_append_leaves_no_trace(make_store: Callable) -> None:
    engine, store, _ = make_store(entries=2)
    with Session(engine) as s:
        store.append(s, tenant="a", kind="test", payload={"i": "lost"})
        s.rollback()
    with Session(engine) as s:
        entry = store.append(s, tenant="a", kind="test", payload={"i": "kept"})
        s.commit()
    assert entry.seq == 3
    assert verify(engine, store).ok


def test_concurrent_appends_never_fork_the_chain(make_store: Callable) -> None:
    engine, store, _ = make_store()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                with Session(engine) as s:
                    store.append(s, tenant=f"t{n}", kind="test", payload={"n": n, "i": i})
                    s.commit()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(engine) as s:
        seqs = [r.seq for r in s.exec(select(AuditRow).order_by(AuditRow.seq)).all()]
    assert seqs == list(range(1, 201))
    assert verify(engine, store).ok


def test_unique_seq_refuses_a_second_writer_on_the_same_position(make_store: Callable) -> None:
    """Another process's store (its own lock) writing seq 2 again: the database refuses, the chain stays whole."""
    engine, store, _ = make_store(entries=1)
    with Session(engine) as s1:
        store.append(s1, tenant="a", kind="test", payload={"w": 1})
        s1.commit()
    with Session(engine) as s2:
        s2.add(AuditRow(seq=2, id="ae_dup", ts="t", tenant="a", kind="test", payload="{}", prev_hash="0" * 64,
                        hash="e" * 64))
        with pytest.raises(IntegrityError):
            s2.commit()
    assert verify(engine, store).ok


def test_non_finite_payload_is_refused_before_anything_is_written(make_store: Callable) -> None:
    engine, store, _ = make_store(entries=1)
    with Session(engine) as s, pytest.raises(ValueError, match="finite"):
        store.append(s, tenant="a", kind="test", payload={"score": float("nan")})
    with Session(engine) as s:
        assert len(store.list(s)) == 1
        store.append(s, tenant="a", kind="test", payload={"ok": 1})  # the lock was not leaked
        s.commit()


def test_rows_appended_before_a_rolled_back_savepoint_are_kept(make_store: Callable) -> None:
    """Appends wait in memory for one batched insert: a SAVEPOINT that starts later and is rolled back must not take
    them with it, and the tip after the rollback must be the database's."""
    engine, store, _ = make_store(entries=1)
    with Session(engine) as s:
        store.append(s, tenant="a", kind="before", payload={"i": 1})
        with pytest.raises(RuntimeError), s.begin_nested():
            store.append(s, tenant="a", kind="inside", payload={"i": 2})
            raise RuntimeError("the savepoint's writer failed")
        store.append(s, tenant="a", kind="after", payload={"i": 3})
        s.commit()
    with Session(engine) as s:
        assert [(e.seq, e.kind) for e in store.list(s)] == [(1, "test"), (2, "before"), (3, "after")]
    assert verify(engine, store).ok


def test_pending_appends_are_visible_to_the_same_transaction(make_store: Callable) -> None:
    """Any statement the session runs first writes what is pending: reads inside the transaction see the rows."""
    engine, store, _ = make_store(entries=2)
    with Session(engine) as s:
        appended = [store.append(s, tenant="a", kind="test", payload={"i": i}) for i in range(5)]
        assert store.get(s, appended[3].id) == appended[3]
        assert s.exec(select(AuditRow.seq).order_by(AuditRow.seq.desc())).first() == 7  # type: ignore[attr-defined]
        more = store.append(s, tenant="b", kind="test", payload={"i": 5})
        s.commit()
    assert more.seq == 8 and more.prev_hash == appended[-1].hash
    report = verify(engine, store)
    assert report.ok and report.checked == 8


def test_a_failed_batched_insert_commits_nothing(make_store: Callable) -> None:
    """The batched insert runs at commit: if the database refuses it, the commit fails and nothing is written."""
    engine, store, _ = make_store(entries=1)
    with Session(engine) as s:
        store.append(s, tenant="a", kind="test", payload={"i": 1})
        s.add(AuditRow(seq=3, id="ae_squatter", ts="t", tenant="a", kind="test", payload="{}", prev_hash="0" * 64,
                       hash="e" * 64))
        s.flush()  # the squatter takes seq 3 in this transaction: the second pending append collides with it
        store.append(s, tenant="a", kind="test", payload={"i": 2})
        with pytest.raises(engine.dialect.dbapi.IntegrityError):  # type: ignore[union-attr]  # written raw
            s.commit()
    with Session(engine) as s:
        assert [e.seq for e in store.list(s)] == [1]
    assert verify(engine, store).ok


def test_a_commit_on_an_overflow_connection_succeeds(make_store: Callable) -> None:
    """Under load a session's connection can be one beyond the pool's size, which the pool closes the moment the
    transaction hands it back: the append's cursor must be finished with by then (found at 200 clients, where the
    commit succeeded but the committer reported it failed)."""
    engine, store, _ = make_store(entries=1)
    held = [engine.connect() for _ in range(engine.pool.size())]  # type: ignore[attr-defined]
    with Session(engine) as s:
        entry = store.append(s, tenant="a", kind="test", payload={"i": 1})
        for conn in held:
            conn.close()  # the pool is full again: the session's connection is closed when it comes back
        s.commit()
    with Session(engine) as s:
        assert store.get(s, entry.id) == entry
    assert verify(engine, store).ok
