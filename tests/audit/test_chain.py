"""Canonical JSON (RFC 8785) and the leaf-prefixed entry hash."""

from __future__ import annotations

import hashlib
import math

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.chain import GENESIS_HASH, Canonical, canonical_json, entry_hash, entry_hash_from_text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": 2}, b'{"a":2,"b":1}'),  # keys sorted
        ({"x": 1.0}, b'{"x":1}'),  # integral floats lose the fraction
        ({"x": 1e21}, b'{"x":1e+21}'),  # ECMAScript number formatting
        ({"x": 0.1}, b'{"x":0.1}'),
        ({"s": "é\u2028"}, '{"s":"é\u2028"}'.encode()),  # no escaping of non-ASCII
        ({"n": [None, True, False]}, b'{"n":[null,true,false]}'),
        ({"nested": {"z": {}, "a": []}}, b'{"nested":{"a":[],"z":{}}}'),
    ],
)
def test_canonical_json_vectors(value: object, expected: bytes) -> None:
    assert canonical_json(value) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_with_their_path(bad: float) -> None:
    with pytest.raises(ValueError, match=r"\$\.images\[1\]\.score"):
        canonical_json({"images": [{"score": 0.1}, {"score": bad}]})


def test_entry_hash_is_leaf_prefixed_sha256_of_the_canonical_entry() -> None:
    fields = {"seq": 1, "id": "ae_x", "ts": "2026-11-24T00:00:00.000000+00:00", "tenant": "t", "kind": "k",
              "payload": {"b": 2, "a": 1}, "prev_hash": GENESIS_HASH}
    expected = hashlib.sha256(b"\x00" + canonical_json(fields)).hexdigest()
    assert entry_hash(**fields) == expected  # type: ignore[arg-type]
    # Without the 0x00 prefix the value would differ: the prefix is part of the contract (RFC 6962 leaf).
    assert entry_hash(**fields) != hashlib.sha256(canonical_json(fields)).hexdigest()  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["seq", "id", "ts", "tenant", "kind", "payload", "prev_hash"])
def test_every_field_is_covered_by_the_hash(field: str) -> None:
    fields: dict = {"seq": 1, "id": "ae_x", "ts": "t0", "tenant": "t", "kind": "k", "payload": {"a": 1},
                    "prev_hash": GENESIS_HASH}
    changed = dict(fields)
    changed[field] = {"a": 2} if field == "payload" else (2 if field == "seq" else "other")
    assert entry_hash(**fields) != entry_hash(**changed)


@pytest.mark.parametrize(
    ("tenant", "kind", "payload"),
    [
        ("demo", "generation.decided", {"b": [1, 2.5, None, True], "a": {"z": "x", "é": "ü\u2028"}}),
        ("t-1_2", "k", {}),
        ("tenant with \"quotes\" and \\ slashes", "k\n", {"n": 1e21, "m": -0.0, "s": "\u0007"}),
        ("t\u00e9nant", "k", {"x": 1}),  # not ASCII: the full encoder is used
    ],
)
def test_fast_envelope_hash_equals_the_full_canonical_hash(tenant: str, kind: str, payload: dict) -> None:
    text = canonical_json(payload).decode()
    fields = {"seq": 42, "id": "ae_x", "ts": "2026-11-25T00:00:00.000000+00:00", "tenant": tenant, "kind": kind,
              "prev_hash": "0" * 64}
    assert entry_hash_from_text(payload_text=text, **fields) == entry_hash(payload=payload, **fields)


_json_values = st.recursive(
    st.none() | st.booleans() | st.text()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 1.0, 1e-4, 9.9999e-5, 1e16, 1e21, 1e-7, 123456789.125, 2.0**53, 5e-324]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6) | st.sampled_from(["a", "\U0001f600", "\ue000", "é"]), children,
                      max_size=4),
    max_leaves=25,
)


@settings(max_examples=600, derandomize=True)
@given(_json_values)
def test_fast_encoder_writes_exactly_what_the_reference_encoder_writes(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)  # type: ignore[arg-type]
    except rfc8785.CanonicalizationError:
        with pytest.raises((rfc8785.CanonicalizationError, ValueError)):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@pytest.mark.parametrize("value", [{"big": 2**53}, {"key": "\ud800"}, {1: "non-string key"}, {"x": {1, 2}}])
def test_what_the_reference_encoder_refuses_is_refused(value: object) -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_json(value)


def test_canonical_payload_is_the_canonical_text() -> None:
    assert Canonical.of({"b": 1.0, "a": "x"}).text == '{"a":"x","b":1}'
