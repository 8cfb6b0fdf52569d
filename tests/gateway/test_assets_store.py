"""The content-addressed asset store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.assets import LocalAssetStore


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = LocalAssetStore(tmp_path / "assets")
    digest = store.put(b"png bytes")
    assert digest == hashlib.sha256(b"png bytes").hexdigest()
    assert store.put(b"png bytes") == digest
    assert store.get(digest) == b"png bytes"
    assert (tmp_path / "assets" / digest[:2] / digest[2:4] / digest).exists()
    assert not list((tmp_path / "assets").rglob(".tmp-*"))


def test_corruption_on_disk_is_detected(tmp_path: Path) -> None:
    store = LocalAssetStore(tmp_path)
    digest = store.put(b"original")
    (tmp_path / digest[:2] / digest[2:4] / digest).write_bytes(b"tampered")
    with pytest.raises(OSError, match="corrupt"):
        store.get(digest)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABC", "g" * 64, ""])
def test_names_that_are_not_digests_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        LocalAssetStore(tmp_path).get(bad)
