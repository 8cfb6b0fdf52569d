"""Bundle loading from a directory and from a tarball: same digest, and every bad bundle refused by name."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.policy.bundle import BundleError, bundle_from_files, load_bundle, load_bundle_archive
from gateway.settings import REPO_POLICIES


def tarball(files: dict[str, bytes], *, gz: bool = True, extra: Callable[[tarfile.TarFile], None] | None = None
            ) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        if extra:
            extra(tar)
    return gzip.compress(raw.getvalue()) if gz else raw.getvalue()


def repo_files() -> dict[str, bytes]:
    return dict(load_bundle(REPO_POLICIES).files)


def test_directory_and_its_archive_are_the_same_bundle() -> None:
    bundle = load_bundle(REPO_POLICIES)
    again = load_bundle_archive(bundle.archive())
    assert again.digest == bundle.digest and again.label == bundle.label
    assert again.data == bundle.data
    assert bundle.archive() == again.archive()  # reproducible bytes


def test_opa_build_style_leading_slashes_are_accepted() -> None:
    files = {"/" + name: content for name, content in repo_files().items()}
    assert load_bundle_archive(tarball(files)).digest == load_bundle(REPO_POLICIES).digest


def test_plain_tar_is_accepted() -> None:
    assert load_bundle_archive(tarball(repo_files(), gz=False)).revision == load_bundle(REPO_POLICIES).revision


def test_yaml_data_files_load_at_their_directory(tmp_path: Path) -> None:
    files = repo_files()
    files["mediagate/extra/data.yaml"] = b"limits:\n  burst: 3\n"
    bundle = bundle_from_files(files, origin="test")
    assert bundle.data["mediagate"]["extra"] == {"limits": {"burst": 3}}


def _symlink(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("mediagate/evil.rego")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    tar.addfile(info)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (tarball({**repo_files(), "../escape.rego": b"package x\n"}), "../escape.rego: path escapes"),
        (tarball({**repo_files(), "mediagate/../../x.rego": b"package x\n"}), "path escapes"),
        (tarball(repo_files(), extra=_symlink), "mediagate/evil.rego: only regular files"),
        (tarball({**repo_files(), "notes.txt": b"hi"}), "notes.txt: not a bundle file"),
        (tarball({**repo_files(), "mediagate/config/data.json": b"{oops"}), "mediagate/config/data.json:1:2"),
        (tarball({**repo_files(), "mediagate/x/data.yaml": b"a: [1,\n"}), "mediagate/x/data.yaml:"),
        (tarball({**repo_files(), "mediagate/x/data.json": b"[1, 2]"}), "must hold an object, not list"),
        (tarball({**repo_files(), "other/p.rego": b"package other\nx := 1\n"}), "package other is outside"),
        (tarball({**repo_files(), ".manifest": b"["}), ".manifest:"),
        (tarball({**repo_files(), ".manifest": json.dumps({"rego_version": 0}).encode()}), "rego_version"),
        (tarball({**repo_files(), "mediagate/pre/x.rego": b"\xff\xfe"}), "mediagate/pre/x.rego: not UTF-8"),
        (tarball({".manifest": b"{}"}), "no .rego policies"),
        (b"not a tarball at all", "not a tar archive"),
        (b"\x1f\x8b" + b"garbage", "not a valid gzip stream"),
    ],
)
def test_bad_archives_are_refused_naming_the_file(blob: bytes, message: str) -> None:
    with pytest.raises(BundleError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_bundle_archive(blob)


def test_oversized_bundle_is_refused() -> None:
    files = {**repo_files(), "mediagate/big/data.json": json.dumps({"x": "a" * 200_000}).encode()}
    with pytest.raises(BundleError, match="mediagate/big/data.json: bundle over 100000 bytes"):
        load_bundle_archive(tarball(files, gz=False), max_bytes=100_000)
    with pytest.raises(BundleError, match="expands to more than 200000 bytes"):
        load_bundle_archive(tarball(files), max_bytes=100_000)


def test_compression_bomb_is_refused_before_it_is_expanded() -> None:
    bomb = gzip.compress(b"\x00" * 5_000_000)
    assert len(bomb) < 10_000
    with pytest.raises(BundleError, match="expands to more than"):
        load_bundle_archive(bomb, max_bytes=100_000)


def test_duplicate_member_is_refused() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in [*repo_files().items(), ("mediagate/pre/pre.rego", b"package mediagate.pre\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    with pytest.raises(BundleError, match="appears twice"):
        load_bundle_archive(raw.getvalue())


def test_directory_skips_hidden_files_but_refuses_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(REPO_POLICIES, root)
    (root / "mediagate/pre/.pre.rego.swp").write_bytes(b"\x00 editor swap")
    assert load_bundle(root).digest == load_bundle(REPO_POLICIES).digest
    (root / "mediagate/link.rego").symlink_to(root / "mediagate/pre/pre.rego")
    with pytest.raises(BundleError, match="mediagate/link.rego: symbolic links"):
        load_bundle(root)


def test_data_keys_defined_twice_are_refused() -> None:
    files = {**repo_files(), "mediagate/data.json": json.dumps({"config": {"defaults": {}}}).encode()}
    with pytest.raises(BundleError, match=r"keys \['config'\] are already defined"):
        bundle_from_files(files, origin="test")
