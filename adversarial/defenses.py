"""Input purification for the live scoring path, and the adaptive attacks that must be run against it.

``Purifier`` is the defense itself: a chain of PIL operations (JPEG re-encode, resize down and back up, Gaussian
blur) applied to an image before the scorers see it, built from a configuration string such as
``"jpeg:75,resize:0.75,blur:0.5"``. The same object runs in the gateway and in the evaluation, so what is evaluated
is what is deployed.

A purifier evaluated only against attacks that ignore it proves nothing: purification is a gradient-masking
defense, and Athalye, Carlini & Wagner (ICML 2018, arXiv:1802.00420, "Obfuscated Gradients Give a False Sense of
Security") broke JPEG, resizing and similar input transformations with two tools that ``DefendedTarget`` provides:

- BPDA (Backward Pass Differentiable Approximation, sec. 4.1): the forward pass runs the real, non-differentiable
  purification on 8-bit images (bit-exact with the live path); the backward pass uses a differentiable surrogate:
  the identity for JPEG (straight-through), and torch's own bilinear resize and Gaussian blur for those steps.
- EOT (Expectation over Transformation; Athalye, Engstrom, Ilyas & Kwok, ICML 2018, arXiv:1707.07397): the forward
  pass averages the target's logits over ``samples`` purifications with randomly drawn parameters around the
  configured ones (JPEG quality +-10, resize factor x[0.85, 1.15], blur sigma x[0.5, 1.5]), each through BPDA, so
  the gradient is the mean of the per-draw margin gradients: an attack on the defense's whole neighbourhood rather
  than one fixed point of it.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import nn

from adversarial.base import GateTarget, to_images, to_tensor

JPEG_SPREAD = 10  # EOT draws the JPEG quality uniformly in [q - 10, q + 10] (within 1..100)
RESIZE_SPREAD = 0.15  # EOT draws the resize factor as factor * U[0.85, 1.15] (within [0.05, 1])
BLUR_SPREAD = 0.5  # EOT draws the blur sigma as sigma * U[0.5, 1.5]


class PurifierSpecError(ValueError):
    """A purifier configuration string (or step) that cannot be built; the message names the offending part."""


class PurifyStep(Protocol):
    """One purification operation: exact on PIL images, a differentiable surrogate on tensors, and an EOT draw."""

    @property
    def spec(self) -> str: ...

    def apply(self, image: Image.Image) -> Image.Image: ...

    def approx(self, batch: torch.Tensor) -> torch.Tensor: ...

    def sample(self, rng: random.Random) -> PurifyStep: ...


@dataclass(frozen=True)
class Jpeg:
    """JPEG re-encode at ``quality`` (Pillow defaults otherwise: 4:2:0 chroma subsampling, standard tables).

    Surrogate: the identity (BPDA straight-through; JPEG is close to the identity on natural images).
    """

    quality: int

    def __post_init__(self) -> None:
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise PurifierSpecError(f"JPEG `quality` has to be an integer in [1, 100] but is {self.quality!r}")

    @property
    def spec(self) -> str:
        return f"jpeg:{self.quality}"

    def apply(self, image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=self.quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")

    def approx(self, batch: torch.Tensor) -> torch.Tensor:
        return batch

    def sample(self, rng: random.Random) -> Jpeg:
        return Jpeg(rng.randint(max(1, self.quality - JPEG_SPREAD), min(100, self.quality + JPEG_SPREAD)))


def _reduced(size: tuple[int, int], factor: float) -> tuple[int, int]:
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


@dataclass(frozen=True)
class Resize:
    """Bilinear downscale by ``factor`` (0 < factor <= 1) and back to the original size: drops detail above the
    reduced Nyquist frequency. Surrogate: torch's antialiased bilinear interpolation, the same filter as Pillow's."""

    factor: float

    def __post_init__(self) -> None:
        if not (isinstance(self.factor, int | float) and 0.0 < self.factor <= 1.0):
            raise PurifierSpecError(f"resize `factor` has to be a number in (0, 1] but is {self.factor!r}")

    @property
    def spec(self) -> str:
        return f"resize:{self.factor:g}"

    def apply(self, image: Image.Image) -> Image.Image:
        small = image.convert("RGB").resize(_reduced(image.size, self.factor), Image.Resampling.BILINEAR)
        return small.resize(image.size, Image.Resampling.BILINEAR)

    def approx(self, batch: torch.Tensor) -> torch.Tensor:
        height, width = batch.shape[-2:]
        small_w, small_h = _reduced((width, height), self.factor)
        small = F.interpolate(batch, size=(small_h, small_w), mode="bilinear", antialias=True, align_corners=False)
        return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)

    def sample(self, rng: random.Random) -> Resize:
        drawn = self.factor * rng.uniform(1.0 - RESIZE_SPREAD, 1.0 + RESIZE_SPREAD)
        return Resize(min(1.0, max(0.05, drawn)))


@dataclass(frozen=True)
class Blur:
    """Gaussian blur with standard deviation ``sigma`` pixels (Pillow's ``GaussianBlur(radius=sigma)``).
    Surrogate: a separable Gaussian kernel of radius ceil(3 sigma) with edge replication."""

    sigma: float

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, int | float) and math.isfinite(self.sigma) and 0.0 < self.sigma <= 10.0):
            raise PurifierSpecError(f"blur `sigma` has to be a number in (0, 10] but is {self.sigma!r}")

    @property
    def spec(self) -> str:
        return f"blur:{self.sigma:g}"

    def apply(self, image: Image.Image) -> Image.Image:
        return image.convert("RGB").filter(ImageFilter.GaussianBlur(radius=self.sigma))

    def approx(self, batch: torch.Tensor) -> torch.Tensor:
        radius = max(1, math.ceil(3.0 * self.sigma))
        offsets = torch.arange(-radius, radius + 1, dtype=batch.dtype, device=batch.device)
        kernel = torch.exp(-0.5 * (offsets / self.sigma) ** 2)
        kernel = kernel / kernel.sum()
        channels = batch.shape[1]
        padded = F.pad(batch, (radius, radius, radius, radius), mode="replicate")
        horizontal = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
        return F.conv2d(horizontal, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)

    def sample(self, rng: random.Random) -> Blur:
        return Blur(self.sigma * rng.uniform(1.0 - BLUR_SPREAD, 1.0 + BLUR_SPREAD))


def _parse_step(name: str, value: str) -> PurifyStep:
    if name == "jpeg":
        if not value.strip().isdigit():
            raise PurifierSpecError(f"JPEG `quality` has to be an integer in [1, 100] but is {value!r}")
        return Jpeg(int(value))
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if name == "resize":
        if not math.isfinite(number):
            raise PurifierSpecError(f"resize `factor` has to be a number in (0, 1] but is {value!r}")
        return Resize(number)
    if not math.isfinite(number):
        raise PurifierSpecError(f"blur `sigma` has to be a number in (0, 10] but is {value!r}")
    return Blur(number)


_STEP_NAMES = ("blur", "jpeg", "resize")


@dataclass(frozen=True)
class Purifier:
    """An ordered chain of purification steps, applied to each image before scoring (live) or judging (eval)."""

    steps: tuple[PurifyStep, ...]

    def __post_init__(self) -> None:
        # Fail closed: an empty chain configured as a defense would pass every image through untouched while the
        # configuration claims it is purified.
        if not self.steps:
            raise PurifierSpecError("a purifier needs at least one step (jpeg:Q, resize:F or blur:S)")

    @classmethod
    def from_spec(cls, spec: str) -> Purifier:
        """Parse ``"jpeg:75,resize:0.75,blur:0.5"``: comma-separated ``name:value`` steps, applied left to right."""
        if not spec.strip():
            raise PurifierSpecError("purifier spec is empty: name at least one step, e.g. 'jpeg:75'")
        steps: list[PurifyStep] = []
        parts = spec.split(",")
        for position, raw in enumerate(parts, start=1):
            part = raw.strip()
            where = f"step {position} of {len(parts)} ({part!r}) of purifier spec {spec!r}"
            if not part:
                raise PurifierSpecError(f"{where} is empty")
            name, colon, value = part.partition(":")
            name = name.strip().lower()
            if not colon or not value.strip():
                raise PurifierSpecError(f"{where} has to be NAME:VALUE, e.g. 'jpeg:75'")
            if name not in _STEP_NAMES:
                raise PurifierSpecError(f"{where} names an unknown operation {name!r}; known: {', '.join(_STEP_NAMES)}")
            try:
                steps.append(_parse_step(name, value.strip()))
            except PurifierSpecError as exc:
                raise PurifierSpecError(f"{where}: {exc}") from None
        return cls(tuple(steps))

    @property
    def spec(self) -> str:
        """The canonical configuration string (``from_spec(p.spec) == p``)."""
        return ",".join(step.spec for step in self.steps)

    def __call__(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """The purified 8-bit RGB images: the exact operation of the live path."""
        purified = []
        for image in images:
            current = image.convert("RGB")
            for step in self.steps:
                current = step.apply(current)
            purified.append(current)
        return purified

    def sample(self, rng: random.Random) -> Purifier:
        """One EOT draw: every step with parameters drawn around the configured ones."""
        return Purifier(tuple(step.sample(rng) for step in self.steps))

    def bpda(self, batch: torch.Tensor) -> torch.Tensor:
        """Forward: exactly ``self(to_images(batch))`` as a tensor; backward: through the steps' surrogates.

        Each step is ``g(x) + (f(x) - g(x)).detach()`` with ``f`` the real PIL operation on the 8-bit image and ``g``
        its surrogate (Athalye et al. 2018, sec. 4.1); the 8-bit rounding before the first step is straight-through.
        """
        current = batch
        for step in self.steps:
            with torch.no_grad():
                exact = to_tensor([step.apply(image) for image in to_images(current)]).to(batch.device, batch.dtype)
            surrogate = step.approx(current)
            current = surrogate + (exact - surrogate).detach()
        return current


class DefendedTarget(nn.Module):
    """A ``GateTarget`` whose every forward pass purifies first: what an adaptive attack aims at.

    ``mode="bpda"``: one deterministic pass through ``purifier.bpda``. ``mode="eot"``: the mean logits over
    ``samples`` draws of ``purifier.sample`` (one draw per sample for the whole batch, from a ``random.Random``
    seeded with ``seed``), all draws in one batched call of the inner target. ``verdict`` purifies the 8-bit images
    and asks the inner target's production verdict, as the live path would.
    """

    def __init__(self, target: GateTarget, purifier: Purifier, *, mode: Literal["bpda", "eot"] = "bpda",
                 samples: int = 8, seed: int = 0) -> None:
        super().__init__()
        if mode not in ("bpda", "eot"):
            raise ValueError(f"`mode` has to be 'bpda' or 'eot' but is {mode!r}")
        if samples < 1:
            raise ValueError(f"`samples` has to be at least 1 but is {samples}")
        self.target = target
        self.purifier = purifier
        self.mode = mode
        self.samples = samples if mode == "eot" else 1
        self.name = f"{target.name}[{purifier.spec}]"
        self.description = f"{target.description} (purified by {purifier.spec}, {mode} for attacks)"
        self.differentiable = bool(target.differentiable)
        self.training = bool(getattr(target, "training", False))  # see ``QueryCounter``: frozen targets stay frozen
        self._rng = random.Random(seed)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.mode == "bpda":
            return self.target(self.purifier.bpda(images))
        draws = [self.purifier.sample(self._rng) for _ in range(self.samples)]
        logits = self.target(torch.cat([draw.bpda(images) for draw in draws]))
        return logits.view(self.samples, images.shape[0], -1).mean(dim=0)

    def verdict(self, images: Sequence[Image.Image]) -> list[int]:
        return self.target.verdict(self.purifier(images))
