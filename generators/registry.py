"""Model registry: the names clients use, resolved to loaded generators.

This first cut knows two backends: the demo diffusers pipeline under ``models_dir`` and the template compositor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from generators.base import Generator

log = logging.getLogger(__name__)

DEMO_MODEL = "demo-tiny"
TEMPLATE_MODEL = "template"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    backend: str  # "diffusers-txt2img" | "template"
    generator: Generator
    default_width: int = 0
    default_height: int = 0


class ModelRegistry:
    def __init__(self, entries: list[ModelEntry]) -> None:
        self._entries = {e.name: e for e in entries}

    def get(self, name: str) -> ModelEntry | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._entries.values())


def build_default_registry(
    *, models_dir: Path, template_dirs: list[Path], init_demo: bool, device: str, default_size: tuple[int, int],
    demo_steps: int,
) -> ModelRegistry:
    """Load the demo pipeline (building it first if allowed and missing) and the template library."""
    from generators.demo import ensure_demo_pipeline
    from generators.diffusers_txt2img import DiffusersTxt2Img
    from generators.template import TemplateGenerator, TemplateLibrary

    demo_dir = models_dir / DEMO_MODEL
    if init_demo:
        ensure_demo_pipeline(demo_dir)
    diffusers = DiffusersTxt2Img(DEMO_MODEL, demo_dir, device=device, default_steps=demo_steps)
    library = TemplateLibrary([TemplateLibrary.default_dir(), *template_dirs])
    log.info("loaded %s (%s) and %d templates", DEMO_MODEL, diffusers.revision, len(library.list()))
    return ModelRegistry([
        ModelEntry(DEMO_MODEL, "diffusers-txt2img", diffusers, *default_size),
        ModelEntry(TEMPLATE_MODEL, "template", TemplateGenerator(library)),
    ])
