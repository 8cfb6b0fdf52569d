"""Model registry: the names clients use, resolved to loaded generators, with each model's tier and limits.

The registry is a YAML file in the configuration directory (``MEDIAGATE_MODEL_REGISTRY``, default
``$MEDIAGATE_HOME/models.yaml``)::

    models:
      sd-turbo:
        backend: diffusers-txt2img      # diffusers-txt2img | diffusers-img2img | template
        path: models/sd-turbo           # a diffusers pipeline directory; relative to this file
        dtype: auto                     # auto (fp16 on CUDA, fp32 on CPU) | float16 | bfloat16 | float32
        device: auto                    # auto (the first GPU, else the CPU) | cpu | cuda | cuda:1 ...
        tier: preview                   # preview | final
        scheduler: EulerAncestralDiscreteScheduler   # optional: any diffusers scheduler class
        limits: {max_width: 1024, max_height: 1024, max_steps: 8, default_steps: 1, default_guidance: 0.0,
                 default_size: 512x512}
      template:
        backend: template

Which tenant may use which model is policy (``data.mediagate.pre.allowed_models``), not registry: trust teams
own it. Without the file the built-in registry applies: the demo pipeline (``demo-tiny``) and the template compositor.
Every problem with the file (not YAML, unknown backend or key, missing directory, a limit out of range) is a
``RegistryError`` naming the file and the entry; ``mediagate serve`` refuses to start on one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from generators.base import Generator

log = logging.getLogger(__name__)

DEMO_MODEL = "demo-tiny"
DEMO_PREVIEW_MODEL = "demo-tiny-preview"
DEMO_IMG2IMG_MODEL = "demo-tiny-img2img"
TEMPLATE_MODEL = "template"
BACKENDS = ("diffusers-txt2img", "diffusers-img2img", "template")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


class RegistryError(ValueError):
    """The model registry cannot be used; the message names the file and the entry."""


class LimitsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_width: int = Field(default=1024, ge=64, le=4096, multiple_of=8)
    max_height: int = Field(default=1024, ge=64, le=4096, multiple_of=8)
    max_steps: int = Field(default=50, ge=1, le=500)
    default_steps: int = Field(default=20, ge=1, le=500)
    default_guidance: float = Field(default=7.5, ge=0, le=50)
    default_size: str = "512x512"

    @model_validator(mode="after")
    def _consistent(self) -> LimitsModel:
        if self.default_steps > self.max_steps:
            raise ValueError(f"default_steps {self.default_steps} is above max_steps {self.max_steps}")
        match = _SIZE.match(self.default_size)
        if match is None:
            raise ValueError(f"default_size must look like 512x512 but is {self.default_size!r}")
        width, height = int(match.group(1)), int(match.group(2))
        if width % 8 or height % 8 or width > self.max_width or height > self.max_height:
            raise ValueError(f"default_size {self.default_size} must be multiples of 8 within max_width x "
                             f"max_height ({self.max_width}x{self.max_height})")
        return self


class EntryModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str
    path: Path | None = None
    dtype: Literal["auto", "float16", "fp16", "bfloat16", "bf16", "float32"] = "auto"
    device: str = "auto"
    tier: Literal["preview", "final"] = "final"
    scheduler: str | None = None
    limits: LimitsModel = Field(default_factory=lambda: LimitsModel())


@dataclass(frozen=True)
class Limits:
    max_width: int
    max_height: int
    max_steps: int
    default_steps: int
    default_guidance: float
    default_width: int
    default_height: int

    def as_dict(self) -> dict[str, Any]:
        return {"max_width": self.max_width, "max_height": self.max_height, "max_steps": self.max_steps,
                "default_steps": self.default_steps, "default_guidance": self.default_guidance,
                "default_size": f"{self.default_width}x{self.default_height}"}


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry, checked but not loaded."""

    name: str
    backend: str
    path: Path | None
    dtype: str = "auto"
    device: str = "auto"
    tier: str = "final"
    scheduler: str | None = None
    limits: Limits = field(default_factory=lambda: Limits(1024, 1024, 50, 20, 7.5, 512, 512))


