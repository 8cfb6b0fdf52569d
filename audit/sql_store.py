"""The audit log as SQLModel tables: append-only (enforced by the database), hash-chained, and a Merkle tree.

``append`` joins the caller's transaction, so an entry commits atomically with the rows it vouches for, and in the
same transaction stores the hashes of the perfect subtrees the new leaf completes (``audit_tree_nodes``), so that
inclusion and consistency proofs cost O(log n) lookups at any size. Appends are serialised from the moment the last
entry is read until the caller's transaction ends, so two requests can never compute the same ``seq``; the unique
``seq`` (the primary key) is the last line of defence (an ``IntegrityError`` fails the caller's commit, which
then releases nothing) — e.g. a second process writing the same database.

The database refuses UPDATE and DELETE on the three audit tables: SQLite and PostgreSQL triggers, and on
PostgreSQL also the privileges of the gateway's role (``gateway.db.grant_app_role``).
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from audit.base import AuditEntry
from audit.chain import GENESIS_HASH, Canonical, entry_hash_from_text
from audit.merkle import Frontier, ProofError, consistency_path, inclusion_path, node_hash, split_point
from audit.verify import VerifyReport, verify_log

AUDIT_TABLES = ("audit_entries", "audit_tree_nodes", "audit_checkpoints")

_SQLITE_GUARDS = [
    f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{op} BEFORE {op.upper()} ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
    for table in AUDIT_TABLES for op in ("update", "delete")
]

_POSTGRES_GUARDS = [
    """CREATE OR REPLACE FUNCTION mediagate_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$""",
    *[
        f"""DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '{table}_append_only') THEN
                CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                  FOR EACH ROW EXECUTE FUNCTION mediagate_append_only();
                CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                  FOR EACH STATEMENT EXECUTE FUNCTION mediagate_append_only();
              END IF;
            END $$"""
        for table in AUDIT_TABLES
    ],
]


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit_entries"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    id: str = Field(unique=True, index=True)
    ts: str
    tenant: str = Field(index=True)
    kind: str = Field(index=True)
    payload: str
    prev_hash: str
    hash: str  # unique by construction (it covers ``seq``); an index on random digests would cost every append


class TreeNodeRow(SQLModel, table=True):
    """Hash of the perfect subtree of 2**level leaves starting at leaf ``index * 2**level`` (level >= 1)."""

    __tablename__ = "audit_tree_nodes"
    # On SQLite the rows live in the primary key's b-tree: a range of subtrees is one scan, not an index scan plus
    # a table lookup per row (2.5x faster for verify's per-level reads; created so for new databases)
    __table_args__ = {"sqlite_with_rowid": False}

    level: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    index: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    hash: str


class CheckpointRow(SQLModel, table=True):
    """A signed checkpoint (``audit.checkpoint``) of the tree at ``size`` leaves."""

    __tablename__ = "audit_checkpoints"

    size: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    root_hash: str
    note: str
    created_at: str


def _to_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq, id=row.id, ts=row.ts, tenant=row.tenant, kind=row.kind, payload_text=row.payload,
        prev_hash=row.prev_hash, hash=row.hash,
    )


class SubtreeHashes:
    """``audit.merkle.SubtreeSource`` over the stored leaves and perfect subtrees, memoised for one proof."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._memo: dict[tuple[int, int], bytes] = {}

    def __call__(self, start: int, end: int) -> bytes:
        key = (start, end)
        if key not in self._memo:
            self._memo[key] = self._compute(start, end)
        return self._memo[key]

    def _compute(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 1:
            row = self.session.exec(select(AuditRow.hash).where(AuditRow.seq == start + 1)).first()
            if row is None:
                raise ProofError(f"leaf {start} is not in the log")
            return bytes.fromhex(row)
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            node = self.session.exec(
                select(TreeNodeRow.hash).where(TreeNodeRow.level == level, TreeNodeRow.index == start // n)
            ).first()
            if node is None:
                raise ProofError(f"subtree [{start}, {end}) is not stored")
            return bytes.fromhex(node)
        k = split_point(n)
        return node_hash(self(start, start + k), self(start + k, end))


def new_entry_id() -> str:
    """``ae_`` + microseconds since the epoch (13 hex digits, so ids sort by time until 2112) + 40 random bits.

    Ids that grow with time are inserted at the right edge of their unique index, as ``seq`` is: a batch of
    appends dirties a page or two of it rather than one random page per entry (measured: the index pages dominated
    a group commit's WAL writes with random ids).
    """
    return f"ae_{time.time_ns() // 1000:013x}{_id_bits(40):010x}"


# Entry ids need to be unique, not secret (uniqueness comes from the time and the database's unique index; they are
# no capability: every read is checked against the caller's tenant), so a seeded PRNG, not a system call per id.
_id_bits = random.Random(secrets.randbits(128)).getrandbits


_CACHE = "audit_tip"
_INSERTS = "audit_inserts"


class _Inserts:
    """Audit rows written straight through the transaction's DBAPI connection, a batch at a time.

    The rows are never updated, so SQLAlchemy's per-statement work (compiling, result set-up: four fifths of an
    append's database time) buys nothing here. Rows appended outside a SAVEPOINT wait in memory and go in with one
    ``executemany`` per table (one round trip on PostgreSQL, one prepared statement on SQLite) before anything else
    can see the tables: before the commit, before any statement the session runs, and before a SAVEPOINT starts
    (so a savepoint rolled back never takes earlier rows with it). Inside a SAVEPOINT each row is written at once,
    through ``session.connection()``, so the session first emits any SAVEPOINT it has pending. Lives for one
    transaction; a rollback drops what is pending with it.
    """

    def __init__(self, session: Session) -> None:
        mark = "?" if session.get_bind().dialect.paramstyle == "qmark" else "%s"
        self.session = session
        self._cursor = session.connection().connection.cursor()
        self._entry_sql = (f"INSERT INTO audit_entries (seq, id, ts, tenant, kind, payload, prev_hash, hash) "
                           f"VALUES ({', '.join([mark] * 8)})")
        self._node_sql = f'INSERT INTO audit_tree_nodes (level, "index", hash) VALUES ({mark}, {mark}, {mark})'
        self._entries: list[tuple[Any, ...]] = []
        self._nodes: list[tuple[int, int, str]] = []

    def write(self, entry: tuple[Any, ...], nodes: list[tuple[int, int, str]]) -> None:
        if self.session.in_nested_transaction():
            self.flush()
            self.session.connection()  # emits the pending SAVEPOINT, if any, before the rows
            self._cursor.execute(self._entry_sql, entry)
            if nodes:
                self._cursor.executemany(self._node_sql, nodes)
            return
        self._entries.append(entry)
        self._nodes.extend(nodes)

    def flush(self) -> None:
        if self._entries:
            entries, self._entries = self._entries, []
            self._cursor.executemany(self._entry_sql, entries)
        if self._nodes:
            nodes, self._nodes = self._nodes, []
            self._cursor.executemany(self._node_sql, nodes)

    def close(self) -> None:
        """Close the cursor: only while the transaction still holds its connection (before the commit). After the
        transaction ends the pool may already have closed that connection, and closing a cursor of a closed
        connection raises; there the object is only dropped."""
        self._entries, self._nodes = [], []
        self._cursor.close()


def _flush(session: Session) -> None:
    inserts: _Inserts | None = session.info.get(_INSERTS)
    if inserts is not None:
        inserts.flush()


def _close_before_commit(session: Session) -> None:
    """Write what is pending; at the outermost commit, also close the cursor while the connection is ours."""
    _flush(session)
    if not session.in_nested_transaction():
        inserts: _Inserts | None = session.info.pop(_INSERTS, None)
        if inserts is not None:
            inserts.close()


class _Tip:
    """The end of the log as this transaction sees it: size, last hash, and the Merkle frontier.

    Loaded once per transaction (O(log n) reads) while the append lock is held, then advanced in memory, so an
    append costs two inserts and no reads. Dropped at transaction end and on any rollback.
    """

    def __init__(self, last_hash: str, frontier: Frontier) -> None:
        self.last_hash, self.frontier = last_hash, frontier

    @property
    def size(self) -> int:
        return self.frontier.size

    def copy(self) -> _Tip:
        return _Tip(self.last_hash, self.frontier.copy())

    @classmethod
    def load(cls, session: Session, known: _Tip | None) -> _Tip:
        """The tip, read from the database; the frontier reused from ``known`` when the log has not moved since."""
        last = session.exec(select(AuditRow.seq, AuditRow.hash).order_by(col(AuditRow.seq).desc()).limit(1)).first()
        if last is None:
            return cls(GENESIS_HASH, Frontier())
        size, last_hash = int(last[0]), str(last[1])
        if known is not None and (known.size, known.last_hash) == (size, last_hash):
            return known.copy()
        edge: list[tuple[int, bytes]] = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):  # the perfect subtrees of the tree of `size` leaves
            if not size >> level & 1:
                continue
            if level == 0:
                digest = bytes.fromhex(last_hash)
            else:
                stored = session.exec(select(TreeNodeRow.hash).where(
                    TreeNodeRow.level == level, TreeNodeRow.index == start >> level)).first()
                if stored is None:
                    raise RuntimeError(f"audit tree node ({level}, {start >> level}) is missing; run `mediagate "
                                       "audit verify`")
                digest = bytes.fromhex(stored)
            edge.append((level, digest))
            start += 1 << level
        return cls(last_hash, Frontier(size, edge))

    def push(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        self.last_hash = leaf.hex()
        return self.frontier.push(leaf)


class SqlAuditStore:
    """``AuditStore`` on SQLModel. One instance per process; it owns the append lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._committed_tip: _Tip | None = None  # the tip after this process's last commit, to skip tree reads

    @staticmethod
    def create_schema(engine: Engine) -> None:
        """Create the audit tables and the database-side guards that refuse UPDATE, DELETE (and TRUNCATE)."""
        for model in (AuditRow, TreeNodeRow, CheckpointRow):
            model.__table__.create(engine, checkfirst=True)  # type: ignore[attr-defined,union-attr]
        guards = {"sqlite": _SQLITE_GUARDS, "postgresql": _POSTGRES_GUARDS}.get(engine.dialect.name)
        if guards is None:
            raise NotImplementedError(f"append-only guards exist for SQLite and PostgreSQL, not {engine.dialect.name}")
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Serialise concurrent schema creation (several gateway processes starting at once).
                conn.execute(text("SELECT pg_advisory_xact_lock(424242)"))
            for ddl in guards:
                conn.execute(text(ddl))

    def _hold_until_transaction_ends(self, session: Session) -> None:
        """Take the append lock and give it back when the caller's outermost transaction commits or rolls back."""
        if session.info.get("audit_locks_held"):
            return  # this transaction holds it already
        self._lock.acquire()
        session.info["audit_locks_held"] = 1
        if session.info.get("audit_listener"):
            return

        def release(_session: Any, transaction: Any) -> None:
            if transaction.parent is None:
                session.info.pop(_CACHE, None)
                session.info.pop(_INSERTS, None)  # rolled back: dropped, not closed (see _Inserts.close)
                for _ in range(session.info.get("audit_locks_held", 0)):
                    self._lock.release()
                session.info["audit_locks_held"] = 0

        def forget(_session: Any, _transaction: Any) -> None:
            # A rolled-back savepoint may have held appends: the cached tip no longer matches the database.
            session.info.pop(_CACHE, None)
            session.info.pop(_INSERTS, None)

        def committed(_session: Any) -> None:
            tip = session.info.get(_CACHE)
            if tip is not None:
                self._committed_tip = tip.copy()

        def before_savepoint(_session: Any, transaction: Any) -> None:
            if transaction.nested:
                _flush(session)

        event.listen(session, "after_transaction_end", release)
        event.listen(session, "after_soft_rollback", forget)
        event.listen(session, "after_commit", committed)
        # Pending rows go in before the commit, before any statement of the session, before a savepoint.
        event.listen(session, "before_commit", lambda _s: _close_before_commit(session))
        event.listen(session, "do_orm_execute", lambda _state: _flush(session))
        event.listen(session, "after_transaction_create", before_savepoint)
        session.info["audit_listener"] = True

    def append(self, session: Session, *, tenant: str, kind: str, payload: Mapping[str, Any] | Canonical
               ) -> AuditEntry:
        """Append one entry in the caller's transaction. A ``Canonical`` payload (``Canonical.of``) was encoded by
        the caller, ahead of the append lock; a mapping is encoded here (and refused if it cannot be)."""
        payload_text = payload.text if isinstance(payload, Canonical) else Canonical.of(payload).text
        self._hold_until_transaction_ends(session)
        tip = session.info.get(_CACHE)
        if tip is None:
            if session.get_bind().dialect.name == "postgresql":
                # Another process appending to the same database waits here until this transaction ends.
                session.execute(text("SELECT pg_advisory_xact_lock(4242)"))
            tip = session.info[_CACHE] = _Tip.load(session, self._committed_tip)
            session.info[_INSERTS] = _Inserts(session)
        seq = tip.size + 1
        prev_hash = tip.last_hash
        entry_id = new_entry_id()
        ts = datetime.now(UTC).isoformat(timespec="microseconds")
        digest = entry_hash_from_text(seq=seq, id=entry_id, ts=ts, tenant=tenant, kind=kind,
                                      payload_text=payload_text, prev_hash=prev_hash)
        completed = tip.push(bytes.fromhex(digest))
        session.info[_INSERTS].write((seq, entry_id, ts, tenant, kind, payload_text, prev_hash, digest),
                                     [(level, index, h.hex()) for level, index, h in completed])
        return AuditEntry(seq=seq, id=entry_id, ts=ts, tenant=tenant, kind=kind, payload_text=payload_text,
                          prev_hash=prev_hash, hash=digest)

    def get(self, session: Session, entry_id: str, *, tenant: str | None = None) -> AuditEntry | None:
        query = select(AuditRow).where(AuditRow.id == entry_id)
        if tenant is not None:
            query = query.where(AuditRow.tenant == tenant)
        row = session.exec(query).first()
        return _to_entry(row) if row else None

    def list(
        self, session: Session, *, tenant: str | None = None, limit: int = 50, after_seq: int = 0
    ) -> Sequence[AuditEntry]:
        query = select(AuditRow).where(AuditRow.seq > after_seq)
        if tenant is not None:
            query = query.where(AuditRow.tenant == tenant)
        rows = session.exec(query.order_by(col(AuditRow.seq)).limit(limit)).all()
        return [_to_entry(r) for r in rows]

    @staticmethod
    def verify(session: Session, *, public_key: Ed25519PublicKey | None = None, external: Sequence[str] = ()
               ) -> VerifyReport:
        """The chain, the stored tree and every checkpoint (``audit.verify``)."""
        return verify_log(session.connection(), public_key=public_key, external=external)

    # -- the Merkle tree ---------------------------------------------------------------------------------------

    @staticmethod
    def size(session: Session) -> int:
        last = session.exec(select(AuditRow.seq).order_by(col(AuditRow.seq).desc()).limit(1)).first()
        return int(last or 0)

    @staticmethod
    def root(session: Session, size: int) -> bytes:
        if size == 0:
            raise ProofError("the log is empty")
        return SubtreeHashes(session)(0, size)

    @staticmethod
    def inclusion_proof(session: Session, seq: int, size: int) -> Sequence[bytes]:
        return inclusion_path(seq - 1, size, SubtreeHashes(session))

    @staticmethod
    def consistency_proof(session: Session, old_size: int, new_size: int) -> Sequence[bytes]:
        return consistency_path(old_size, new_size, SubtreeHashes(session))

    # -- checkpoints -------------------------------------------------------------------------------------------

    @staticmethod
    def add_checkpoint(session: Session, *, size: int, root: bytes, note: str) -> None:
        session.add(CheckpointRow(size=size, root_hash=root.hex(), note=note,
                                  created_at=datetime.now(UTC).isoformat(timespec="seconds")))

    @staticmethod
    def latest_checkpoint(session: Session) -> CheckpointRow | None:
        return session.exec(select(CheckpointRow).order_by(col(CheckpointRow.size).desc()).limit(1)).first()

    @staticmethod
    def checkpoint_at_or_after(session: Session, size: int) -> CheckpointRow | None:
        return session.exec(
            select(CheckpointRow).where(CheckpointRow.size >= size).order_by(col(CheckpointRow.size)).limit(1)
        ).first()

    @staticmethod
    def checkpoints(session: Session) -> Sequence[CheckpointRow]:
        return list(session.exec(select(CheckpointRow).order_by(col(CheckpointRow.size))).all())
