"""The ``Scorer`` extension point, the ``ScoreCard`` it fills, and the runner that keeps failures visible.

A scorer sees a batch of images and a :class:`ScoreContext` (what was asked for: the prompt, the text a template was
asked to render per image, the tenant's banned terms, the brand kit), and answers one mapping of named, typed values
per image. Each scorer declares the type of every value it answers (``fields``); the runner checks the answer
against that declaration, so the release policy and the audit log only ever see what the scorer promised.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image

# What a score value may be: a number, a flag, a text (an OCR line, a caption) or a list of texts (flavours, labels).
ScoreValue = float | int | bool | str | list[str]
FieldType = Literal["float", "int", "bool", "str", "list[str]"]


@dataclass(frozen=True)
class ImageContext:
    """What one image was meant to show: its locale and the texts a template was asked to render on it."""

    locale: str | None = None
    expected_texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScoreContext:
    """The request side a scorer may compare an image with. Every field is optional: an uploaded image scored with
    ``POST /v1/score`` may come with nothing but the tenant."""

    tenant: str = ""
    kind: Literal["prompt", "template", "upload"] = "upload"
    prompt: str | None = None
    banned_terms: tuple[str, ...] = ()
    brand: Any = None  # a quality.brand.BrandKit when the request names one
    images: tuple[ImageContext, ...] = ()

    def image(self, index: int) -> ImageContext:
        """The context of image ``index`` (an empty one when the caller gave none)."""
        return self.images[index] if index < len(self.images) else ImageContext()


EMPTY_CONTEXT = ScoreContext()


@runtime_checkable
class Scorer(Protocol):
    """Scores a batch of images; returns one mapping of named values per image, in order.

    ``fields`` names every value the scorer answers and its type; an answer with a missing, extra or mistyped value
    marks the scorer failed for the batch.
    """

    name: str
    version: str

    @property
    def fields(self) -> Mapping[str, FieldType]: ...

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]: ...


@dataclass(frozen=True)
class ScoreResult:
    scorer: str
    version: str
    ok: bool
    values: Mapping[str, ScoreValue]
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
        """The shape the release policy and the audit entry see: ``{"complete", "scores": {scorer: {...}}, ...}``."""
        return {
            "complete": self.complete,
            "scores": {r.scorer: dict(r.values) for r in self.results if r.ok},
            "failed": {r.scorer: r.error for r in self.results if not r.ok},
            "versions": {r.scorer: r.version for r in self.results},
        }


def _check_value(name: str, kind: FieldType, value: Any) -> str | None:
    """Why ``value`` is not a valid ``kind``, or None."""
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name} must be a number, not {type(value).__name__}"
        if not math.isfinite(value):
            return f"{name} is not finite ({value})"
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name} must be an integer, not {type(value).__name__}"
    elif kind == "bool":
        if not isinstance(value, bool):
            return f"{name} must be a boolean, not {type(value).__name__}"
    elif kind == "str":
        if not isinstance(value, str):
            return f"{name} must be a string, not {type(value).__name__}"
    elif not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"{name} must be a list of strings"
    return None


def check_values(fields: Mapping[str, FieldType], values: Mapping[str, Any]) -> list[str]:
    """Everything wrong with one image's answer against the scorer's declared ``fields``. An empty answer means the
    scorer does not apply to the image (a brand score without a brand kit) and is valid."""
    if not values:
        return []
    problems = [f"missing {k}" for k in fields if k not in values]
    problems += [f"undeclared {k}" for k in values if k not in fields]
    problems += [p for k, v in values.items() if k in fields if (p := _check_value(k, fields[k], v)) is not None]
    return problems


def normalise(values: Mapping[str, Any], fields: Mapping[str, FieldType]) -> dict[str, ScoreValue]:
    """Plain Python values (numpy scalars are not JSON), floats as float."""
    out: dict[str, ScoreValue] = {}
    for key, value in values.items():
        kind = fields[key]
        out[key] = float(value) if kind == "float" else list(value) if kind == "list[str]" else value
    return out


def score_images(
    scorers: Sequence[Scorer],
    images: Sequence[Image.Image],
    context: ScoreContext = EMPTY_CONTEXT,
    observe: Callable[[str, float], None] | None = None,
) -> list[ScoreCard]:
    """Run every scorer over the batch. A scorer that raises or answers badly marks its entry failed (fail closed)."""
    per_image: list[list[ScoreResult]] = [[] for _ in images]
    for scorer in scorers:
        start = time.perf_counter()
        values: list[dict[str, ScoreValue]]
        try:
            answer = scorer.score(images, context)
            if len(answer) != len(images):
                raise ValueError(f"returned {len(answer)} results for {len(images)} images")
            problems = sorted({p for vals in answer for p in check_values(scorer.fields, vals)})
            if problems:
                raise ValueError("bad answer: " + "; ".join(problems))
            values = [normalise(vals, scorer.fields) for vals in answer]
            error = None
        except Exception as exc:  # noqa: BLE001 - any scorer failure must become an incomplete card, not a crash
            values, error = [{} for _ in images], f"{type(exc).__name__}: {exc}"
        duration = time.perf_counter() - start
        if observe is not None:
            observe(scorer.name, duration)
        share = duration / max(len(images), 1)
        for i, vals in enumerate(values):
            per_image[i].append(ScoreResult(scorer.name, scorer.version, error is None, vals, share, error))
    return [ScoreCard(tuple(results)) for results in per_image]
