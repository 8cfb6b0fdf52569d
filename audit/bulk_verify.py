"""Bulk verification of the audit log: chunks checked with the per-entry work in C, several processes at once.

``audit.verify.verify_log`` asks this module first. It answers only "everything checks" (with the roots at the
sizes asked for) or "something does not": in the second case the exact streaming verifier runs and names the first
bad entry and why, so the reasons a verifier reports never depend on this shortcut.

Why it is sound. The log is cut into chunks of ``2**level`` entries, aligned so that every chunk is one perfect
subtree of the Merkle tree. For each chunk:

- each entry's RFC 8785 envelope is written around the stored payload by plain concatenation, exactly what
  ``audit.chain.entry_hash_from_text`` hashes when the id, kind, tenant and timestamp need no escaping in JSON
  (``_ESCAPED``: no quote, backslash or control character; ``prev_hash`` is checked to be a stored hash); a chunk
  holding any other entry fails over to the exact verifier;
- SHA-256 of ``0x00 || envelope`` must equal the stored hash of every entry (compared as one string per batch),
  ``seq`` must run without a gap, and each ``prev_hash`` must be the hash stored before it;
- every perfect subtree inside the chunk is recomputed level by level and must equal the stored one, with none
  missing and none extra.

The parent checks the links between chunks (and the first one to the genesis hash), merges the chunk roots into the
subtrees above them (which must equal the stored ones), counts the stored subtrees (so none lies beyond the log), and
folds the root at every checkpoint size from the subtrees left of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from audit.merkle import Frontier

CHUNK_LEVEL = 16  # 65,536 entries a chunk
_FETCH = 4096

# A character that RFC 8785 escapes inside a string: where the envelope's fields hold one, plain concatenation is not
# the canonical envelope (and a quote could even move a field's boundary), so such an entry fails the bulk check.
_ESCAPED = re.compile(r'[\x00-\x1f"\\]')
def _entries_sql(mark: str) -> str:
    return (f"SELECT prev_hash, hash, id, kind, payload, seq, tenant, ts "
            f"FROM audit_entries WHERE seq > {mark} AND seq <= {mark} ORDER BY seq")


def _nodes_sql(dialect: str, mark: str) -> str:
    """One level's stored subtrees in a range, as one string. (SQLite concatenates in the order of the subquery
    in practice, though it does not promise to; any other order fails the check and the exact verifier runs.)"""
    where = f'level = {mark} AND "index" >= {mark} AND "index" < {mark}'
    if dialect == "postgresql":
        return f'SELECT string_agg(hash, \'\' ORDER BY "index") FROM audit_tree_nodes WHERE {where}'
    return f'SELECT group_concat(hash, \'\') FROM (SELECT hash FROM audit_tree_nodes WHERE {where} ORDER BY "index")'


class Cursor(Protocol):
    def fetchone(self) -> Sequence[Any] | None: ...

    def fetchmany(self, size: int) -> Sequence[Sequence[Any]]: ...

    def fetchall(self) -> Sequence[Sequence[Any]]: ...


Query = Callable[[str, Sequence[Any]], Cursor]  # runs a statement with DBAPI parameters


@dataclass
class ChunkResult:
    ok: bool
    first_prev: str = ""
    last_hash: str = ""
    edges: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)  # size -> subtrees of [start, size)


def check_chunk(query: Query, dialect: str, mark: str, start: int, end: int, sizes: Sequence[int]
                ) -> ChunkResult:
    """Check entries (start, end] and the subtrees inside them; ``start`` is a multiple of ``end - start`` unless
    the chunk is the last. ``sizes`` (each in (start, end]) get the chunk's part of their root."""
    sha = hashlib.sha256
    leaves: list[bytes] = []
    first_prev = last_hash = ""
    rows = query(_entries_sql(mark), (start, end))
    while batch := rows.fetchmany(_FETCH):
        prevs, hashes, ids, kinds, _, seqs, tenants, stamps = zip(*batch, strict=True)
        if seqs != tuple(range(start + len(leaves) + 1, start + len(leaves) + len(batch) + 1)):
            return ChunkResult(False)
        if _ESCAPED.search("".join(ids) + "".join(kinds) + "".join(tenants) + "".join(stamps)):
            return ChunkResult(False)
        # the envelope of audit.chain.entry_hash_from_text, for fields that need no escaping
        digests = [sha(f'\x00{{"id":"{id_}","kind":"{kind}","payload":{payload},"prev_hash":"{prev}","seq":{seq},'
                       f'"tenant":"{tenant}","ts":"{ts}"}}'.encode()).digest()
                   for prev, _, id_, kind, payload, seq, tenant, ts in batch]
        if b"".join(digests).hex() != "".join(hashes):
            return ChunkResult(False)
        if not first_prev:
            first_prev = prevs[0]
        elif prevs[0] != last_hash:
            return ChunkResult(False)
        if prevs[1:] != hashes[:-1]:
            return ChunkResult(False)
        leaves.extend(digests)
        last_hash = hashes[-1]
    if len(leaves) != end - start:
        return ChunkResult(False)

    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [sha(b"\x01" + left + right).digest() for left, right in zip(below[::2], below[1::2], strict=False)]
        level = len(levels)
        stored = _one(query(_nodes_sql(dialect, mark), (level, start >> level, (start >> level) + len(above))))
        if stored != b"".join(above).hex():
            return ChunkResult(False)
        levels.append(above)

    edges: dict[int, list[tuple[int, bytes]]] = {}
    for size in {*sizes, end}:
        edge, offset, count = [], 0, size - start
        for level in range(len(levels) - 1, -1, -1):
            if count >> level & 1:
                edge.append((level, levels[level][offset >> level]))
                offset += 1 << level
        edges[size] = edge
    return ChunkResult(True, first_prev, last_hash, edges)


