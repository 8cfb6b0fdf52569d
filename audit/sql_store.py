"""The audit log as a SQLModel table: append-only (enforced by the database) and hash-chained.

Append joins the caller's transaction so an entry commits atomically with the rows it vouches for. Appends are
serialised from the moment the last entry is read until the caller's transaction ends, so two requests can never
compute the same ``seq``; the unique ``seq`` and ``hash`` columns are the last line of defence (an
``IntegrityError`` there fails the caller's commit, which then releases nothing) — e.g. a second process writing
the same SQLite file.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from audit.base import AuditEntry, VerifyReport
from audit.chain import GENESIS_HASH, canonical_json, entry_hash

_SQLITE_GUARDS = (
    """CREATE TRIGGER IF NOT EXISTS audit_entries_no_update BEFORE UPDATE ON audit_entries
       BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_entries_no_delete BEFORE DELETE ON audit_entries
       BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END""",
)


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit_entries"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    id: str = Field(unique=True, index=True)
    ts: str
    tenant: str = Field(index=True)
    kind: str = Field(index=True)
    payload: str
    prev_hash: str
    hash: str = Field(unique=True)


def _to_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq, id=row.id, ts=row.ts, tenant=row.tenant, kind=row.kind, payload=json.loads(row.payload),
        prev_hash=row.prev_hash, hash=row.hash,
    )


class SqlAuditStore:
    """``AuditStore`` on SQLModel. One instance per process; it owns the append lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    @staticmethod
    def create_schema(engine: Engine) -> None:
        """Create the table and the database-side guards that refuse UPDATE and DELETE."""
        AuditRow.__table__.create(engine, checkfirst=True)  # type: ignore[attr-defined]
        if engine.dialect.name != "sqlite":
            raise NotImplementedError(
                f"append-only guards are implemented for SQLite only, not {engine.dialect.name!r} (yet)"
            )
        with engine.begin() as conn:
            for ddl in _SQLITE_GUARDS:
                conn.execute(text(ddl))

    def _hold_until_transaction_ends(self, session: Session) -> None:
        """Take the append lock and give it back when the caller's outermost transaction commits or rolls back."""
        self._lock.acquire()
        session.info["audit_locks_held"] = session.info.get("audit_locks_held", 0) + 1
        if session.info.get("audit_listener"):
            return

        def release(_session: Any, transaction: Any) -> None:
            if transaction.parent is None:
                for _ in range(session.info.get("audit_locks_held", 0)):
                    self._lock.release()
                session.info["audit_locks_held"] = 0

        event.listen(session, "after_transaction_end", release)
        session.info["audit_listener"] = True

    def append(self, session: Session, *, tenant: str, kind: str, payload: Mapping[str, Any]) -> AuditEntry:
        body = json.loads(canonical_json(dict(payload)))  # refuse what cannot be canonicalised before locking
        self._hold_until_transaction_ends(session)
        last = session.exec(select(AuditRow).order_by(col(AuditRow.seq).desc()).limit(1)).first()
        seq = 1 if last is None else last.seq + 1
        prev_hash = GENESIS_HASH if last is None else last.hash
        entry_id = "ae_" + secrets.token_urlsafe(15)
        ts = datetime.now(UTC).isoformat(timespec="microseconds")
        digest = entry_hash(seq=seq, id=entry_id, ts=ts, tenant=tenant, kind=kind, payload=body, prev_hash=prev_hash)
        row = AuditRow(seq=seq, id=entry_id, ts=ts, tenant=tenant, kind=kind,
                       payload=canonical_json(body).decode(), prev_hash=prev_hash, hash=digest)
        session.add(row)
        session.flush()
        return _to_entry(row)

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

    def verify(self, session: Session) -> VerifyReport:
        """Walk the whole chain; report the first entry whose sequence, link or content does not check out."""
        expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
        rows = session.exec(select(AuditRow).order_by(col(AuditRow.seq)).execution_options(yield_per=500))
        for row in rows:
            reason = None
            if row.seq != expected_seq:
                reason = f"sequence gap: expected {expected_seq}, found {row.seq}"
            elif row.prev_hash != prev_hash:
                reason = f"prev_hash does not match entry {row.seq - 1}"
            else:
                try:
                    body = json.loads(row.payload)
                    canonical = canonical_json(body).decode()
                except ValueError as exc:
                    reason = f"payload is not valid canonical JSON: {exc}"
                else:
                    recomputed = entry_hash(seq=row.seq, id=row.id, ts=row.ts, tenant=row.tenant, kind=row.kind,
                                            payload=body, prev_hash=row.prev_hash)
                    if recomputed != row.hash:
                        reason = "hash mismatch: the entry's content was changed"
                    elif canonical != row.payload:
                        reason = "payload is not stored in canonical form"
            if reason is not None:
                return VerifyReport(ok=False, checked=checked, first_bad_seq=row.seq, first_bad_id=row.id,
                                    reason=reason)
            checked += 1
            expected_seq, prev_hash = row.seq + 1, row.hash
        return VerifyReport(ok=True, checked=checked)
