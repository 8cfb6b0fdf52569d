"""Reads an OPA bundle directory (``.manifest``, ``*.rego``, ``data.json``) the way ``opa run -b`` would."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class BundleError(ValueError):
    """The bundle directory is not a loadable OPA bundle; the message names the file."""


@dataclass(frozen=True)
class Bundle:
    root: Path
    revision: str
    digest: str
    roots: tuple[str, ...]
    policies: tuple[tuple[str, str], ...]  # (path relative to root, source), test files excluded
    tests: tuple[tuple[str, str], ...]
    data: dict[str, Any]

    @property
    def label(self) -> str:
        """Revision plus content digest: what decisions and audit entries record."""
        return f"{self.revision}+{self.digest[:12]}"


def _nest(data: dict[str, Any], parts: tuple[str, ...], value: Any, source: Path) -> None:
    node = data
    for part in parts:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise BundleError(f"{source}: data path {'/'.join(parts)} collides with a non-object value")
    if not isinstance(value, dict):
        raise BundleError(f"{source}: a bundle data.json must hold a JSON object")
    node.update(value)


def load_bundle(root: Path) -> Bundle:
    """Load every file of the bundle. Data files land at the path of their directory, as in OPA."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: policy bundle directory does not exist")
    manifest_path = root / ".manifest"
    manifest: dict[str, Any] = {}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise BundleError(f"{manifest_path}:{exc.lineno}:{exc.colno}: {exc.msg}") from exc
    digest = hashlib.sha256()
    policies: list[tuple[str, str]] = []
    tests: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\x00" + path.read_bytes() + b"\x00")
        if path.suffix == ".rego":
            (tests if path.stem.endswith("_test") else policies).append((rel, path.read_text()))
        elif path.name == "data.json":
            try:
                value = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise BundleError(f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}") from exc
            _nest(data, path.parent.relative_to(root).parts, value, path)
    if not policies:
        raise BundleError(f"{root}: no .rego policies found")
    return Bundle(
        root=root,
        revision=str(manifest.get("revision", "unversioned")),
        digest=digest.hexdigest(),
        roots=tuple(manifest.get("roots", [])),
        policies=tuple(policies),
        tests=tuple(tests),
        data=data,
    )