def _one(cursor: Cursor) -> Any:
    row = cursor.fetchone()
    return None if row is None else row[0]


def _worker_main() -> None:
    """``python -m audit.bulk_verify PATH``: check the chunks read as JSON from stdin on a read-only connection;
    write the results as JSON to stdout. A fresh interpreter importing only this module (a ``multiprocessing`` spawn
    would import the parent's main module again, which costs more than the work for a small log)."""
    import sqlite3

    path, jobs = sys.argv[1], json.load(sys.stdin)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        out = []
        for start, end, sizes in jobs:
            r = check_chunk(conn.execute, "sqlite", "?", start, end, sizes)
            out.append([r.ok, r.first_prev, r.last_hash,
                        {str(k): [[level, d.hex()] for level, d in edge] for k, edge in r.edges.items()}])
            if not r.ok:
                break
    json.dump(out, sys.stdout)


def _in_workers(path: str, jobs: list[tuple[int, int, list[int]]], workers: int) -> list[ChunkResult] | None:
    """Chunks dealt round-robin to ``workers`` processes; None if any chunk fails or a worker does not finish."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    shares = [jobs[k::workers] for k in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-m", "audit.bulk_verify", path], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env) for _ in shares]
    outputs = []
    try:
        for proc, share in zip(procs, shares, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(share).encode())
            proc.stdin.close()
        for proc in procs:
            assert proc.stdout is not None
            out = proc.stdout.read()
            if proc.wait() != 0:
                return None
            outputs.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results: list[ChunkResult] = [ChunkResult(False)] * len(jobs)
    for k, out in enumerate(outputs):
        for i, (ok, first_prev, last_hash, edges) in enumerate(out):
            results[k + i * workers] = ChunkResult(ok, first_prev, last_hash, {
                int(size): [(level, bytes.fromhex(digest)) for level, digest in edge] for size, edge in edges.items()
            })
    return results


@dataclass(frozen=True)
class BulkResult:
    root: bytes | None
    roots: dict[int, bytes]  # checkpoint size -> root


def bulk_verify(query: Query, dialect: str, *, size: int, sizes: Sequence[int], sqlite_path: str | None = None,
                workers: int | None = None, chunk_level: int = CHUNK_LEVEL) -> BulkResult | None:
    """Verify the first ``size`` entries; None if anything does not check (the exact verifier then says what).

    ``query(sql, params)`` runs on the caller's connection. With ``sqlite_path`` and more than one chunk, chunks are
    checked in ``workers`` processes (default: one per CPU).
    """
    if dialect not in ("sqlite", "postgresql"):
        return None
    mark = "?" if dialect == "sqlite" else "%s"
    stored_nodes = int(_one(query("SELECT count(*) FROM audit_tree_nodes", ())))
    if stored_nodes != sum(size >> level for level in range(1, size.bit_length())):
        return None
    if any(s > size or s < 1 for s in sizes):
        return None
    chunk = 1 << chunk_level
    bounds = [(start, min(start + chunk, size)) for start in range(0, size, chunk)]
    wanted = [[s for s in sizes if start < s <= end] for start, end in bounds]
    workers = (os.cpu_count() or 1) if workers is None else workers
    results: list[ChunkResult]
    if sqlite_path is not None and len(bounds) > 1 and workers > 1:
        jobs = [(start, end, want) for (start, end), want in zip(bounds, wanted, strict=True)]
        parallel = _in_workers(sqlite_path, jobs, min(workers, len(bounds)))
        if parallel is None:
            return None
        results = parallel
    else:
        results = []
        for (start, end), want in zip(bounds, wanted, strict=True):
            results.append(check_chunk(query, dialect, mark, start, end, want))
            if not results[-1].ok:
                return None

    frontier = Frontier()
    above: dict[tuple[int, int], bytes] = {}
    roots: dict[int, bytes] = {}
    previous = "0" * 64
    for (_, end), want, result in zip(bounds, wanted, results, strict=True):
        if not result.ok or result.first_prev != previous:
            return None
        for s in want:
            roots[s] = Frontier(s, frontier.edge + result.edges[s]).root()
        for level, digest in result.edges[end]:
            for completed_level, index, node in frontier.push_subtree(level, digest):
                above[(completed_level, index)] = node
        previous = result.last_hash
    stored_above = {(int(level), int(index)): bytes.fromhex(str(digest)) for level, index, digest in query(
        f'SELECT level, "index", hash FROM audit_tree_nodes WHERE level > {mark}', (chunk_level,)).fetchall()}
    if stored_above != above:
        return None
    return BulkResult(frontier.root() if size else None, roots)


if __name__ == "__main__":
    _worker_main()
