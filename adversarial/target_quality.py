"""The perceptual-quality gate as an attack target: ``quality.perceptual``'s ``quality`` rebuilt in torch.

Same formula (:func:`quality.perceptual.quality_score`), same constants (imported, not copied), same pixels: the
area-averaging downscale to ``MAX_SIDE`` (Pillow's BOX filter) and the 8-bit BT.601 luma of ``convert("L")`` come
from :mod:`adversarial.target_ops`, which matches Pillow bit for bit in the forward pass and passes gradients
straight through its roundings (BPDA with the identity; Athalye, Carlini & Wagner 2018, arXiv:1802.00420). The
clipped shares are counts of luma levels at or beyond a cut-off; their forward value is the exact count and their
gradient is that of a logistic relaxation, ``sigmoid((cut-off + 0.5 - luma) / CLIP_TEMPERATURE)`` for the shadows
(mirrored for the highlights): the straight-through estimator of Bengio, Léonard & Courville 2013
(arXiv:1308.3432) with a sigmoid surrogate. The forward value therefore equals production's up to float64 summation
order (well under 1e-9).

The margin is ``(threshold - quality) / (threshold * (1 - threshold))``: the raw distance to the threshold, scaled
by the slope of the log-odds there, so near the threshold it equals ``logit(threshold) - logit(quality)`` (as the
NSFW target's margin) while staying finite for the quality of 0 that any total defect (a flat, black or fully
clipped frame) gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from adversarial.base import FAIL, PASS
from adversarial.target_ops import (
    FrozenTarget,
    check_threshold,
    clamp,
    margin_logits,
    pil_luma,
    pil_resize,
    quantise,
    score_value,
)
from quality.base import ScoreContext
from quality.perceptual import (
    BRIGHT_CLIP,
    CONTRAST_FULL,
    DARK_CLIP,
    MAX_SIDE,
    SHARPNESS_HALF,
    PerceptualScorer,
)

# The release policy's default ``min_quality`` (policies/mediagate/config/data.json, defaults.release).
DEFAULT_THRESHOLD = 0.15

# Width, in luma levels, of the logistic that stands in for the clipping cut-offs in the backward pass: one level,
# the quantisation step, so a pixel feels the cut-off from a few levels away and not from across the histogram.
CLIP_TEMPERATURE = 1.0


def _share(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Per-image mean of ``hard`` in the forward pass with the gradient of the mean of ``soft``."""
    hard_mean, soft_mean = hard.double().flatten(1).mean(1), soft.flatten(1).mean(1)
    return hard_mean + (soft_mean - soft_mean.detach())


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt`` with a zero (not infinite) gradient at 0, where a flat image puts the luma's variance."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


def perceptual_quality(images: torch.Tensor) -> torch.Tensor:
    """``quality.perceptual.measure(image)["quality"]`` per NCHW image in [0, 1], differentiable (float64)."""
    levels = quantise(images)
    height, width = levels.shape[-2:]
    longest = max(width, height)
    if longest > MAX_SIDE:
        scale = MAX_SIDE / longest
        levels = pil_resize(levels, (max(1, round(width * scale)), max(1, round(height * scale))), "box")
    luma = pil_luma(levels)
    if luma.shape[-2] < 3 or luma.shape[-1] < 3:
        lap_var = torch.zeros(luma.shape[0], dtype=luma.dtype, device=luma.device)
    else:
        # Pech-Pacheco et al. 2000 (ICPR): variance of the 4-neighbour Laplacian over the interior pixels.
        lap = (luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] + luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:]
               - 4.0 * luma[:, 1:-1, 1:-1])
        lap_var = lap.flatten(1).var(dim=1, correction=0)
    sharpness = lap_var / (lap_var + SHARPNESS_HALF)
    flat = luma.flatten(1)
    exposure = flat.mean(1) / 255.0
    contrast = _safe_sqrt(flat.var(dim=1, correction=0)) / 255.0
    clipped = (_share(flat <= DARK_CLIP, torch.sigmoid((DARK_CLIP + 0.5 - flat) / CLIP_TEMPERATURE))
               + _share(flat >= BRIGHT_CLIP, torch.sigmoid((flat - BRIGHT_CLIP + 0.5) / CLIP_TEMPERATURE)))
    exposure_factor = 1.0 - (2.0 * exposure - 1.0).abs() ** 3
    contrast_factor = (contrast / CONTRAST_FULL).clamp(max=1.0)
    return clamp(sharpness * exposure_factor * (1.0 - clipped) * contrast_factor, 0.0, 1.0)


class QualityTarget(FrozenTarget):
    """FAIL when the perceptual ``quality`` is under ``threshold`` (the release policy's ``quality < min_quality``).

    ``logits[:, FAIL] - logits[:, PASS] = (threshold - quality) / (threshold * (1 - threshold))``; ``verdict`` asks
    ``quality.perceptual.PerceptualScorer``. The measure has no weights; an empty parameter only tells torchattacks
    (which reads the device from the first parameter) where the target lives.
    """

    differentiable = True

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        super().__init__()
        self.threshold = check_threshold("quality", threshold)
        self.name = "quality"
        self.description = (f"perceptual quality (Laplacian sharpness x exposure x clipping x contrast) < "
                            f"{self.threshold:g} fails; margin scaled by the log-odds slope at the threshold")
        self.device_anchor = torch.nn.Parameter(torch.empty(0), requires_grad=False)
        self.scorer = PerceptualScorer()
        self.eval()

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """The perceptual quality per image, as the torch path computes it (float64)."""
        return perceptual_quality(images.to(self.device_anchor.device))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        slope = 1.0 / (self.threshold * (1.0 - self.threshold))
        return margin_logits(((self.threshold - self.score(images)) * slope).float())

    def verdict(self, images: Sequence[Image.Image]) -> list[int]:
        results = self.scorer.score(images, ScoreContext())
        return [FAIL if score_value(values, "quality", i) < self.threshold else PASS
                for i, values in enumerate(results)]
