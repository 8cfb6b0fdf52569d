"""The brand gate as an attack target: ``quality.brand_score.BrandScorer``'s ``score``, differentiable end to end.

The score is the kit-weighted mean of up to three terms (see :mod:`quality.brand_score`), each rebuilt in torch on
the same CLIP network and the same constants:

- ``text`` and ``references`` run the image tower of the scorer's own open_clip model (shared, not copied) on
  pixels from the model's own inference transform, read off ``ClipModel.preprocess`` and replayed with
  :mod:`adversarial.target_ops` (Pillow's resize, bit-exact forward, straight-through rounding; BPDA in the sense of
  Athalye, Carlini & Wagner 2018, arXiv:1802.00420); text and reference embeddings are constants of the kit.
  CLIP: Radford et al. 2021, arXiv:2103.00020.
- ``palette`` is a hard count; :mod:`adversarial.target_palette` gives it its exact forward value and the gradient
  of a logistic relaxation of the CIEDE2000 tolerance (a straight-through estimator).

So the forward value matches production up to float arithmetic (the CLIP tower on the same pixels), and a flip the
attack finds is confirmed by ``verdict``, which runs the real scorer on 8-bit images.

The margin is ``(threshold - score) / (threshold * (1 - threshold))``, as for the quality target: the distance to
the threshold scaled by the slope of the log-odds there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from adversarial.base import FAIL, PASS
from adversarial.target_ops import (
    Filter,
    FrozenTarget,
    check_threshold,
    clamp,
    margin_logits,
    pil_resize,
    quantise,
    score_value,
)
from adversarial.target_palette import palette_compliance
from quality.base import ScoreContext
from quality.brand import DEFAULT_OFF_BRAND, PALETTE_MAX_SIDE, BrandKit
from quality.brand_score import DEFAULT_REFERENCE_FLOOR, BrandScorer
from quality.clip_model import ClipModel

# The release policy's default ``min_brand`` (policies/mediagate/config/data.json, defaults.release).
DEFAULT_THRESHOLD = 0.2

# Steps of an open_clip inference transform that do nothing to an RGB PIL image beyond what is replayed here.
_PASS_THROUGH = {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb"}


class UnsupportedPreprocess(ValueError):
    """The CLIP model's inference transform has a step this target cannot replay differentiably."""


@dataclass(frozen=True)
class ClipPreprocess:
    """torchvision's ``Resize`` (shortest side, or an exact ``(height, width)``), ``CenterCrop``, ``ToTensor`` and
    ``Normalize`` on a PIL image, as open_clip builds them."""

    size: tuple[int, ...]
    kind: Filter
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, transform: Any) -> ClipPreprocess:
        """Read the parameters off a ``torchvision.transforms.Compose``; refuse any step it cannot replay."""
        from torchvision.transforms import CenterCrop, InterpolationMode, Normalize, Resize

        found: dict[str, Any] = {}
        for step in getattr(transform, "transforms", [transform]):
            name = getattr(step, "__name__", type(step).__name__)
            if isinstance(step, Resize) and "resize" not in found:
                if step.max_size is not None or step.interpolation not in (InterpolationMode.BICUBIC,
                                                                           InterpolationMode.BILINEAR):
                    raise UnsupportedPreprocess(f"the CLIP transform's {step} has a max_size or an interpolation "
                                                f"other than bicubic or bilinear")
                found["resize"] = step
            elif isinstance(step, CenterCrop) and "resize" in found and "crop" not in found:
                found["crop"] = step
            elif isinstance(step, Normalize) and "crop" in found and "normalize" not in found:
                found["normalize"] = step
            elif name not in _PASS_THROUGH:
                raise UnsupportedPreprocess(f"the CLIP transform has a step this target cannot replay "
                                            f"differentiably: {step!r} (known: Resize, CenterCrop, Normalize and "
                                            f"{', '.join(sorted(_PASS_THROUGH))}, in that order)")
        missing = [k for k in ("resize", "crop", "normalize") if k not in found]
        if missing:
            raise UnsupportedPreprocess(f"the CLIP transform {transform!r} lacks {', '.join(missing)}")
        resize, crop, normalize = found["resize"], found["crop"], found["normalize"]
        size = (resize.size,) if isinstance(resize.size, int) else tuple(resize.size)
        kind: Filter = "bicubic" if resize.interpolation == InterpolationMode.BICUBIC else "bilinear"
        return cls(size, kind, (int(crop.size[0]), int(crop.size[1])), tuple(normalize.mean), tuple(normalize.std))

    def __call__(self, levels: torch.Tensor) -> torch.Tensor:
        """Normalised NCHW pixels (float32) from 8-bit levels, as the transform makes them from a PIL image."""
        height, width = levels.shape[-2:]
        if len(self.size) == 1:
            # torchvision's _compute_resized_output_size: the shortest side to `size`, the other scaled and floored.
            short, long = min(width, height), max(width, height)
            new_short, new_long = self.size[0], int(self.size[0] * long / short)
            new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
        else:
            new_height, new_width = self.size
        levels = pil_resize(levels, (new_width, new_height), self.kind)
        crop_height, crop_width = self.crop
        if crop_height > new_height or crop_width > new_width:
            raise UnsupportedPreprocess(f"the CLIP transform crops {crop_height}x{crop_width} out of a "
                                        f"{new_height}x{new_width} image, which torchvision pads; not replayed")
        top, left = int(round((new_height - crop_height) / 2.0)), int(round((new_width - crop_width) / 2.0))
        pixels = levels[..., top:top + crop_height, left:left + crop_width].float() / 255.0
        mean = torch.tensor(self.mean, device=pixels.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=pixels.device).view(1, -1, 1, 1)
        return (pixels - mean) / std


