"""The ``Generator`` extension point and the frozen values that cross the generation boundary."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image


@dataclass(frozen=True)
class GenerationSpec:
    """What to make, after the edge validated it and the pre-policy allowed it.

    Prompt requests set ``prompt`` (and maybe ``negative_prompt``); template requests set ``template`` and
    ``fields``. ``seed`` is the seed of image 0; image ``i`` uses ``seed + i`` so each image is reproducible alone.
    """

    model: str
    width: int
    height: int
    n: int = 1
    seed: int = 0
    prompt: str | None = None
    negative_prompt: str | None = None
    template: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    locale: str | None = None
    steps: int | None = None
    init_image: Any = None  # image-to-image: the PIL image to start from (already at width x height)
    strength: float | None = None  # image-to-image: how far from init_image (0 < strength <= 1)


@dataclass(frozen=True)
class GeneratedImage:
    """One image a generator produced, with what is needed to reproduce it."""

    image: Image.Image
    index: int
    seed: int
    model: str
    model_revision: str


@runtime_checkable
class Generator(Protocol):
    """Turns a validated spec into images. Raises ``gateway.errors.InvalidInput`` for input it cannot render."""

    name: str
    revision: str

    def generate(self, spec: GenerationSpec) -> list[GeneratedImage]: ...


# Progress of the request being run in this context: ("step", {"step": i, "of": n}) from a generator, ("stage",
# {"name": ...}) from the flow. An async job sets it to record events (and may raise from it to cancel); a plain
# request leaves it unset.
Progress = Callable[[str, dict[str, Any]], None]
progress: ContextVar[Progress | None] = ContextVar("mediagate_progress", default=None)


def report(kind: str, **data: Any) -> None:
    sink = progress.get()
    if sink is not None:
        sink(kind, data)
