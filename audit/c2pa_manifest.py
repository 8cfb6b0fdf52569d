"""C2PA Content Credentials for released images: sign with the gateway's certificate, read and verify.

Every manifest asserts AI generation the way the C2PA 2.x "Actions" assertion and the IPTC Digital Source Type
vocabulary spell it: a ``c2pa.actions`` assertion whose ``c2pa.created`` action has ``digitalSourceType``
``trainedAlgorithmicMedia``. A custom assertion (``dev.mediagate.provenance``) ties the image to the gateway's own
records: model and revision, policy bundle revision, the audit entry id and hash, the tenant and the watermark id.

Verification reports three separate facts: a manifest is *present*; it is *valid* (signature and hard binding
match: a changed pixel breaks ``assertion.dataHash``); it is *trusted* (the signing certificate chains to one of the
anchors the caller passed, normally our CA). c2pa-python 0.38.1 (c2pa-rs 0.91.3) with thumbnails off; no network:
remote manifests and OCSP are never fetched, and no timestamp authority is used unless one is configured.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from audit.keys import KeyMaterialError, SigningPaths, load_certificates, load_private_key

PROVENANCE_LABEL = "dev.mediagate.provenance"
PROVENANCE_SCHEMA = 1
NO_WATERMARK = "none"  # the tenant's policy waived the watermark obligation
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
# Magic numbers: PNG (RFC 2083 section 3.1) and JPEG (SOI marker followed by another marker).
SIGNATURES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
_HEX = re.compile(r"[0-9a-f]+")
# Never fetch anything while verifying: a remote-manifest URL inside an uploaded image must not make us call out.
# verify_after_sign is c2pa-rs's default; it is spelled out because c2pa ignores unknown settings keys silently.
_VERIFY = {"remote_manifest_fetch": False, "ocsp_fetch": False, "verify_after_sign": True}


class ManifestError(Exception):
    """An image could not be signed or read at all (unsupported type, not an image, truncated, manifest store
    unparseable). A manifest that parses but fails validation is not an error: it is a report with ``valid=False``."""


@dataclass(frozen=True)
class ProvenanceClaims:
    """What the gateway asserts about one released image, beyond "made by a trained model"."""

    model: str
    model_revision: str
    policy_revision: str
    audit_entry_id: str
    audit_entry_hash: str
    tenant: str
    watermark_id: str

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"`{f.name}` must be a non-empty string but is {value!r}")
        if len(self.audit_entry_hash) != 64 or not _HEX.fullmatch(self.audit_entry_hash):
            raise ValueError(f"`audit_entry_hash` must be 64 lowercase hex digits (SHA-256) "
                             f"but is {self.audit_entry_hash!r}")
        if self.watermark_id != NO_WATERMARK and not _HEX.fullmatch(self.watermark_id):
            raise ValueError(f"`watermark_id` must be lowercase hex (or {NO_WATERMARK!r}) but is {self.watermark_id!r}")

    def to_assertion(self) -> dict[str, Any]:
        return {"schema": PROVENANCE_SCHEMA, **asdict(self)}

    @classmethod
    def from_assertion(cls, data: Any) -> ProvenanceClaims:
        """Parse the custom assertion; ``ValueError`` if it is not one this version wrote."""
        if not isinstance(data, dict) or data.get("schema") != PROVENANCE_SCHEMA:
            raise ValueError(f"{PROVENANCE_LABEL} has no schema {PROVENANCE_SCHEMA}")
        try:
            return cls(**{f.name: data[f.name] for f in fields(cls)})
        except KeyError as exc:
            raise ValueError(f"{PROVENANCE_LABEL} lacks {exc.args[0]!r}") from exc


@dataclass(frozen=True)
class ManifestReport:
    """What verification found. ``errors`` holds the C2PA specification's validation status codes (failures only,
    e.g. ``assertion.dataHash.mismatch``, ``signingCredential.untrusted``): stable across SDKs, unlike messages.
    ``trust_checked`` is False when no anchors were given; ``trusted`` is then always False."""

    present: bool
    valid: bool = False
    trusted: bool = False
    trust_checked: bool = False
    errors: tuple[str, ...] = ()
    claims: ProvenanceClaims | None = None
    ai_generated: bool = False
    signer_subject: str | None = None
    signer_organization: str | None = None
    manifest_label: str | None = None


def _settings(**sections: dict[str, Any]) -> c2pa.Context:
    return c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}, "verify": dict(_VERIFY),
                                   **sections})


class C2paSigner:
    """The gateway's C2PA signing identity: certificate chain + private key, loaded once and reused.

    Thread-safe: one native signer and one settings context serve every call; c2pa-python takes a shared (not
    exclusive) reservation on both for each ``sign``, and each call builds its own ``c2pa.Builder``. ``close`` once
    no call is in flight. Native handles do not survive ``fork``: build it in each worker process.
    """

    def __init__(self, chain_pem: bytes, key_pem: bytes, *, tsa_url: str | None = None) -> None:
        try:
            leaf = x509.load_pem_x509_certificates(chain_pem)[0]
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyMaterialError(f"unreadable C2PA certificate chain or key: {exc}") from exc
        if isinstance(key, ed25519.Ed25519PrivateKey):
            alg = c2pa.C2paSigningAlg.ED25519
        elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            alg = c2pa.C2paSigningAlg.ES256
        else:
            raise KeyMaterialError(f"C2PA signing key must be P-256 (ES256) or Ed25519, not {type(key).__name__}")
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if (leaf.public_key().public_bytes(serialization.Encoding.DER, spki)
                != key.public_key().public_bytes(serialization.Encoding.DER, spki)):
            raise KeyMaterialError("the C2PA private key does not belong to the first certificate of the chain")
        self.subject = leaf.subject.rfc4514_string()
        self.not_valid_after = leaf.not_valid_after_utc
        self._generator = {"name": "mediagate", "version": _version()}
        try:
            self._signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, chain_pem, key_pem, tsa_url))
        except c2pa.C2paError as exc:
            raise KeyMaterialError(f"c2pa refuses the C2PA certificate chain or key: {exc}") from exc
        self._context = _settings()

    @classmethod
    def from_directory(cls, directory: Path, *, tsa_url: str | None = None) -> C2paSigner:
        """Load what ``init_signing`` wrote and sign a probe image, so an unusable certificate (expired, wrong
        profile) fails at startup with its reason rather than on the first release."""
        paths = SigningPaths.in_directory(directory)
        load_certificates(paths.c2pa_chain)
        load_private_key(paths.c2pa_key)
        try:
            signer = cls(paths.c2pa_chain.read_bytes(), paths.c2pa_key.read_bytes(), tsa_url=tsa_url)
        except KeyMaterialError as exc:
            raise KeyMaterialError(f"{paths.c2pa_key} / {paths.c2pa_chain}: {exc}") from exc
        try:
            signer._sign(_probe_png(), "image/png", {"name": "mediagate startup probe"}, [])
        except ManifestError as exc:
            signer.close()
            raise KeyMaterialError(f"{paths.c2pa_chain}: c2pa refuses this certificate: {exc}") from exc
        return signer

    def sign(self, image_bytes: bytes, mime: str, claims: ProvenanceClaims) -> bytes:
        """``image_bytes`` with an embedded, signed manifest asserting AI generation and ``claims``."""
        agent = {"name": claims.model, "version": claims.model_revision}
        return self._sign(image_bytes, mime, agent, [{"label": PROVENANCE_LABEL, "data": claims.to_assertion()}])

    def _sign(self, image_bytes: bytes, mime: str, agent: dict[str, str], extra: list[dict[str, Any]]) -> bytes:
        # c2pa-rs checks its own output before returning it (verify_after_sign): a manifest it would call invalid
        # is never handed back, and claim version 2 requires the first action to be c2pa.created or c2pa.opened.
        created = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": agent}
        assertions = [{"label": "c2pa.actions", "data": {"actions": [created]}}, *extra]
        _check_image(image_bytes, mime)
        manifest = {"claim_generator_info": [self._generator], "assertions": assertions}
        out = io.BytesIO()
        try:
            with c2pa.Builder(manifest, context=self._context) as builder:
                builder.sign(self._signer, mime, io.BytesIO(image_bytes), out)
        except c2pa.C2paError as exc:
            raise ManifestError(f"c2pa could not sign the {mime} image ({len(image_bytes)} bytes): {exc}") from exc
        return out.getvalue()

    def close(self) -> None:
        self._signer.close()
        self._context.close()

    def __enter__(self) -> C2paSigner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def sign_image(image_bytes: bytes, mime: str, claims: ProvenanceClaims, signer: C2paSigner) -> bytes:
    """Embed a signed C2PA manifest in a PNG or JPEG (see ``C2paSigner.sign``)."""
    return signer.sign(image_bytes, mime, claims)


class ManifestReader:
    """Verifies manifests against fixed trust anchors (PEM certificates, normally our ``ca.cert.pem``); reusable
    and thread-safe like ``C2paSigner``. With no anchors, signatures and bindings are checked but not trust."""

    def __init__(self, trust_anchors_pem: bytes | None) -> None:
        self.trust_checked = trust_anchors_pem is not None
        if trust_anchors_pem is None:
            self._context = _settings(verify={**_VERIFY, "verify_trust": False})
            return
        try:
            x509.load_pem_x509_certificates(trust_anchors_pem)
            anchors = trust_anchors_pem.decode("ascii")
            self._context = _settings(verify={**_VERIFY, "verify_trust": True}, trust={"trust_anchors": anchors})
        except (ValueError, c2pa.C2paError) as exc:
            raise ManifestError(f"trust anchors are not usable PEM certificates: {exc}") from exc

    def read(self, image_bytes: bytes, mime: str) -> ManifestReport:
        _check_image(image_bytes, mime)
        try:
            reader = c2pa.Reader.try_create(mime, io.BytesIO(image_bytes), None, self._context)
            if reader is None:
                return ManifestReport(present=False, trust_checked=self.trust_checked)
            with reader:
                store = json.loads(reader.json())
        except (c2pa.C2paError, ValueError) as exc:
            raise ManifestError(f"c2pa could not read the {mime} image ({len(image_bytes)} bytes): {exc}") from exc
        return _report(store, trust_checked=self.trust_checked)

    def close(self) -> None:
        self._context.close()

    def __enter__(self) -> ManifestReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_manifest(image_bytes: bytes, mime: str, trust_anchors_pem: bytes | None) -> ManifestReport:
    """One-off verification; keep a ``ManifestReader`` to verify many images against the same anchors."""
    with ManifestReader(trust_anchors_pem) as reader:
        return reader.read(image_bytes, mime)


def _report(store: dict[str, Any], *, trust_checked: bool) -> ManifestReport:
    # The store is c2pa's JSON rendering of bytes an uploader controls: read it without assuming its shape.
    label = store.get("active_manifest")
    label = label if isinstance(label, str) else ""
    manifest = _dict(_dict(store.get("manifests")).get(label))
    state = store.get("validation_state")
    results = _dict(_dict(store.get("validation_results")).get("activeManifest"))
    errors = [str(_dict(status).get("code")) for status in _list(results.get("failure"))]
    assertions = {_dict(a).get("label"): _dict(a).get("data") for a in _list(manifest.get("assertions"))}
    claims = None
    if PROVENANCE_LABEL in assertions:
        try:
            claims = ProvenanceClaims.from_assertion(assertions[PROVENANCE_LABEL])
        except (ValueError, TypeError):
            errors.append(f"{PROVENANCE_LABEL}.malformed")
    actions = _list(_dict(assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions")).get("actions"))
    signature = _dict(manifest.get("signature_info"))
    return ManifestReport(
        present=True,
        valid=state in ("Valid", "Trusted"),
        trusted=trust_checked and state == "Trusted",
        trust_checked=trust_checked,
        errors=tuple(errors),
        claims=claims,
        ai_generated=any(_dict(a).get("action") == "c2pa.created"
                         and _dict(a).get("digitalSourceType") == TRAINED_ALGORITHMIC_MEDIA for a in actions),
        signer_subject=signature.get("common_name"),
        # c2pa-rs reports the signing certificate's subject O= as "issuer".
        signer_organization=signature.get("issuer"),
        manifest_label=label or None,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _check_image(image_bytes: bytes, mime: str) -> None:
    """Refuse what is not the declared image type; c2pa would otherwise guess another container from the bytes."""
    magic = SIGNATURES.get(mime)
    if magic is None:
        raise ManifestError(f"`mime` must be one of {sorted(SIGNATURES)} but is {mime!r}")
    if not image_bytes.startswith(magic):
        raise ManifestError(f"the {len(image_bytes)} bytes given are not a {mime} image "
                            f"(they start with {image_bytes[:8].hex() or 'nothing'})")


def _probe_png() -> bytes:
    """A 1x1 grey PNG (RFC 2083), built here so the startup probe needs no image library."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return SIGNATURES["image/png"] + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(
        b"IEND", b"")


def _version() -> str:
    try:
        return metadata.version("mediagate")
    except metadata.PackageNotFoundError:
        return "0+unknown"

