"""Signed checkpoints (signed tree heads) in the C2SP ``tlog-checkpoint`` / ``signed-note`` text format.

A checkpoint commits to the whole log at one size::

    mediagate.dev/audit          <- origin
    1234                         <- tree size
    3q2+7w...=                   <- base64 Merkle root (RFC 9162)
    time 2026-11-25T21:00:00Z    <- extension line (optional)

    — mediagate.dev/audit Abcd...<base64(key hash || Ed25519 signature)>

The signature covers the text above the blank line. The key hash is the first 4 bytes of
SHA-256(name || "\\n" || 0x01 || public key), as in golang.org/x/mod/sumdb/note, so any signed-note verifier
(Go's, sigstore's) can check it. A verifier holding an earlier checkpoint and a consistency proof can tell whether
the log was rewritten since; no database access is needed for either check.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ORIGIN = "mediagate.dev/audit"
ALG_ED25519 = b"\x01"
SIGNATURE_DASH = "\u2014"  # EM DASH, as the signed-note format requires


class CheckpointError(ValueError):
    """A checkpoint that does not parse or whose signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: str
    note: str  # the whole signed note, as written and as verified

    def as_dict(self) -> dict[str, object]:
        return {"origin": self.origin, "tree_size": self.size, "root_hash": self.root.hex(), "time": self.time,
                "note": self.note}


def key_hash(name: str, public: Ed25519PublicKey) -> bytes:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + raw).digest()[:4]


def sign_checkpoint(size: int, root: bytes, key: Ed25519PrivateKey, *, origin: str = ORIGIN,
                    time: datetime | None = None) -> Checkpoint:
    when = (time or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\ntime {when}\n"
    signature = key.sign(body.encode())
    stamp = base64.b64encode(key_hash(origin, key.public_key()) + signature).decode()
    note = f"{body}\n{SIGNATURE_DASH} {origin} {stamp}\n"
    return Checkpoint(origin, size, root, when, note)


def parse_checkpoint(note: str) -> tuple[Checkpoint, list[tuple[str, bytes]]]:
    """Split a signed note into its checkpoint and its (name, key hash + signature) lines, without verifying."""
    body, sep, signatures = note.partition("\n\n")
    if not sep or not body:
        raise CheckpointError("not a signed note: no blank line between the checkpoint and its signatures")
    lines = body.split("\n")
    if len(lines) < 3:
        raise CheckpointError("a checkpoint needs an origin, a tree size and a root hash")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit():
        raise CheckpointError(f"tree size {size_text!r} is not a number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError as exc:
        raise CheckpointError("the root hash is not base64") from exc
    if len(root) != 32:
        raise CheckpointError(f"the root hash has {len(root)} bytes, not 32")
    time = next((line.removeprefix("time ") for line in lines[3:] if line.startswith("time ")), "")
    sigs = []
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != SIGNATURE_DASH:
            raise CheckpointError(f"malformed signature line {line!r}")
        try:
            sigs.append((parts[1], base64.b64decode(parts[2], validate=True)))
        except ValueError as exc:
            raise CheckpointError(f"signature of {parts[1]!r} is not base64") from exc
    return Checkpoint(origin, int(size_text), root, time, note), sigs


def verify_checkpoint(note: str, public: Ed25519PublicKey, *, origin: str = ORIGIN) -> Checkpoint:
    """The checkpoint, if ``note`` carries a valid signature of ``public`` under ``origin``; else raises."""
    checkpoint, sigs = parse_checkpoint(note)
    if checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint of origin {checkpoint.origin!r}, expected {origin!r}")
    body = note.partition("\n\n")[0] + "\n"
    expected = key_hash(origin, public)
    for name, blob in sigs:
        if name == origin and blob[:4] == expected:
            try:
                public.verify(blob[4:], body.encode())
            except InvalidSignature as exc:
                raise CheckpointError("the checkpoint signature does not verify with the given public key") from exc
            return checkpoint
    raise CheckpointError("the checkpoint carries no signature by the given public key")
