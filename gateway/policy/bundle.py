"""OPA bundles: a directory (``opa run -b DIR``) or a tarball (``opa build`` output, ``PUT /v1/policies``).

A bundle holds a ``.manifest``, Rego modules (``*_test.rego`` are tests) and ``data.json`` / ``data.yaml`` files,
and nothing else. Both sources become the same ``{path: bytes}`` map, so a directory and its tarball have the same
digest. Every error names the file (and the line where one is known) and nothing is half-loaded.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

MANIFEST = ".manifest"
DATA_FILES = ("data.json", "data.yaml", "data.yml")
MAX_BUNDLE_BYTES = 4 * 1024 * 1024  # uncompressed, all files together
MAX_FILES = 500

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)


class BundleError(ValueError):
    """The bundle is not a loadable OPA bundle; the message starts with the file (and line) at fault."""


@dataclass(frozen=True)
class Bundle:
    origin: str  # the directory or "upload", for messages
    revision: str
    digest: str
    roots: tuple[str, ...]
    policies: tuple[tuple[str, str], ...]  # (path in the bundle, source), tests excluded
    tests: tuple[tuple[str, str], ...]
    data: dict[str, Any]
    files: Mapping[str, bytes] = field(repr=False, default_factory=dict)

    @property
    def label(self) -> str:
        """Manifest revision plus content digest: what decisions and audit entries record."""
        return f"{self.revision}+{self.digest[:12]}"

    def packages(self) -> dict[str, str]:
        """Package of every module (tests included), by path."""
        found = {}
        for rel, source in self.policies + self.tests:
            match = _PACKAGE.search(source)
            found[rel] = match.group(1) if match else ""
        return found

    def archive(self) -> bytes:
        """A reproducible ``.tar.gz`` of the bundle (sorted, zero timestamps): the same bundle, the same bytes."""
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in sorted(self.files):
                info = tarfile.TarInfo(rel)
                info.size, info.mode, info.mtime = len(self.files[rel]), 0o644, 0
                tar.addfile(info, io.BytesIO(self.files[rel]))
        return gzip.compress(raw.getvalue(), mtime=0)


def _decode(rel: str, content: bytes) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{rel}: not UTF-8 text (byte {exc.start})") from exc


def _parse_data(rel: str, content: bytes) -> Any:
    text = _decode(rel, content)
    if rel.endswith(".json") or rel == MANIFEST:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"{rel}:{exc.lineno}:{exc.colno}: {exc.msg}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise BundleError(f"{rel}{where}: {getattr(exc, 'problem', None) or exc}") from exc


def _nest(data: dict[str, Any], parts: tuple[str, ...], value: Any, rel: str) -> None:
    """Place a data file's object at its directory's path, as OPA does."""
    if not isinstance(value, dict):
        raise BundleError(f"{rel}: a bundle data file must hold an object, not {type(value).__name__}")
    node = data
    for part in parts:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise BundleError(f"{rel}: data path {'/'.join(parts)} collides with a non-object value")
    overlap = sorted(set(node) & set(value))
    if overlap:
        raise BundleError(f"{rel}: keys {overlap} are already defined at {'/'.join(parts) or 'the root'}")
    node.update(value)


def _under_roots(path: str, roots: tuple[str, ...]) -> bool:
    """OPA: every package and data path must lie under one of the manifest's roots ("" or none = everything)."""
    return not roots or any(r == "" or path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _manifest(files: Mapping[str, bytes]) -> dict[str, Any]:
    if MANIFEST not in files:
        return {}
    manifest = _parse_data(MANIFEST, files[MANIFEST])
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST}: must be a JSON object")
    roots = manifest.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise BundleError(f"{MANIFEST}: `roots` must be a list of strings")
    if manifest.get("rego_version", 1) != 1:
        raise BundleError(f"{MANIFEST}: `rego_version` must be 1 (Rego v1); v0 policies are not supported")
    return manifest


