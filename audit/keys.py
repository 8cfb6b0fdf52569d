"""Key material for the audit log and for image provenance, created once per deployment by ``init_signing``.

One directory holds three things:

- an Ed25519 key pair that signs audit-log checkpoints (RFC 8032; PEM, PKCS#8 private / SubjectPublicKeyInfo public);
- a small CA (certificate + key) that is the trust anchor verifiers are given;
- a C2PA claim-signing certificate + key issued by that CA (ES256 / P-256, the C2PA 2.x X.509 certificate profile).

What c2pa-python 0.38.1 (c2pa-rs 0.91.3) demands of the signing certificate, as tried: a KeyUsage extension with
digitalSignature (or contentCommitment) and without keyCertSign; an AuthorityKeyIdentifier; the emailProtection EKU
(anyExtendedKeyUsage is refused; so are documentSigning and the C2PA claim-signing OID under default settings: the
latter passes once listed in ``trust.trust_config``, which every verifier would then need too); validity at signing
time; and no ``CA:TRUE`` self-signed certificate ("the certificate was self-signed"). Hence a leaf issued by our CA.

Without a timestamp authority a manifest reads as ``signingCredential.expired`` (invalid) once the leaf expires,
hence the long leaf lifetime. The CA key lives beside the leaf key only because a single gateway is its own issuer;
move it offline once more than one signer exists.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 1826
# Certificates start a little in the past so a verifier whose clock lags ours does not see them as not yet valid.
BACKDATE = dt.timedelta(minutes=5)
PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


class KeyMaterialError(Exception):
    """A key or certificate file is missing, unreadable, corrupt or of the wrong type; the message names the file."""


@dataclass(frozen=True)
class SigningPaths:
    """Where ``init_signing`` puts each file. ``c2pa_chain`` is what a C2PA signer presents: the leaf, then issuers
    up to but excluding the trust anchor (``ca_cert``), which verifiers are given out of band."""

    directory: Path
    checkpoint_key: Path
    checkpoint_public: Path
    ca_cert: Path
    ca_key: Path
    c2pa_chain: Path
    c2pa_key: Path

    @classmethod
    def in_directory(cls, directory: Path) -> SigningPaths:
        d = Path(directory)
        return cls(
            directory=d,
            checkpoint_key=d / "checkpoint-ed25519.key.pem",
            checkpoint_public=d / "checkpoint-ed25519.pub.pem",
            ca_cert=d / "ca.cert.pem",
            ca_key=d / "ca.key.pem",
            c2pa_chain=d / "c2pa-chain.pem",
            c2pa_key=d / "c2pa.key.pem",
        )

    def files(self) -> tuple[Path, ...]:
        return (self.checkpoint_key, self.checkpoint_public, self.ca_cert, self.ca_key, self.c2pa_chain,
                self.c2pa_key)


def init_signing(directory: Path, *, common_name: str = "mediagate gateway", force: bool = False) -> SigningPaths:
    """Create the checkpoint key pair, the CA and the C2PA signing certificate in ``directory``.

    Refuses (``FileExistsError`` naming the files) when any of them exists, unless ``force``: replacing keys
    orphans every checkpoint and manifest signed with the old ones, so it must be asked for. Private keys are 0600.
    """
    paths = SigningPaths.in_directory(directory)
    existing = [str(p) for p in paths.files() if p.exists()]
    if existing and not force:
        raise FileExistsError(f"refusing to overwrite existing key material: {', '.join(existing)} (use force)")
    paths.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    checkpoint = ed25519.Ed25519PrivateKey.generate()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, f"{common_name} CA")
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = _c2pa_certificate(leaf_key.public_key(), f"{common_name} C2PA signer", ca_cert, ca_key)

    writes = [
        (paths.checkpoint_key, _private_pem(checkpoint), PRIVATE_MODE),
        (paths.checkpoint_public, _public_pem(checkpoint.public_key()), PUBLIC_MODE),
        (paths.ca_key, _private_pem(ca_key), PRIVATE_MODE),
        (paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE),
        (paths.c2pa_key, _private_pem(leaf_key), PRIVATE_MODE),
        (paths.c2pa_chain, leaf_cert.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE),
    ]
    for path, data, mode in writes:
        _write(path, data, mode, replace=force)
    return paths


def load_checkpoint_private_key(path: Path) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 key that signs audit-log checkpoints."""
    key = load_private_key(path)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyMaterialError(f"{path}: expected an Ed25519 private key, found {_kind(key)}")
    return key


def load_checkpoint_public_key(path: Path) -> ed25519.Ed25519PublicKey:
    """The Ed25519 key that verifies audit-log checkpoints."""
    key = load_public_key(path)
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise KeyMaterialError(f"{path}: expected an Ed25519 public key, found {_kind(key)}")
    return key


def load_private_key(path: Path) -> ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey:
    """An unencrypted PEM private key of a type the gateway signs with (Ed25519 or EC)."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(f"{path}: not a readable unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"{path}: expected an Ed25519 or EC private key, found {_kind(key)}")
    return key


def load_public_key(path: Path) -> PublicKeyTypes:
    """A PEM public key (SubjectPublicKeyInfo), e.g. the checkpoint verification key given to auditors."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        raise KeyMaterialError(f"{path}: holds a private key where a public key was expected")
    try:
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(f"{path}: not a readable PEM public key ({exc})") from exc


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in file order; at least one."""
    data = _read(path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise KeyMaterialError(f"{path}: not a readable PEM certificate file ({exc})") from exc
    return certs


def _ca_certificate(key: ec.EllipticCurvePrivateKey, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mediagate")])
    now = dt.datetime.now(dt.UTC) - BACKDATE
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )


def _c2pa_certificate(public_key: ec.EllipticCurvePublicKey, name: str, issuer: x509.Certificate,
                      issuer_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mediagate")])
    now = dt.datetime.now(dt.UTC) - BACKDATE
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer.subject).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _private_pem(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _public_pem(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _write(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    """Write through a temporary file in the same directory, so a reader never sees half a key and the mode is set
    before the name appears. Without ``replace``, ``os.link`` refuses an existing target atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise KeyMaterialError(f"{path}: no such file (create the key material with audit.keys.init_signing)") from exc
    except OSError as exc:
        raise KeyMaterialError(f"{path}: cannot be read ({exc.strerror})") from exc


def _kind(key: object) -> str:
    curve = getattr(key, "curve", None)
    return f"an EC {curve.name} key" if curve is not None else type(key).__name__
