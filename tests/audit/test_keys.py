"""Key material: files, permissions, refusal to overwrite, certificate profile, loaders' errors."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from audit.keys import (
    KeyMaterialError,
    SigningPaths,
    init_signing,
    load_certificates,
    load_checkpoint_private_key,
    load_checkpoint_public_key,
    load_private_key,
    load_public_key,
)


@pytest.fixture
def paths(tmp_path: Path) -> SigningPaths:
    return init_signing(tmp_path / "keys")


def test_init_signing_writes_every_file_where_signing_paths_says(paths: SigningPaths, tmp_path: Path) -> None:
    assert paths == SigningPaths.in_directory(tmp_path / "keys")
    assert all(p.is_file() for p in paths.files())
    assert sorted(p.name for p in paths.directory.iterdir()) == sorted(p.name for p in paths.files())  # no temp files


def test_private_keys_are_0600_and_public_files_0644(paths: SigningPaths) -> None:
    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert {mode(p) for p in (paths.checkpoint_key, paths.ca_key, paths.c2pa_key)} == {0o600}
    assert {mode(p) for p in (paths.checkpoint_public, paths.ca_cert, paths.c2pa_chain)} == {0o644}


def test_a_new_directory_is_private(paths: SigningPaths) -> None:
    assert stat.S_IMODE(paths.directory.stat().st_mode) == 0o700


def test_refuses_to_overwrite_and_leaves_existing_keys_alone(paths: SigningPaths) -> None:
    before = {p: p.read_bytes() for p in paths.files()}
    with pytest.raises(FileExistsError, match="refusing to overwrite.*checkpoint-ed25519.key.pem"):
        init_signing(paths.directory)
    assert {p: p.read_bytes() for p in paths.files()} == before


def test_refuses_when_only_some_files_exist(tmp_path: Path) -> None:
    (tmp_path / "ca.key.pem").write_bytes(b"left over")
    with pytest.raises(FileExistsError, match=r"ca\.key\.pem"):
        init_signing(tmp_path)
    assert not (tmp_path / "c2pa.key.pem").exists()


def test_force_replaces_every_key(paths: SigningPaths) -> None:
    before = {p: p.read_bytes() for p in paths.files()}
    init_signing(paths.directory, force=True)
    assert all(p.read_bytes() != before[p] for p in paths.files())
    assert stat.S_IMODE(paths.c2pa_key.stat().st_mode) == 0o600


def test_checkpoint_key_pair_signs_and_verifies(paths: SigningPaths) -> None:
    private = load_checkpoint_private_key(paths.checkpoint_key)
    public = load_checkpoint_public_key(paths.checkpoint_public)
    public.verify(private.sign(b"checkpoint"), b"checkpoint")
    assert isinstance(load_public_key(paths.checkpoint_public), ed25519.Ed25519PublicKey)


def test_c2pa_certificate_is_issued_by_the_ca_with_the_c2pa_profile(tmp_path: Path) -> None:
    paths = init_signing(tmp_path, common_name="acme gateway")
    (ca,) = load_certificates(paths.ca_cert)
    (leaf,) = load_certificates(paths.c2pa_chain)
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key_usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.digital_signature and not key_usage.value.key_cert_sign
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.EMAIL_PROTECTION]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "acme gateway C2PA signer"
    assert isinstance(load_private_key(paths.c2pa_key), ec.EllipticCurvePrivateKey)


EC_PUBLIC_PEM = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize(
    ("name", "content", "load", "message"),
    [
        ("missing.pem", None, load_checkpoint_private_key, "no such file"),
        ("garbage.pem", b"not a key", load_checkpoint_private_key, "not a readable unencrypted PEM private key"),
        ("garbage.pem", b"not a key", load_public_key, "not a readable PEM public key"),
        ("garbage.pem", b"not a cert", load_certificates, "not a readable PEM certificate file"),
        ("c2pa.key.pem", "c2pa_key", load_checkpoint_private_key, "Ed25519 private key, found an EC secp256r1"),
        ("checkpoint-ed25519.key.pem", "checkpoint_key", load_public_key, "holds a private key"),
        ("ca.cert.pem", "ca_cert", load_public_key, "not a readable PEM public key"),
        ("ec.pub.pem", EC_PUBLIC_PEM, load_checkpoint_public_key, "Ed25519 public key, found an EC secp256r1"),
    ],
)
def test_loader_errors_name_the_file(paths: SigningPaths, tmp_path: Path, name: str, content: bytes | str | None,
                                     load: Callable[[Path], object], message: str) -> None:
    target = tmp_path / name
    if isinstance(content, bytes):
        target.write_bytes(content)
    elif isinstance(content, str):
        target = getattr(paths, content)
    with pytest.raises(KeyMaterialError, match=message) as info:
        load(target)
    assert str(target) in str(info.value)


def test_truncated_private_key_error_names_the_file(paths: SigningPaths) -> None:
    paths.checkpoint_key.write_bytes(paths.checkpoint_key.read_bytes()[:60])
    with pytest.raises(KeyMaterialError, match=str(paths.checkpoint_key)):
        load_checkpoint_private_key(paths.checkpoint_key)
