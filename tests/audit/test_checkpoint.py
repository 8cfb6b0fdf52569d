"""Signed checkpoints in the C2SP signed-note format."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.checkpoint import CheckpointError, key_hash, parse_checkpoint, sign_checkpoint, verify_checkpoint

ROOT = hashlib.sha256(b"root").digest()


def test_round_trip_and_format() -> None:
    key = Ed25519PrivateKey.generate()
    cp = sign_checkpoint(42, ROOT, key)
    body, signatures = cp.note.split("\n\n")
    assert body.split("\n")[:3] == ["mediagate.dev/audit", "42", base64.b64encode(ROOT).decode()]
    assert signatures.startswith("\u2014 mediagate.dev/audit ")
    assert verify_checkpoint(cp.note, key.public_key()) == cp


def test_key_hash_is_the_signed_note_key_id() -> None:
    """golang.org/x/mod/sumdb/note: SHA-256(name || "\\n" || 0x01 || public key)[:4]."""
    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert key_hash("example.com/log", key) == hashlib.sha256(b"example.com/log\n\x01" + raw).digest()[:4]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda n: n.replace("\n42\n", "\n43\n"), "does not verify"),
        (lambda n: n.replace("mediagate.dev/audit\n", "evil.example/log\n", 1), "origin"),
        (lambda n: n.split("\n\n")[0], "no blank line"),
        (lambda n: n.replace("\n42\n", "\nxx\n"), "not a number"),
        (lambda n: n.split("\u2014")[0] + "garbage line\n", "malformed signature line"),
    ],
)
def test_tampered_notes_are_refused(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    key = Ed25519PrivateKey.generate()
    with pytest.raises(CheckpointError, match=message):
        verify_checkpoint(edit(sign_checkpoint(42, ROOT, key).note), key.public_key())


def test_parse_keeps_the_time_extension() -> None:
    cp, sigs = parse_checkpoint(sign_checkpoint(1, ROOT, Ed25519PrivateKey.generate()).note)
    assert cp.time.endswith("Z") and len(sigs) == 1
