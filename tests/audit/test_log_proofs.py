"""The stored Merkle tree, proofs and checkpoints, on SQLite and PostgreSQL; verify() against outside checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session

from audit.checkpoint import sign_checkpoint
from audit.merkle import root_from_leaves, verify_consistency, verify_inclusion
from audit.sql_store import SqlAuditStore


def leaves(engine: Any, store: SqlAuditStore) -> list[bytes]:
    with Session(engine) as s:
        return [bytes.fromhex(e.hash) for e in store.list(s, limit=10_000)]


def test_stored_tree_gives_rfc9162_roots_and_proofs(make_store: Callable[..., Any]) -> None:
    engine, store, _ = make_store(entries=37)
    hashes = leaves(engine, store)
    with Session(engine) as s:
        assert store.size(s) == 37
        for size in (1, 2, 3, 8, 13, 32, 37):
            root = store.root(s, size)
            assert root == root_from_leaves(hashes[:size])
            for seq in range(1, size + 1):
                verify_inclusion(seq - 1, size, hashes[seq - 1], store.inclusion_proof(s, seq, size), root)
        for old in (1, 5, 16, 31):
            verify_consistency(old, 37, root_from_leaves(hashes[:old]), root_from_leaves(hashes),
                               store.consistency_proof(s, old, 37))


def test_verify_with_checkpoints_inside_and_outside_the_database(make_store: Callable[..., Any]) -> None:
    engine, store, raw = make_store(entries=12)
    key = Ed25519PrivateKey.generate()
    with Session(engine) as s:
        kept = sign_checkpoint(12, store.root(s, 12), key)
        store.add_checkpoint(s, size=12, root=kept.root, note=kept.note)
        s.commit()
        report = store.verify(s, public_key=key.public_key(), external=[kept.note])
    assert report.ok and report.checked == 12 and report.checkpoints_verified == 2
    assert report.root == kept.root.hex()

    conn = raw()  # an attacker removes the last three entries
    conn.execute("DELETE FROM audit_entries WHERE seq > 9")
    conn.commit()
    with Session(engine) as s:
        assert "has no entries under it" in (store.verify(s).reason or "")  # the stored tree still remembers them
    # A careful attacker also removes the subtrees those entries completed, and the stored checkpoint.
    conn.execute('DELETE FROM audit_tree_nodes WHERE ("index" + 1) * (1 << level) > 9')
    conn.execute("DELETE FROM audit_checkpoints")
    conn.commit()
    conn.close()
    with Session(engine) as s:
        assert store.verify(s).ok  # the database alone cannot tell any more
        report = store.verify(s, public_key=key.public_key(), external=[kept.note])
    assert not report.ok
    assert "has 9 entries but the checkpoint #1 given commits to 12" in (report.reason or "")


def test_a_rebuilt_database_does_not_match_the_checkpoint_a_verifier_kept(make_store: Callable[..., Any]) -> None:
    engine, store, _ = make_store(entries=6)
    key = Ed25519PrivateKey.generate()
    with Session(engine) as s:
        kept = sign_checkpoint(6, store.root(s, 6), key)
    other_engine, other_store, _ = make_store(entries=8)  # same shape, other history
    with Session(other_engine) as s:
        report = other_store.verify(s, public_key=key.public_key(), external=[kept.note])
    assert not report.ok and report.first_bad_seq == 6
    assert "commits to another root at size 6: the log was rewritten" in (report.reason or "")


def test_a_checkpoint_signed_by_another_key_is_refused(make_store: Callable[..., Any]) -> None:
    engine, store, _ = make_store(entries=3)
    with Session(engine) as s:
        forged = sign_checkpoint(3, store.root(s, 3), Ed25519PrivateKey.generate())
        report = store.verify(s, public_key=Ed25519PrivateKey.generate().public_key(), external=[forged.note])
    assert not report.ok and "no signature by the given public key" in (report.reason or "")


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("UPDATE audit_tree_nodes SET hash = '00' WHERE level = 1 AND \"index\" = 1", "was altered"),
        ("DELETE FROM audit_tree_nodes WHERE level = 2", "is missing"),
    ],
)
def test_verify_checks_the_stored_tree(make_store: Callable[..., Any], statement: str, reason: str) -> None:
    """Proofs are built from stored subtrees; a forged subtree would make forged proofs, so verify checks them."""
    engine, store, raw = make_store(entries=9)
    conn = raw()
    conn.execute(statement)
    conn.commit()
    conn.close()
    with Session(engine) as s:
        report = store.verify(s)
    assert not report.ok and reason in (report.reason or "")
