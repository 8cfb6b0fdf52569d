"""The ``Scorer`` extension point, the ``ScoreCard`` it fills, and the runner that keeps failures visible."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from PIL import Image


@runtime_checkable
class Scorer(Protocol):
    """Scores a batch of images; returns one mapping of named float values per image, in order."""

    name: str
    version: str

    def score(self, images: Sequence[Image.Image]) -> list[dict[str, float]]: ...


@dataclass(frozen=True)
class ScoreResult:
    scorer: str
    version: str
    ok: bool
    values: Mapping[str, float]
    duration_s: float
    error: str | None = None


@dataclass(frozen=True)
class ScoreCard:
    """Every scorer's verdict on one image. A card with any failed scorer is incomplete, and never releasable."""

    results: tuple[ScoreResult, ...]

    @property
    def complete(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        """The shape the release policy and the audit entry see: ``{"complete", "scores": {scorer: {...}}}``."""
        return {
            "complete": self.complete,
            "scores": {r.scorer: dict(r.values) for r in self.results if r.ok},
            "failed": {r.scorer: r.error for r in self.results if not r.ok},
            "versions": {r.scorer: r.version for r in self.results},
        }


def score_images(
    scorers: Sequence[Scorer],
    images: Sequence[Image.Image],
    observe: Callable[[str, float], None] | None = None,
) -> list[ScoreCard]:
    """Run every scorer over the batch. A scorer that raises or answers badly marks its entry failed (fail closed)."""
    per_image: list[list[ScoreResult]] = [[] for _ in images]
    for scorer in scorers:
        start = time.perf_counter()
        try:
            values = scorer.score(images)
            if len(values) != len(images):
                raise ValueError(f"returned {len(values)} results for {len(images)} images")
            bad = [k for vals in values for k, v in vals.items() if not math.isfinite(v)]
            if bad:
                raise ValueError(f"non-finite values for {sorted(set(bad))}")
            error = None
        except Exception as exc:  # noqa: BLE001 - any scorer failure must become an incomplete card, not a crash
            values, error = [{} for _ in images], f"{type(exc).__name__}: {exc}"
        duration = time.perf_counter() - start
        if observe is not None:
            observe(scorer.name, duration)
        for i, vals in enumerate(values):
            share = duration / max(len(images), 1)
            per_image[i].append(ScoreResult(scorer.name, scorer.version, error is None, dict(vals), share, error))
    return [ScoreCard(tuple(results)) for results in per_image]
