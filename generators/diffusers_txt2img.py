"""Text-to-image with any diffusers pipeline directory on disk (the tiny demo model, SD-Turbo, SDXL, ...).

Loading goes through the ordinary ``from_pretrained(local_dir)`` path with the hub switched off: the gateway never
downloads weights. torch and diffusers are imported here only; the gateway imports this module lazily.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import InvalidInput
from generators.base import GeneratedImage, GenerationSpec, Progress, progress

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Files that decide what a pipeline directory computes: weights, configs and tokenizer vocabularies. READMEs, lock
# files and other strays do not change the model, so they do not change its revision either.
REVISION_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json", ".txt", ".model", ".yaml"})
SIZE_MULTIPLE = 8  # the VAE of Stable Diffusion and its descendants downsamples by 8
_DTYPES = {"float16": "float16", "fp16": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16", "float32": "float32"}


def directory_revision(model_dir: Path) -> str:
    """A content revision of a pipeline directory: ``sha256:`` and 16 hex digits.

    Hashes each relevant file's relative POSIX path and bytes, in sorted path order. Paths and contents are
    length-prefixed so that no two different directories can produce the same byte stream.
    """
    root = Path(model_dir)
    files = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix in REVISION_SUFFIXES and not _hidden(p, root)),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    digest = hashlib.sha256(b"mediagate-model-revision-v1\0")
    for path in files:
        name = path.relative_to(root).as_posix().encode("utf-8")
        digest.update(len(name).to_bytes(8, "big") + name + path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:16]


def _hidden(path: Path, root: Path) -> bool:
    """Dot-files and anything under a dot-directory (``.cache``, a half-written build) are not part of the model."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def resolve_device(device: str) -> str:
    """``auto`` means the first CUDA device when there is one, else the CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` means float16 on CUDA (half the memory, tensor cores) and float32 elsewhere (CPUs lack fast fp16)."""
    import torch

    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"`dtype` must be 'auto' or one of {sorted(_DTYPES)} but is {dtype!r}")
    return getattr(torch, _DTYPES[dtype])


def scheduler_class(name: str) -> Any:
    """The diffusers scheduler class called ``name`` (e.g. ``EulerDiscreteScheduler``); ValueError otherwise."""
    import diffusers
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    cls = getattr(diffusers, name, None) if name.endswith("Scheduler") else None
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ValueError(f"`scheduler` {name!r} is not a diffusers scheduler class (e.g. EulerDiscreteScheduler, "
                         "DPMSolverMultistepScheduler)")
    return cls