def bundle_from_files(files: Mapping[str, bytes], *, origin: str) -> Bundle:
    """Check and parse a bundle given as ``{path inside the bundle: content}``."""
    manifest = _manifest(files)
    roots = tuple(str(r).strip("/") for r in manifest.get("roots", []))
    digest = hashlib.sha256()
    policies: list[tuple[str, str]] = []
    tests: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    for rel in sorted(files):
        content = files[rel]
        digest.update(rel.encode() + b"\x00" + content + b"\x00")
        name = PurePosixPath(rel).name
        if rel == MANIFEST:
            continue
        if name.endswith(".rego"):
            source = _decode(rel, content)
            match = _PACKAGE.search(source)
            package = match.group(1).replace(".", "/") if match else ""
            if match and not _under_roots(package, roots):
                raise BundleError(f"{rel}: package {match.group(1)} is outside the bundle's roots {list(roots)}")
            (tests if name.endswith("_test.rego") else policies).append((rel, source))
        elif name in DATA_FILES:
            parts = PurePosixPath(rel).parent.parts
            if parts and not _under_roots("/".join(parts), roots):
                raise BundleError(f"{rel}: data path {'/'.join(parts)} is outside the bundle's roots {list(roots)}")
            _nest(data, tuple(parts), _parse_data(rel, content), rel)
        else:
            raise BundleError(f"{rel}: not a bundle file (a bundle holds .manifest, *.rego, data.json, data.yaml)")
    if not policies:
        raise BundleError(f"{origin}: no .rego policies found")
    return Bundle(
        origin=origin, revision=str(manifest.get("revision", "unversioned")), digest=digest.hexdigest(),
        roots=roots, policies=tuple(policies), tests=tuple(tests), data=data, files=dict(files),
    )


def load_bundle(root: Path) -> Bundle:
    """Load a bundle directory. Hidden files other than ``.manifest`` (editor swap files, ``.git``) are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: policy bundle directory does not exist")
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in PurePosixPath(rel).parts) and rel != MANIFEST:
            continue
        if path.is_symlink():
            raise BundleError(f"{rel}: symbolic links are not allowed in a bundle")
        if not path.is_file():
            continue
        files[rel] = path.read_bytes()
        total += len(files[rel])
        if total > MAX_BUNDLE_BYTES or len(files) > MAX_FILES:
            raise BundleError(f"{root}: bundle over {MAX_BUNDLE_BYTES} bytes or {MAX_FILES} files")
    return bundle_from_files(files, origin=str(root))


def _member_path(name: str) -> str:
    """A tar member's path inside the bundle. ``opa build`` writes ``/a/b.rego``; ``..`` and drive tricks fail."""
    rel = name.removeprefix("./").removeprefix("/")
    parts = PurePosixPath(rel).parts
    if not parts or any(p in ("..", "") for p in parts) or "\\" in rel or ":" in parts[0]:
        raise BundleError(f"{name}: path escapes the bundle directory")
    return PurePosixPath(*parts).as_posix()


def load_bundle_archive(blob: bytes, *, max_bytes: int = MAX_BUNDLE_BYTES, origin: str = "upload") -> Bundle:
    """Load a bundle tarball (gzip-compressed or plain tar) entirely in memory; nothing touches the disk."""
    if blob[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(blob)) as gz:
                raw = gz.read(max_bytes * 2 + 1)  # tar headers and padding on top of the files themselves
        except (OSError, EOFError) as exc:
            raise BundleError(f"{origin}: not a valid gzip stream: {exc}") from exc
        if len(raw) > max_bytes * 2:
            raise BundleError(f"{origin}: bundle expands to more than {max_bytes * 2} bytes")
    else:
        raw = blob
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if member.isdir():
                    continue
                rel = _member_path(member.name)
                if not member.isfile():
                    raise BundleError(f"{member.name}: only regular files are allowed in a bundle (links, devices)")
                if rel in files:
                    raise BundleError(f"{member.name}: appears twice in the archive")
                total += member.size
                if total > max_bytes or len(files) >= MAX_FILES:
                    raise BundleError(f"{member.name}: bundle over {max_bytes} bytes or {MAX_FILES} files")
                extracted = tar.extractfile(member)
                assert extracted is not None  # a regular file always has content
                files[rel] = extracted.read()
    except tarfile.TarError as exc:
        raise BundleError(f"{origin}: not a tar archive: {exc}") from exc
    return bundle_from_files(files, origin=origin)
