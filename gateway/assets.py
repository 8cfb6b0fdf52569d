"""Content-addressed asset store on the local file system (the ``AssetStore`` extension point)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

from audit.background import write_atomically


class AssetStore(Protocol):
    def put(self, data: bytes) -> str: ...

    def get(self, sha256: str) -> bytes: ...

    def delete(self, sha256: str) -> int: ...


class LocalAssetStore:
    """Files named by their SHA-256 under ``root/ab/cd/``. Writes are atomic (temp file + rename + fsync)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data)
        return digest

    def delete(self, sha256: str) -> int:
        """Remove the bytes; 1 if a file was removed, 0 if there was none."""
        path = self._path(sha256)
        if not path.exists():
            return 0
        path.unlink()
        return 1

    def get(self, sha256: str) -> bytes:
        data = self._path(sha256).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise OSError(f"asset {sha256} is corrupt on disk")
        return data
