"""Real c2pa signing and reading of PNG and JPEG images, with keys from ``init_signing``."""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from audit.c2pa_manifest import (
    PROVENANCE_LABEL,
    C2paSigner,
    ManifestError,
    ManifestReader,
    ProvenanceClaims,
    _report,
    read_manifest,
    sign_image,
)
from audit.keys import KeyMaterialError, SigningPaths, init_signing, load_certificates, load_private_key

MIMES = {"PNG": "image/png", "JPEG": "image/jpeg"}

MakeImage = Callable[..., bytes]


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> SigningPaths:
    return init_signing(tmp_path_factory.mktemp("ours"))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> SigningPaths:
    return init_signing(tmp_path_factory.mktemp("foreign"), common_name="someone else")


@pytest.fixture(scope="module")
def signer(ours: SigningPaths) -> Iterator[C2paSigner]:
    with C2paSigner.from_directory(ours.directory) as s:
        yield s


@pytest.fixture(scope="module")
def anchors(ours: SigningPaths) -> bytes:
    return ours.ca_cert.read_bytes()


@pytest.fixture
def make_image() -> MakeImage:
    def make(fmt: str = "PNG", size: int = 512) -> bytes:
        ramp = np.linspace(0, 255, size, dtype=np.uint8)
        pixels = np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)),
                           np.full((size, size), 96, np.uint8)], axis=-1)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format=fmt)
        return out.getvalue()
    return make


@pytest.fixture
def make_claims() -> Callable[..., ProvenanceClaims]:
    def make(**overrides: str) -> ProvenanceClaims:
        fields = {"model": "demo-tiny", "model_revision": "rev-3f2a", "policy_revision": "2026-11-25.1",
                  "audit_entry_id": "ae_01", "audit_entry_hash": "ab" * 32, "tenant": "acme",
                  "watermark_id": "00ff10a7"}
        return ProvenanceClaims(**{**fields, **overrides})
    return make


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_signed_image_reads_back_trusted_with_its_claims(fmt: str, signer: C2paSigner, anchors: bytes,
                                                         make_image: MakeImage, make_claims: Any) -> None:
    claims = make_claims()
    original = make_image(fmt)
    signed = sign_image(original, MIMES[fmt], claims, signer)
    report = read_manifest(signed, MIMES[fmt], anchors)
    assert (report.present, report.valid, report.trusted, report.trust_checked) == (True, True, True, True)
    assert report.errors == ()
    assert report.claims == claims
    assert report.ai_generated
    assert report.signer_subject == "mediagate gateway C2PA signer"
    assert report.manifest_label and report.manifest_label.startswith("urn:c2pa:")
    # The manifest rides along in metadata: the pixels are the ones we were given.
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(signed))), np.asarray(Image.open(io.BytesIO(original))))


def test_manifest_asserts_ai_creation_and_carries_no_thumbnail(signer: C2paSigner, make_image: MakeImage,
                                                               make_claims: Any) -> None:
    signed = signer.sign(make_image(), "image/png", make_claims())
    with c2pa.Reader("image/png", io.BytesIO(signed)) as reader:
        store = json.loads(reader.json())
    manifest = store["manifests"][store["active_manifest"]]
    assert "thumbnail" not in manifest
    (actions,) = [a["data"]["actions"] for a in manifest["assertions"] if a["label"].startswith("c2pa.actions")]
    assert actions == [{"action": "c2pa.created",
                        "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
                        "softwareAgent": {"name": "demo-tiny", "version": "rev-3f2a"}}]


def test_without_anchors_signature_is_checked_but_trust_is_not(signer: C2paSigner, make_image: MakeImage,
                                                               make_claims: Any) -> None:
    report = read_manifest(signer.sign(make_image(), "image/png", make_claims()), "image/png", None)
    assert (report.valid, report.trusted, report.trust_checked, report.errors) == (True, False, False, ())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_unsigned_and_stripped_images_have_no_manifest(fmt: str, signer: C2paSigner, anchors: bytes,
                                                       make_image: MakeImage, make_claims: Any) -> None:
    assert read_manifest(make_image(fmt), MIMES[fmt], anchors).present is False
    signed = signer.sign(make_image(fmt), MIMES[fmt], make_claims())
    resaved = io.BytesIO()
    Image.open(io.BytesIO(signed)).save(resaved, format=fmt)  # Pillow keeps the pixels, drops the manifest
    report = read_manifest(resaved.getvalue(), MIMES[fmt], anchors)
    assert (report.present, report.valid, report.claims) == (False, False, None)