class DiffusersTxt2Img:
    """A :class:`generators.base.Generator` backed by a diffusers text-to-image pipeline loaded from ``model_dir``.

    One pipeline call renders all ``spec.n`` images, each from its own ``torch.Generator`` seeded ``spec.seed + i``,
    so any single image can be reproduced on its own. Calls are serialised with a lock: schedulers keep per-call
    state (timesteps, step index) on the shared pipeline object and are not thread-safe.
    """

    AUTO_PIPELINE = "AutoPipelineForText2Image"  # the diffusers auto class that loads the directory for this task

    def __init__(
        self,
        name: str,
        model_dir: Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        default_steps: int = 2,
        guidance_scale: float = 1.0,
        scheduler: str | None = None,
    ) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "model_index.json").is_file():
            what = "has no model_index.json" if model_dir.is_dir() else "does not exist"
            raise FileNotFoundError(f"diffusers model directory {str(model_dir)!r} {what}")
        if default_steps < 1:
            raise ValueError(f"`default_steps` must be at least 1 but is {default_steps}")
        self.name = name
        self.model_dir = model_dir
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.default_steps = default_steps
        self.guidance_scale = guidance_scale
        self.scheduler = scheduler
        # Hash before loading, so the revision describes the bytes that were actually loaded.
        self.revision = directory_revision(model_dir)
        self._pipe = self._load()
        self._lock = threading.Lock()
        log.info("loaded %s from %s (%s, %s on %s)", name, model_dir, self.revision, self.dtype, self.device)

    def _load(self) -> Any:
        # The gateway never talks to the hub: local_files_only below is the guarantee, the variable covers any
        # helper that only consults the environment.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import diffusers
        from diffusers import DiffusionPipeline
        from diffusers.utils import deprecation_utils

        # diffusers renamed `torch_dtype` to `dtype` (huggingface/diffusers#14205) and warns on the old name; older
        # releases know only `torch_dtype`.
        dtype_kwarg = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
        kwargs: dict[str, Any] = {"local_files_only": True, dtype_kwarg: self.dtype}
        try:
            pipe = getattr(diffusers, self.AUTO_PIPELINE).from_pretrained(str(self.model_dir), **kwargs)
        except ValueError as exc:  # AutoPipeline knows no such task for this pipeline class
            log.info("%s cannot load %s (%s); using DiffusionPipeline", self.AUTO_PIPELINE, self.model_dir, exc)
            pipe = DiffusionPipeline.from_pretrained(str(self.model_dir), **kwargs)
        if self.scheduler is not None:
            pipe.scheduler = scheduler_class(self.scheduler).from_config(pipe.scheduler.config)
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def check_inputs(self, spec: GenerationSpec) -> None:
        """Refuse what this generator cannot render, naming the argument, its value and the rule."""
        if spec.prompt is None or not spec.prompt.strip():
            raise InvalidInput("prompt", "non_empty", f"model {self.name!r} needs a non-empty `prompt` but got "
                               f"{spec.prompt!r}")
        if spec.width < 1 or spec.height < 1:
            raise InvalidInput("size", "size_range", f"`height` and `width` have to be positive but are "
                               f"{spec.height} and {spec.width}")
        if spec.height % SIZE_MULTIPLE or spec.width % SIZE_MULTIPLE:
            raise InvalidInput("size", "size_multiple_of_8", f"`height` and `width` have to be divisible by "
                               f"{SIZE_MULTIPLE} but are {spec.height} and {spec.width}")
        if spec.n < 1:
            raise InvalidInput("n", "n_range", f"`n` has to be at least 1 but is {spec.n}")
        if spec.steps is not None and spec.steps < 1:
            raise InvalidInput("steps", "steps_range", f"`steps` has to be at least 1 but is {spec.steps}")

    def generate(self, spec: GenerationSpec) -> list[GeneratedImage]:
        """Render ``spec.n`` images for ``spec.prompt``; image ``i`` is seeded ``spec.seed + i``."""
        self.check_inputs(spec)
        result = self.render_batch([spec], [progress.get()])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def extra_arguments(self, specs: Sequence[GenerationSpec]) -> dict[str, Any]:
        """More arguments of the pipeline call for a batch (image-to-image adds its images and strength)."""
        return {}

    def steps_run(self, spec: GenerationSpec, steps: int) -> int:
        """How many denoising steps the pipeline runs (progress reports count to this)."""
        return steps

    def batch_key(self, spec: GenerationSpec) -> tuple[Any, ...]:
        """Requests with equal keys can share one pipeline call: size and number of steps."""
        return spec.width, spec.height, spec.steps or self.default_steps

    def render_batch(self, specs: Sequence[GenerationSpec], sinks: Sequence[Progress | None]
                     ) -> list[list[GeneratedImage] | BaseException]:
        """Render several requests (equal ``batch_key``) in one pipeline call: one prompt row and one seeded
        ``torch.Generator`` per image, so each image is what the same request would get alone.

        ``sinks`` are the requests' progress reporters (``generators.base.progress``). A lone request's reporter may
        raise to cancel it (the pipeline stops); in a batch, a reporter that raises marks its own request failed with
        that exception, and the others go on.
        """
        import torch

        if len({self.batch_key(s) for s in specs}) != 1:
            raise ValueError("a batch needs requests of one size and number of steps")
        width, height, steps = self.batch_key(specs[0])[:3]
        prompts, negatives, seeds, owner = [], [], [], []
        for k, spec in enumerate(specs):
            for i in range(spec.n):
                prompts.append(spec.prompt or "")
                negatives.append(spec.negative_prompt or "")
                seeds.append(spec.seed + i)
                owner.append(k)
        failed: dict[int, BaseException] = {}

        def tell(kind: str, **data: Any) -> None:
            for k, sink in enumerate(sinks):
                if sink is None or k in failed:
                    continue
                if len(specs) == 1:
                    sink(kind, data)  # may raise: the lone request stops here
                    continue
                try:
                    sink(kind, data)
                except Exception as exc:  # noqa: BLE001 - this request alone is given up
                    failed[k] = exc

        total = self.steps_run(specs[0], steps)

        def on_step_end(_pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            tell("step", step=step + 1, of=total)
            return tensors

        with self._lock, torch.inference_mode():
            tell("step", step=0, of=total)
            generators = [torch.Generator(device=self.device).manual_seed(seed) for seed in seeds]
            output = self._pipe(
                prompt=prompts,
                negative_prompt=negatives if any(negatives) else None,
                height=height,
                width=width,
                num_images_per_prompt=1,
                num_inference_steps=steps,
                guidance_scale=self.guidance_scale,
                generator=generators,
                output_type="pil",
                callback_on_step_end=on_step_end,
                **self.extra_arguments(specs),
            )
        results: list[list[GeneratedImage] | BaseException] = [failed.get(k) or [] for k in range(len(specs))]
        for image, seed, k in zip(output.images, seeds, owner, strict=True):
            out = results[k]
            if isinstance(out, list):
                out.append(GeneratedImage(image=image, index=len(out), seed=seed, model=self.name,
                                          model_revision=self.revision))
        return results


class DiffusersImg2Img(DiffusersTxt2Img):
    """Image-to-image with the same directory layouts (``AutoPipelineForImage2Image``): each image starts from the
    request's ``init_image`` and moves ``strength`` of the way to the prompt (the pipeline runs
    ``int(steps * strength)`` of the steps). Requests of one size, step count and strength share a batch."""

    AUTO_PIPELINE = "AutoPipelineForImage2Image"

    def check_inputs(self, spec: GenerationSpec) -> None:
        super().check_inputs(spec)
        if spec.init_image is None:
            raise InvalidInput("init_image", "required", f"model {self.name!r} is image-to-image: send `init_image`")
        if spec.strength is None or not 0 < spec.strength <= 1:
            raise InvalidInput("strength", "strength_range", f"`strength` must be in (0, 1] but is {spec.strength}")
        if tuple(spec.init_image.size) != (spec.width, spec.height):
            raise InvalidInput("init_image", "init_image_size", f"`init_image` is {spec.init_image.size}, the "
                               f"request {spec.width}x{spec.height}")

    def batch_key(self, spec: GenerationSpec) -> tuple[Any, ...]:
        return (*super().batch_key(spec), spec.strength)

    def steps_run(self, spec: GenerationSpec, steps: int) -> int:
        return max(1, int(steps * (spec.strength or 1.0)))

    def extra_arguments(self, specs: Sequence[GenerationSpec]) -> dict[str, Any]:
        return {"image": [spec.init_image for spec in specs for _ in range(spec.n)], "strength": specs[0].strength}