@dataclass(frozen=True)
class ModelEntry:
    """A model: its spec and its generator (whose ``revision`` hashes the weight files), or, when its weights could
    not be loaded, the reason: the gateway then runs without it and reports it unready (``/readyz`` 503)."""

    spec: ModelSpec
    generator: Generator | None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def backend(self) -> str:
        return self.spec.backend

    @property
    def default_width(self) -> int:
        return self.spec.limits.default_width

    @property
    def default_height(self) -> int:
        return self.spec.limits.default_height

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "backend": self.backend, "tier": self.spec.tier,
                               "status": "ready" if self.generator is not None else "unavailable",
                               "revision": self.generator.revision if self.generator is not None else None}
        if self.error is not None:
            out["error"] = self.error
        if self.backend != "template":
            out["limits"] = self.spec.limits.as_dict()
        return out


class ModelRegistry:
    def __init__(self, entries: list[ModelEntry]) -> None:
        self._entries = {e.name: e for e in entries}

    def get(self, name: str) -> ModelEntry | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def preview_model(self) -> str | None:
        """The first (by name) ready diffusers model of the preview tier."""
        for name in self.names():
            entry = self._entries[name]
            if entry.spec.tier == "preview" and entry.backend != "template" and entry.generator is not None:
                return name
        return None

    def close(self) -> None:
        """Stop the micro-batchers' threads (requests already queued are rendered first)."""
        for entry in self._entries.values():
            close = getattr(entry.generator, "close", None)
            if callable(close):
                close()

    def unavailable(self) -> dict[str, str]:
        """Models whose weights could not be loaded, with the reason."""
        return {e.name: e.error or "not loaded" for e in self._entries.values() if e.generator is None}

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._entries.values())


def _fail(source: Path, name: str | None, problem: str) -> RegistryError:
    where = f"model registry {source}" + (f": entry {name!r}" if name is not None else "")
    return RegistryError(f"{where}: {problem}")


