"""Verify the whole audit log: the hash chain, the stored Merkle tree, and every checkpoint it was given.

One streaming pass in ``seq`` order. Each entry's hash is recomputed from its stored canonical text (the envelope
is assembled around the stored payload, so no JSON is parsed unless something is wrong); the running Merkle frontier
yields the root at every checkpoint size and the hash of every stored subtree, which must match. Checkpoints come
from the database and, more importantly, from outside it (files a verifier kept): a database dropped and rebuilt,
or cut short, cannot match a signed checkpoint it did not produce.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text
from sqlalchemy.engine import Connection

from audit.bulk_verify import CHUNK_LEVEL, bulk_verify
from audit.chain import GENESIS_HASH, canonical_json, entry_hash, entry_hash_from_text
from audit.checkpoint import Checkpoint, CheckpointError, parse_checkpoint, verify_checkpoint
from audit.merkle import Frontier


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_id: str | None = None
    reason: str | None = None
    root: str | None = None
    checkpoints_verified: int = 0


def _slow_reason(seq: int, id_: str, ts: str, tenant: str, kind: str, payload: str, prev: str, stored: str
                 ) -> str | None:
    """The exact check, for an entry the fast path did not confirm: None if it is in fact fine."""
    try:
        body = json.loads(payload)
        canonical = canonical_json(body).decode()
    except ValueError as exc:
        return f"payload is not valid canonical JSON: {exc}"
    if entry_hash(seq=seq, id=id_, ts=ts, tenant=tenant, kind=kind, payload=body, prev_hash=prev) != stored:
        return "hash mismatch: the entry's content was changed"
    if canonical != payload:
        return "payload is not stored in canonical form"
    return None


def verify_log(
    conn: Connection, *, public_key: Ed25519PublicKey | None = None, external: Sequence[str] = (),
    batch: int = 5000, workers: int | None = None, chunk_level: int = CHUNK_LEVEL,
) -> VerifyReport:
    """Check everything; report the first bad entry (or subtree, or checkpoint) with a reason.

    ``audit.bulk_verify`` checks the log first (in ``workers`` processes on a SQLite file); only if it finds
    something wrong does the exact pass below run, to name the first bad entry and the reason.
    """
    expected: dict[int, tuple[str, bytes]] = {}  # size -> (where it came from, root)
    signed = 0
    stored_checkpoints = conn.execute(text("SELECT size, root_hash, note FROM audit_checkpoints ORDER BY size"))
    for size, root_hex, note in stored_checkpoints:
        if public_key is not None:
            try:
                stored = verify_checkpoint(note, public_key)
            except CheckpointError as exc:
                return VerifyReport(False, 0, reason=f"stored checkpoint at size {size}: {exc}")
            if stored.size != size or stored.root.hex() != root_hex:
                return VerifyReport(False, 0, reason=f"stored checkpoint at size {size} disagrees with its row")
            signed += 1
        expected[size] = (f"stored checkpoint {size}", bytes.fromhex(root_hex))
    for i, note in enumerate(external):
        try:
            cp: Checkpoint = verify_checkpoint(note, public_key) if public_key else parse_checkpoint(note)[0]
        except CheckpointError as exc:
            return VerifyReport(False, 0, reason=f"checkpoint #{i + 1} given: {exc}")
        signed += 1 if public_key else 0
        previous = expected.get(cp.size)
        if previous is not None and previous[1] != cp.root:
            return VerifyReport(False, 0, reason=f"checkpoint #{i + 1} given and the {previous[0]} commit to "
                                                 f"different roots at size {cp.size}: the log was rewritten")
        expected[cp.size] = (f"checkpoint #{i + 1} given", cp.root)

    bulk = _bulk(conn, sorted(expected), workers, chunk_level)
    if bulk is not None and all(bulk.roots[size] == root for size, (_, root) in expected.items()):
        return VerifyReport(True, bulk.size, root=bulk.root.hex() if bulk.root else None,
                            checkpoints_verified=signed)

    nodes = _stored_nodes(conn, batch)
    pending_node = next(nodes, None)
    frontier = Frontier()
    prev_hash, expected_seq = GENESIS_HASH, 1
    rows = conn.execution_options(yield_per=batch).execute(text(
        "SELECT seq, id, ts, tenant, kind, payload, prev_hash, hash FROM audit_entries ORDER BY seq"
    ))
    for seq, id_, ts, tenant, kind, payload, prev, stored in rows:
        reason = None
        if seq != expected_seq:
            reason = f"sequence gap: expected {expected_seq}, found {seq}"
        elif prev != prev_hash:
            reason = f"prev_hash does not match entry {seq - 1}"
        elif entry_hash_from_text(seq=seq, id=id_, ts=ts, tenant=tenant, kind=kind, payload_text=payload,
                                  prev_hash=prev) != stored:
            reason = _slow_reason(seq, id_, ts, tenant, kind, payload, prev, stored)
        if reason is None:
            for level, index, digest in frontier.push(bytes.fromhex(stored)):
                if pending_node is None or (pending_node[0], pending_node[1]) != (level, index):
                    reason = f"Merkle subtree ({level}, {index}) completed by this entry is missing"
                elif pending_node[2] != digest.hex():
                    reason = f"Merkle subtree ({level}, {index}) completed by this entry was altered"
                if reason:
                    break
                pending_node = next(nodes, None)
        if reason is None and seq in expected and expected[seq][1] != frontier.root():
            reason = f"the {expected[seq][0]} commits to another root at size {seq}: the log was rewritten"
        if reason is not None:
            return VerifyReport(False, expected_seq - 1, seq, id_, reason)
        prev_hash, expected_seq = stored, seq + 1
    size = expected_seq - 1
    if pending_node is not None:
        return VerifyReport(False, size, reason=f"stored Merkle subtree {pending_node[:2]} has no entries under it")
    beyond = [s for s in expected if s > size]
    if beyond:
        return VerifyReport(False, size, size + 1, None,
                            f"the log has {size} entries but the {expected[max(beyond)][0]} commits to "
                            f"{max(beyond)}: entries were removed from the end")
    return VerifyReport(True, size, root=frontier.root().hex() if size else None, checkpoints_verified=signed)


@dataclass(frozen=True)
class _Bulk:
    size: int
    root: bytes | None
    roots: dict[int, bytes]


def _bulk(conn: Connection, sizes: Sequence[int], workers: int | None, chunk_level: int) -> _Bulk | None:
    first, last = conn.execute(text("SELECT min(seq), max(seq) FROM audit_entries")).one()  # two index probes
    if first not in (None, 1):
        return None
    size = int(last or 0)  # every chunk checks that its part of 1..size is there, once
    cursor = conn.connection.cursor()
    url = conn.engine.url
    path = url.database if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") else None
    try:
        result = bulk_verify(lambda sql, params: cursor.execute(sql, params) or cursor,
                             conn.dialect.name, size=size, sizes=sizes, sqlite_path=path, workers=workers,
                             chunk_level=chunk_level)
    finally:
        cursor.close()
    return None if result is None else _Bulk(size, result.root, result.roots)


def _stored_nodes(conn: Connection, batch: int) -> Iterator[tuple[int, int, str]]:
    """Stored subtrees in the order the leaves complete them (by the position of their last leaf, then level)."""
    rows = conn.execution_options(yield_per=batch).execute(text(
        'SELECT level, "index", hash FROM audit_tree_nodes ORDER BY ("index" + 1) * (1 << level), level'
    ))
    for level, index, digest in rows:
        yield int(level), int(index), str(digest)
