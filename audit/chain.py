"""Canonical encoding and hashing of audit entries.

Entries are encoded with the JSON Canonicalization Scheme (RFC 8785), so the hash does not depend on key order,
whitespace or number formatting, and any verifier in any language can recompute it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import rfc8785

GENESIS_HASH = "0" * 64

# RFC 6962 section 2.1: leaf hashes are SHA-256(0x00 || leaf), interior nodes SHA-256(0x01 || left || right).
# Hashing each entry with the leaf prefix lets the same value serve as a Merkle leaf for checkpoints and proofs.
LEAF_PREFIX = b"\x00"


def _check_finite(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"audit payload value at {path} is {value}; only finite numbers can be canonicalised")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_finite(item, f"{path}[{i}]")


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 bytes of ``obj``. NaN and infinities are refused (JSON has no spelling for them)."""
    _check_finite(obj, "$")
    return rfc8785.dumps(obj)


def entry_hash(
    *, seq: int, id: str, ts: str, tenant: str, kind: str, payload: Mapping[str, Any], prev_hash: str
) -> str:
    """Hex SHA-256 of the leaf-prefixed canonical entry. Including ``prev_hash`` chains each entry to the last."""
    body = {
        "seq": seq, "id": id, "ts": ts, "tenant": tenant, "kind": kind, "payload": payload, "prev_hash": prev_hash,
    }
    return hashlib.sha256(LEAF_PREFIX + canonical_json(body)).hexdigest()