def parse_registry(source: Path, text: str) -> list[ModelSpec]:
    """Check the registry file's content; paths are resolved against the file's directory."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(source, None, f"not valid YAML: {exc}") from exc
    if not isinstance(document, Mapping) or set(document) != {"models"} or not isinstance(document["models"], Mapping):
        raise _fail(source, None, "must be a mapping with one key, `models`: {name: entry, ...}")
    if not document["models"]:
        raise _fail(source, None, "`models` is empty: a gateway without models can release nothing")
    specs = []
    for name, raw in document["models"].items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise _fail(source, str(name), "names are 1-64 of a-z 0-9 . _ - (starting with a letter or digit)")
        if not isinstance(raw, Mapping):
            raise _fail(source, name, "must be a mapping (backend, path, limits, ...)")
        try:
            entry = EntryModel.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise _fail(source, name, f"`{where}`: {first['msg']}") from exc
        if entry.backend not in BACKENDS:
            raise _fail(source, name, f"unknown backend {entry.backend!r}; known: {', '.join(BACKENDS)}")
        path = None
        if entry.backend != "template":
            if entry.path is None:
                raise _fail(source, name, f"backend {entry.backend!r} needs `path` (a diffusers pipeline directory)")
            path = entry.path if entry.path.is_absolute() else source.parent / entry.path
        limits = entry.limits
        width, height = (int(v) for v in limits.default_size.split("x"))
        specs.append(ModelSpec(
            name=name, backend=entry.backend, path=path, dtype=entry.dtype, device=entry.device, tier=entry.tier,
            scheduler=entry.scheduler,
            limits=Limits(limits.max_width, limits.max_height, limits.max_steps, limits.default_steps,
                          limits.default_guidance, width, height),
        ))
    return specs


def check_entries(source: Path, specs: list[ModelSpec]) -> None:
    """Every diffusers entry's directory exists and holds a pipeline (``model_index.json``), and its scheduler is
    one diffusers has. (Weights that fail to load are found only by loading: see ``build_registry``.)"""
    for spec in specs:
        if spec.scheduler is not None:
            from generators.diffusers_txt2img import scheduler_class

            try:
                scheduler_class(spec.scheduler)
            except ValueError as exc:
                raise _fail(source, spec.name, str(exc)) from exc
        if spec.path is None:
            continue
        if not spec.path.is_dir():
            raise _fail(source, spec.name, f"directory {str(spec.path)!r} does not exist")
        if not (spec.path / "model_index.json").is_file():
            raise _fail(source, spec.name, f"directory {str(spec.path)!r} has no model_index.json: not a diffusers "
                                           "pipeline")


def load_registry_file(path: Path) -> list[ModelSpec]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, None, f"cannot be read: {exc}") from exc
    specs = parse_registry(path, text)
    check_entries(path, specs)
    return specs


def default_specs(*, models_dir: Path, device: str, default_size: tuple[int, int], demo_steps: int
                  ) -> list[ModelSpec]:
    """The registry without a file: the demo pipeline (final tier, and again as a one-step preview tier) and the
    template compositor."""
    width, height = default_size
    demo_limits = Limits(max_width=max(1024, width), max_height=max(1024, height), max_steps=max(50, demo_steps),
                         default_steps=demo_steps, default_guidance=1.0, default_width=width, default_height=height)
    preview_limits = Limits(max_width=512, max_height=512, max_steps=4, default_steps=1, default_guidance=1.0,
                            default_width=min(width, 512), default_height=min(height, 512))
    return [
        ModelSpec(DEMO_MODEL, "diffusers-txt2img", models_dir / DEMO_MODEL, device=device, limits=demo_limits),
        ModelSpec(DEMO_PREVIEW_MODEL, "diffusers-txt2img", models_dir / DEMO_MODEL, device=device, tier="preview",
                  limits=preview_limits),
        ModelSpec(DEMO_IMG2IMG_MODEL, "diffusers-img2img", models_dir / DEMO_MODEL, device=device,
                  limits=demo_limits),
        ModelSpec(TEMPLATE_MODEL, "template", None),
    ]


def build_registry(specs: list[ModelSpec], *, template_dirs: list[Path], source: Path | None = None,
                   batch_max_images: int = 1, batch_max_wait_ms: float = 0.0,
                   observe_batch: Callable[[str, int, int], None] | None = None) -> ModelRegistry:
    """Load every entry's generator.

    A template library that cannot be read is a configuration error (``RegistryError``). A diffusers directory whose
    weights fail to load (truncated, corrupt, the wrong layout) leaves that model unavailable, with the reason, and
    the rest of the gateway running: restarting would fail the same way, so a crash would only loop.
    """
    from generators.template import TemplateGenerator, TemplateLibrary

    entries = []
    library: TemplateLibrary | None = None
    for spec in specs:
        if spec.backend == "template":
            try:
                library = library or TemplateLibrary([TemplateLibrary.default_dir(), *template_dirs])
            except (OSError, ValueError) as exc:
                raise _fail(source or Path("(built-in)"), spec.name, f"templates cannot be loaded: {exc}") from exc
            entries.append(ModelEntry(spec, TemplateGenerator(library)))
            continue
        from generators.diffusers_txt2img import DiffusersImg2Img, DiffusersTxt2Img

        assert spec.path is not None
        cls = DiffusersImg2Img if spec.backend == "diffusers-img2img" else DiffusersTxt2Img
        try:
            generator = cls(spec.name, spec.path, device=spec.device, dtype=spec.dtype,
                                         default_steps=spec.limits.default_steps,
                                         guidance_scale=spec.limits.default_guidance, scheduler=spec.scheduler)
        except Exception as exc:  # noqa: BLE001 - whatever the loader raised, this model is unavailable
            reason = f"{type(exc).__name__}: {exc}"[:500]
            log.error("model %s cannot be loaded from %s: %s", spec.name, spec.path, reason)
            entries.append(ModelEntry(spec, None, f"cannot be loaded from {spec.path}: {reason}"))
            continue
        wrapped: Generator = generator
        if batch_max_images > 1:
            from generators.batching import MicroBatcher

            name = spec.name
            wrapped = MicroBatcher(generator, max_images=batch_max_images, max_wait_ms=batch_max_wait_ms,
                                   observe=None if observe_batch is None else
                                   (lambda r, i, name=name: observe_batch(name, r, i)))  # type: ignore[misc]
        entries.append(ModelEntry(spec, wrapped))
        log.info("model %s: %s (%s, tier %s)", spec.name, spec.backend, generator.revision, spec.tier)
    return ModelRegistry(entries)
