"""Proof documents: what the API hands out and what ``mediagate audit verify-proof`` checks with no database.

An inclusion document carries the entry itself, so the verifier recomputes the leaf hash from the entry's content
(``audit.chain.entry_hash``) rather than trusting a hash it was given, then walks the proof to the root of a
signed checkpoint. A consistency document carries two checkpoints' sizes and the proof that the older tree is a
prefix of the newer one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.base import AuditEntry
from audit.chain import entry_hash
from audit.checkpoint import Checkpoint, CheckpointError, verify_checkpoint
from audit.merkle import ProofError, verify_consistency, verify_inclusion


def entry_document(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "seq": entry.seq, "ts": entry.ts, "tenant": entry.tenant, "kind": entry.kind,
        "payload": dict(entry.payload), "prev_hash": entry.prev_hash, "hash": entry.hash,
    }


def inclusion_document(
    entry: AuditEntry, tree_size: int, root: bytes, path: Sequence[bytes], checkpoint: Checkpoint | None
) -> dict[str, Any]:
    return {
        "kind": "inclusion",
        "entry": entry_document(entry),
        "leaf_index": entry.seq - 1,
        "tree_size": tree_size,
        "root_hash": root.hex(),
        "inclusion_proof": [h.hex() for h in path],
        "checkpoint": checkpoint.as_dict() if checkpoint else None,
    }


def consistency_document(old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: Sequence[bytes],
                         old_checkpoint: Checkpoint | None, new_checkpoint: Checkpoint | None) -> dict[str, Any]:
    return {
        "kind": "consistency", "from": old_size, "to": new_size, "from_root": old_root.hex(),
        "to_root": new_root.hex(), "consistency_proof": [h.hex() for h in path],
        "from_checkpoint": old_checkpoint.as_dict() if old_checkpoint else None,
        "to_checkpoint": new_checkpoint.as_dict() if new_checkpoint else None,
    }


def _hexes(doc: Mapping[str, Any], key: str) -> list[bytes]:
    values = doc.get(key)
    if not isinstance(values, list):
        raise ProofError(f"`{key}` must be a list of hex hashes")
    try:
        return [bytes.fromhex(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise ProofError(f"`{key}` holds something that is not a hex hash") from exc


def verify_inclusion_document(doc: Mapping[str, Any], checkpoint_note: str, public: Ed25519PublicKey
                              ) -> Checkpoint:
    """Raise ``ProofError``/``CheckpointError`` unless the entry is in the log the signed checkpoint commits to."""
    checkpoint = verify_checkpoint(checkpoint_note, public)
    entry = doc.get("entry")
    if doc.get("kind") != "inclusion" or not isinstance(entry, Mapping):
        raise ProofError("not an inclusion proof document")
    try:
        recomputed = entry_hash(seq=entry["seq"], id=entry["id"], ts=entry["ts"], tenant=entry["tenant"],
                                kind=entry["kind"], payload=entry["payload"], prev_hash=entry["prev_hash"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"the entry in the document is incomplete: {exc}") from exc
    if recomputed != entry.get("hash"):
        raise ProofError("the entry's content does not hash to the entry's hash: it was altered")
    if doc.get("tree_size") != checkpoint.size:
        raise ProofError(f"the proof is for tree size {doc.get('tree_size')}, the checkpoint for {checkpoint.size}")
    verify_inclusion(int(entry["seq"]) - 1, checkpoint.size, bytes.fromhex(recomputed),
                     _hexes(doc, "inclusion_proof"), checkpoint.root)
    return checkpoint


def verify_consistency_document(doc: Mapping[str, Any], old_note: str, new_note: str, public: Ed25519PublicKey
                                ) -> tuple[Checkpoint, Checkpoint]:
    """Raise unless the older signed checkpoint's tree is a prefix of the newer one's."""
    old, new = verify_checkpoint(old_note, public), verify_checkpoint(new_note, public)
    if doc.get("kind") != "consistency" or (doc.get("from"), doc.get("to")) != (old.size, new.size):
        raise ProofError(f"the proof is not from size {old.size} to size {new.size}")
    verify_consistency(old.size, new.size, old.root, new.root, _hexes(doc, "consistency_proof"))
    return old, new


__all__ = [
    "CheckpointError", "ProofError", "consistency_document", "entry_document", "inclusion_document",
    "verify_consistency_document", "verify_inclusion_document",
]
