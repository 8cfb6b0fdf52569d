"""Canonical encoding and hashing of audit entries.

Entries are encoded with the JSON Canonicalization Scheme (RFC 8785), so the hash does not depend on key order,
whitespace or number formatting, and any verifier in any language can recompute it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import rfc8785

GENESIS_HASH = "0" * 64

# RFC 6962 section 2.1: leaf hashes are SHA-256(0x00 || leaf), interior nodes SHA-256(0x01 || left || right).
# Hashing each entry with the leaf prefix lets the same value serve as a Merkle leaf for checkpoints and proofs.
LEAF_PREFIX = b"\x00"


_SAFE_INT = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: larger integers are refused, as `rfc8785` does




class _Slow(Exception):
    """The fast encoder cannot vouch for this value; the reference encoder decides."""


def _check_finite(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"audit payload value at {path} is {value}; only finite numbers can be canonicalised")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_finite(item, f"{path}[{i}]")


def _jcs_ready(value: Any) -> Any:
    """``value`` with every whole float made the int it equals, or ``_Slow`` where orjson's bytes could differ.

    orjson and ECMAScript's Number-to-String (which RFC 8785 adopts) agree on the digits of every float, and on
    the spelling of those in [1e-4, 1e16) that are not whole numbers; whole floats below 2**53 are spelled as the
    integer they equal. Anything else (other floats, integers beyond 2**53, non-ASCII keys, whose UTF-16 order can
    differ from Python's, types JSON lacks) raises ``_Slow``. Returns ``value`` itself when nothing changed.
    """
    kind = type(value)
    if kind is dict:
        try:
            if not "".join(value).isascii():  # also refuses keys that are not strings (TypeError)
                raise _Slow
        except TypeError:
            raise _Slow from None
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            # the leaves most payloads are made of, checked inline: a call per value was most of the encoding time
            t = type(item)
            if t is str or t is bool or item is None or (t is int and -_SAFE_INT <= item <= _SAFE_INT):
                continue
            ready = _jcs_ready(item)
            if ready is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = ready
        return value if changed is None else changed
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_SAFE_INT <= value <= _SAFE_INT:
            return value
        raise _Slow
    if kind is float:
        if value.is_integer():
            if -_SAFE_INT <= value <= _SAFE_INT:
                return int(value)
            raise _Slow
        if 1e-4 <= abs(value) < 1e16:
            return value
        raise _Slow  # and NaN, infinities
    if kind is list or kind is tuple:
        items = [_jcs_ready(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    raise _Slow


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 bytes of ``obj``. NaN and infinities are refused (JSON has no spelling for them).

    The common case (ASCII keys, ordinary numbers) goes through ``orjson``, which then writes exactly the RFC 8785
    bytes (``_jcs_ready`` says when; a property test compares the two encoders); everything else through
    ``rfc8785``, the reference. The fast path is about 9x faster on decision payloads (4.5 us against 41 us).
    """
    try:
        return orjson.dumps(_jcs_ready(obj), option=orjson.OPT_SORT_KEYS)
    except (_Slow, orjson.JSONEncodeError):  # e.g. lone surrogates: the reference encoder names the error
        _check_finite(obj, "$")
        return rfc8785.dumps(obj)


@dataclass(frozen=True)
class Canonical:
    """A payload already in canonical form: encode outside a lock, append inside it (``SqlAuditStore.append``)."""

    text: str

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> Canonical:
        return cls(canonical_json(payload if type(payload) is dict else dict(payload)).decode())


def entry_hash(
    *, seq: int, id: str, ts: str, tenant: str, kind: str, payload: Mapping[str, Any], prev_hash: str
) -> str:
    """Hex SHA-256 of the leaf-prefixed canonical entry. Including ``prev_hash`` chains each entry to the last."""
    body = {
        "seq": seq, "id": id, "ts": ts, "tenant": tenant, "kind": kind, "payload": payload, "prev_hash": prev_hash,
    }
    return hashlib.sha256(LEAF_PREFIX + canonical_json(body)).hexdigest()


def _jcs_string(value: str) -> str:
    """RFC 8785 serialisation of a plain ASCII string (what ids, timestamps, tenants and kinds are)."""
    if not value.isascii():
        raise ValueError("not ASCII")
    if value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'  # nothing to escape: the common case, without the encoder's overhead
    return json.dumps(value)  # for ASCII, Python's escaping is exactly JCS's


def entry_hash_from_text(
    *, seq: int, id: str, ts: str, tenant: str, kind: str, payload_text: str, prev_hash: str
) -> str:
    """``entry_hash`` for a payload already in canonical form (its RFC 8785 text), without re-encoding it.

    The envelope's members are written in RFC 8785 key order around the payload text; for the ASCII fields used
    here that is byte-for-byte what ``entry_hash`` hashes (a test checks it), at a fraction of the cost. Anything
    else falls back to the full encoder.
    """
    plain = id + kind + prev_hash + tenant + ts
    if plain.isascii() and plain.isprintable() and '"' not in plain and "\\" not in plain:
        # nothing to escape in any of them (the common case): the members are written as they are
        envelope = (f'{{"id":"{id}","kind":"{kind}","payload":{payload_text},"prev_hash":"{prev_hash}",'
                    f'"seq":{int(seq)},"tenant":"{tenant}","ts":"{ts}"}}')
    else:
        try:
            envelope = (f'{{"id":{_jcs_string(id)},"kind":{_jcs_string(kind)},"payload":{payload_text},'
                        f'"prev_hash":{_jcs_string(prev_hash)},"seq":{int(seq)},"tenant":{_jcs_string(tenant)},'
                        f'"ts":{_jcs_string(ts)}}}')
        except ValueError:
            return entry_hash(seq=seq, id=id, ts=ts, tenant=tenant, kind=kind, payload=json.loads(payload_text),
                              prev_hash=prev_hash)
    return hashlib.sha256(LEAF_PREFIX + envelope.encode()).hexdigest()