def _tamper_png(data: bytes) -> bytes:
    """Flip one bit of compressed pixel data and repair the chunk CRC, so the file stays a well-formed PNG."""
    pos = 8
    while True:
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            body = bytearray(data[pos + 8:pos + 8 + length])
            body[length // 2] ^= 0x01
            crc = struct.pack(">I", zlib.crc32(kind + body))
            return data[:pos + 8] + bytes(body) + crc + data[pos + 12 + length:]
        pos += 12 + length


def _tamper_jpeg(data: bytes) -> bytes:
    """Flip one bit of entropy-coded scan data (after the last SOS marker), avoiding 0xFF bytes and stuffing."""
    i = data.rfind(b"\xff\xda") + 300
    while data[i] in (0xFF, 0xFE) or data[i - 1] == 0xFF:
        i += 1
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


@pytest.mark.parametrize(("fmt", "tamper"), [("PNG", _tamper_png), ("JPEG", _tamper_jpeg)])
def test_pixel_tampering_after_signing_breaks_the_hard_binding(fmt: str, tamper: Callable[[bytes], bytes],
                                                               signer: C2paSigner, anchors: bytes,
                                                               make_image: MakeImage, make_claims: Any) -> None:
    signed = signer.sign(make_image(fmt), MIMES[fmt], make_claims())
    report = read_manifest(tamper(signed), MIMES[fmt], anchors)
    assert report.present and not report.valid and not report.trusted
    assert "assertion.dataHash.mismatch" in report.errors
    assert report.claims == make_claims()  # still readable, but vouched for by nothing


def test_someone_elses_ca_is_valid_but_not_trusted(foreign: SigningPaths, ours: SigningPaths, anchors: bytes,
                                                   make_image: MakeImage, make_claims: Any) -> None:
    with C2paSigner.from_directory(foreign.directory) as theirs:
        signed = theirs.sign(make_image(), "image/png", make_claims())
    report = read_manifest(signed, "image/png", anchors)
    assert (report.present, report.valid, report.trusted) == (True, True, False)
    assert report.errors == ("signingCredential.untrusted",)
    assert report.signer_subject == "someone else C2PA signer"
    # Trusting both anchors trusts it; the anchors decide, not the image.
    both = read_manifest(signed, "image/png", anchors + foreign.ca_cert.read_bytes())
    assert both.trusted


@pytest.mark.parametrize(
    ("data", "mime", "message"),
    [
        (b"", "image/png", "are not a image/png image"),
        (b"hello, world" * 10, "image/png", "are not a image/png image"),
        (b"\xff\xd8\xff\xe0" + bytes(100), "image/png", "are not a image/png image"),  # a JPEG called a PNG
        (b"GIF89a" + bytes(100), "image/gif", "`mime` must be one of"),
    ],
)
def test_non_images_and_unsupported_types_are_refused(data: bytes, mime: str, message: str, anchors: bytes,
                                                      signer: C2paSigner, make_claims: Any) -> None:
    with pytest.raises(ManifestError, match=message):
        read_manifest(data, mime, anchors)
    with pytest.raises(ManifestError, match=message):
        signer.sign(data, mime, make_claims())


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_signed_png_is_a_manifest_error(keep: float, signer: C2paSigner, anchors: bytes,
                                                  make_image: MakeImage, make_claims: Any) -> None:
    signed = signer.sign(make_image(), "image/png", make_claims())
    with pytest.raises(ManifestError, match=r"c2pa could not read the image/png image .*PNG out of range"):
        read_manifest(signed[:int(len(signed) * keep)], "image/png", anchors)


def test_corrupt_manifest_store_is_a_manifest_error(signer: C2paSigner, anchors: bytes, make_image: MakeImage,
                                                    make_claims: Any) -> None:
    signed = bytearray(signer.sign(make_image(), "image/png", make_claims()))
    signed[signed.index(b"caBX") + 8] ^= 0xFF  # inside the JUMBF superbox header
    with pytest.raises(ManifestError, match="c2pa could not read"):
        read_manifest(bytes(signed), "image/png", anchors)


def test_damaged_bytes_give_a_report_or_a_manifest_error_never_anything_else(
        signer: C2paSigner, anchors: bytes, make_image: MakeImage, make_claims: Any) -> None:
    signed = signer.sign(make_image(size=64), "image/png", make_claims())
    start, end = signed.index(b"caBX"), signed.index(b"IDAT")  # the manifest store
    outcomes = set()
    with ManifestReader(anchors) as reader:
        for offset in np.random.default_rng(7).integers(start, end, size=80):
            damaged = bytearray(signed)
            damaged[offset] ^= 0x5A
            try:
                outcomes.add("valid" if reader.read(bytes(damaged), "image/png").valid else "invalid")
            except ManifestError:
                outcomes.add("error")
    assert {"invalid", "error"} <= outcomes  # and nothing but ManifestError escaped


@pytest.mark.parametrize("store", [{}, {"manifests": [], "validation_results": "x"},
                                   {"active_manifest": 3, "manifests": {"3": {"assertions": [1, {"label": None}]}}}])
def test_reports_survive_oddly_shaped_stores(store: dict[str, Any]) -> None:
    report = _report(store, trust_checked=True)
    assert report.present and not report.valid and not report.trusted and report.claims is None


def test_malformed_provenance_assertion_is_reported_not_trusted_blindly(signer: C2paSigner, anchors: bytes,
                                                                        make_image: MakeImage) -> None:
    bad = [{"label": PROVENANCE_LABEL, "data": {"schema": 1, "model": "demo-tiny"}}]
    signed = signer._sign(make_image(), "image/png", {"name": "test"}, bad)
    report = read_manifest(signed, "image/png", anchors)
    assert report.trusted and report.claims is None
    assert report.errors == (f"{PROVENANCE_LABEL}.malformed",)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [("audit_entry_hash", "ab" * 31, "64 lowercase hex"), ("audit_entry_hash", "AB" * 32, "64 lowercase hex"),
     ("watermark_id", "xyz", "lowercase hex"), ("tenant", "", "non-empty string")],
)
def test_claims_validate_their_fields(field: str, value: str, rule: str, make_claims: Any) -> None:
    with pytest.raises(ValueError, match=rf"`{field}` must be .*{rule}.* but is {value!r}"):
        make_claims(**{field: value})