class BrandTarget(FrozenTarget):
    """FAIL when the brand score against ``kit`` is under ``threshold`` (the release policy's
    ``score < min_brand``).

    ``logits[:, FAIL] - logits[:, PASS] = (threshold - score) / (threshold * (1 - threshold))``; ``verdict`` asks
    a ``BrandScorer`` built with the same ``reference_floor``, ``temperature`` and ``palette_max_side``. The target
    shares ``clip``'s network (it is registered as a submodule, and its parameters stop requiring gradients), so
    moving the target moves the scorer's model too.
    """

    differentiable = True
    off_class: torch.Tensor
    descriptor_class: torch.Tensor
    anchors: torch.Tensor
    palette_lab: torch.Tensor

    def __init__(self, clip: ClipModel, kit: BrandKit, threshold: float = DEFAULT_THRESHOLD, *,
                 reference_floor: float = DEFAULT_REFERENCE_FLOOR, temperature: float | None = None,
                 palette_max_side: int = PALETTE_MAX_SIDE) -> None:
        super().__init__()
        if not isinstance(kit, BrandKit):
            raise TypeError(f"`kit` has to be a quality.brand.BrandKit but is {type(kit).__name__}")
        self.threshold = check_threshold("brand", threshold)
        self.scorer = BrandScorer(clip, reference_floor=reference_floor, temperature=temperature,
                                  palette_max_side=palette_max_side)
        self.kit = kit
        self.name = "brand"
        self.preprocess = ClipPreprocess.of(clip.preprocess)
        self.network = clip.model
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)

        device = clip.device
        off_texts = kit.off_brand or DEFAULT_OFF_BRAND
        texts = clip.encode_texts([*kit.descriptors, *off_texts])
        self.register_buffer("off_class", F.normalize(texts[len(kit.descriptors):].mean(0), dim=-1).to(device),
                             persistent=False)
        descriptors = texts[:len(kit.descriptors)]
        self.register_buffer("descriptor_class", F.normalize(descriptors.mean(0), dim=-1).to(device)
                             if kit.descriptors else torch.empty(0, device=device), persistent=False)
        self.register_buffer("anchors", kit.image_embeddings(clip).to(device), persistent=False)
        self.register_buffer("palette_lab", torch.from_numpy(kit.palette_lab).to(device), persistent=False)

        present = {"palette": bool(kit.palette), "text": bool(kit.descriptors), "references": len(self.anchors) > 0}
        weights = {"palette": kit.weights.palette, "text": kit.weights.text, "references": kit.weights.references}
        self.terms = tuple((name, weights[name]) for name in ("palette", "text", "references")
                           if present[name] and weights[name] > 0)
        if not self.terms:
            # Fail closed, as the scorer does: a score made of nothing must not look attackable or robust.
            raise ValueError(f"brand kit {kit.tenant}/{kit.brand} gives no weight to any term it has")
        self.description = (f"brand score ({' + '.join(n for n, _ in self.terms)}) against {kit.tenant}/{kit.brand}"
                            f" < {self.threshold:g} fails; margin scaled by the log-odds slope at the threshold")
        self.eval()

    def embed(self, levels: torch.Tensor) -> torch.Tensor:
        """Unit-length CLIP image embeddings (float32) of 8-bit levels, differentiable."""
        dtype = next(self.network.parameters()).dtype
        features = self.network.encode_image(self.preprocess(levels).to(dtype))
        return F.normalize(features.float(), dim=-1)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """The brand score per image, as the torch path computes it (float64)."""
        levels = quantise(images.to(self.off_class.device))
        values: dict[str, torch.Tensor] = {}
        names = {name for name, _ in self.terms}
        if names & {"text", "references"}:
            embeddings = self.embed(levels)
            if "text" in names:
                contrast = embeddings @ self.descriptor_class - embeddings @ self.off_class
                values["text"] = torch.sigmoid(self.scorer.temperature * contrast)
            if "references" in names:
                similarity = (embeddings @ self.anchors.T).max(dim=1).values.clamp(-1.0, 1.0)
                floor = self.scorer.reference_floor
                values["references"] = ((similarity - floor) / (1.0 - floor)).clamp(0.0, 1.0)
        if "palette" in names:
            values["palette"] = palette_compliance(levels, self.palette_lab, self.kit.palette_max_delta_e,
                                                   self.scorer.palette_max_side)
        total = sum(weight for _, weight in self.terms)
        mixed = sum((weight * values[name].double() for name, weight in self.terms),
                    torch.zeros(levels.shape[0], dtype=torch.float64, device=levels.device))
        return clamp(mixed / total, 0.0, 1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        slope = 1.0 / (self.threshold * (1.0 - self.threshold))
        return margin_logits(((self.threshold - self.score(images)) * slope).float())

    def verdict(self, images: Sequence[Image.Image]) -> list[int]:
        results = self.scorer.score(images, ScoreContext(tenant=self.kit.tenant, brand=self.kit))
        # A kit was given, so an empty answer is a scorer fault: score_value raises rather than pass the image.
        return [FAIL if score_value(values, "score", i) < self.threshold else PASS
                for i, values in enumerate(results)]