def test_one_signer_serves_many_threads(signer: C2paSigner, anchors: bytes, make_image: MakeImage,
                                        make_claims: Any) -> None:
    images = {"PNG": make_image("PNG", 128), "JPEG": make_image("JPEG", 128)}
    reader = ManifestReader(anchors)

    def round_trip(i: int) -> bool:
        fmt = "PNG" if i % 2 else "JPEG"
        claims = make_claims(audit_entry_id=f"ae_{i}")
        report = reader.read(signer.sign(images[fmt], MIMES[fmt], claims), MIMES[fmt])
        return report.trusted and report.claims == claims

    with reader, ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(round_trip, range(40)))


# --- what c2pa-python 0.38.1 accepts as a signing certificate -------------------------------------------------------

def _leaf(ours: SigningPaths, *, self_signed: bool = False, ca: bool = False, eku: bool = True, aki: bool = True,
          expired: bool = False) -> tuple[bytes, bytes]:
    """A P-256 certificate + key, issued by our CA unless ``self_signed``, with one deviation from the profile."""
    (ca_cert,) = load_certificates(ours.ca_cert)
    ca_key = load_private_key(ours.ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test leaf")])
    issuer_name, issuer_key = (name, key) if self_signed else (ca_cert.subject, ca_key)
    now = dt.datetime.now(dt.UTC) - (dt.timedelta(days=30) if expired else dt.timedelta(0))
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, ca, ca, False, False), critical=True)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    if aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.mark.parametrize(
    ("deviation", "c2pa_error"),
    [
        # DESIGN.md's "self-signed leaf refused" holds for a self-signed CA certificate (what `openssl req -x509`
        # makes); a self-signed end-entity certificate is accepted (next test).
        ({"self_signed": True, "ca": True}, "Signature: the certificate was self-signed"),
        ({"eku": False}, "Signature: the certificate is invalid"),
        ({"aki": False}, "Signature: the certificate is invalid"),
        ({"expired": True}, "Signature: the certificate was not valid at time of signing"),
    ],
)
def test_c2pa_refuses_certificates_outside_its_profile(deviation: dict[str, bool], c2pa_error: str,
                                                       ours: SigningPaths, make_image: MakeImage,
                                                       make_claims: Any) -> None:
    chain, key = _leaf(ours, **deviation)
    with C2paSigner(chain, key) as bad, pytest.raises(ManifestError, match=c2pa_error):
        bad.sign(make_image(size=64), "image/png", make_claims())


def test_self_signed_end_entity_signs_but_is_not_trusted(ours: SigningPaths, anchors: bytes,
                                                         make_image: MakeImage, make_claims: Any) -> None:
    chain, key = _leaf(ours, self_signed=True)
    with C2paSigner(chain, key) as self_signed:
        signed = self_signed.sign(make_image(size=64), "image/png", make_claims())
    report = read_manifest(signed, "image/png", anchors)
    assert (report.valid, report.trusted, report.errors) == (True, False, ("signingCredential.untrusted",))


def test_from_directory_fails_at_startup_on_a_refused_certificate(ours: SigningPaths, tmp_path: Path) -> None:
    paths = init_signing(tmp_path)
    chain, key = _leaf(ours, eku=False)
    paths.c2pa_chain.write_bytes(chain)
    paths.c2pa_key.write_bytes(key)
    with pytest.raises(KeyMaterialError, match=rf"{paths.c2pa_chain}: c2pa refuses this certificate.*is invalid"):
        C2paSigner.from_directory(tmp_path)


def test_from_directory_refuses_a_key_that_does_not_match_the_certificate(ours: SigningPaths, foreign: SigningPaths,
                                                                          tmp_path: Path) -> None:
    paths = init_signing(tmp_path)
    paths.c2pa_key.write_bytes(foreign.c2pa_key.read_bytes())
    with pytest.raises(KeyMaterialError, match="does not belong to the first certificate"):
        C2paSigner.from_directory(tmp_path)


def test_from_directory_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match=r"c2pa-chain\.pem: no such file"):
        C2paSigner.from_directory(tmp_path)


def test_unusable_trust_anchors_are_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match="trust anchors"):
        ManifestReader(b"not a certificate")
