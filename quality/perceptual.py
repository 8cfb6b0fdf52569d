"""No-reference perceptual basics: sharpness, exposure, clipping, contrast, colourfulness and one ``quality`` number.

These are cheap, model-free checks that catch the obvious failures of a generator (a black or blown-out frame, a flat
field, a heavy blur); they say nothing about aesthetics or prompt fidelity. All measures except colourfulness are
taken on the 8-bit luminance PIL's ``"L"`` mode gives (ITU-R BT.601 luma, rounded), scaled to 0..1; the clipping
thresholds are then exact integer levels (<= 2, >= 253).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

# Images are measured at most this many pixels on their longest side (area-averaged downscale). It bounds the cost
# (~7 ms per 512x512 image on one CPU core) and makes the scale-dependent Laplacian comparable across output sizes.
MAX_SIDE = 512

# Laplacian variance (on 0..255 luminance) at which ``sharpness`` is 0.5. 100 is the blur cut-off commonly used with
# the 3x3 Laplacian on 8-bit greyscale; sharp images reach several hundred to thousands.
SHARPNESS_HALF = 100.0

# Luminance std (0..1) at and above which contrast costs no quality; a typical photograph has 0.15-0.3.
CONTRAST_FULL = 0.1

# 8-bit luminance levels at or below / at or above which a pixel counts as clipped shadow / highlight.
DARK_CLIP = 2
BRIGHT_CLIP = 253


def _prepare(image: Image.Image) -> Image.Image:
    """The image as RGB, downscaled to ``MAX_SIDE``. Alpha is dropped, as ``convert("RGB")`` does."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    if width == 0 or height == 0:
        raise ValueError(f"`image` has to be non-empty but is {width}x{height}")
    longest = max(width, height)
    if longest > MAX_SIDE:
        scale = MAX_SIDE / longest
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = rgb.resize(size, resample=Image.Resampling.BOX)
    return rgb


def laplacian_variance(luma255: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the interior pixels (Pech-Pacheco et al. 2000).

    "Diatom autofocusing in brightfield microscopy: a comparative study", ICPR 2000: the variance of the Laplacian
    response rises with in-focus edge energy and falls as the image blurs. Border pixels are skipped rather than
    padded so that the padding cannot invent or hide edges. Images under 3x3 have no interior and score 0.
    """
    if luma255.shape[0] < 3 or luma255.shape[1] < 3:
        return 0.0
    centre = luma255[1:-1, 1:-1]
    lap = luma255[:-2, 1:-1] + luma255[2:, 1:-1] + luma255[1:-1, :-2] + luma255[1:-1, 2:] - 4.0 * centre
    return float(lap.var())


def colorfulness(rgb255: np.ndarray) -> float:
    """Hasler & Süsstrunk's colourfulness M on 0..255 RGB (Proc. SPIE 5007, 2003).

    ``M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2)`` with ``rg = R - G`` and
    ``yb = (R + G) / 2 - B``. In the paper's scale 0 is greyscale, ~33 "moderately", ~59 "quite" and ~109
    "extremely" colourful. Reported for policy and audit; it does not enter ``quality``.
    """
    r, g, b = rgb255[..., 0], rgb255[..., 1], rgb255[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def quality_score(sharpness: float, exposure: float, clipped: float, contrast: float) -> float:
    """Combine the measures into 0..1: the product of four factors, each the share of quality a defect leaves.

    ``quality = sharpness * (1 - |2 * exposure - 1|^3) * (1 - clipped) * min(1, contrast / CONTRAST_FULL)``

    - blur: ``sharpness = v / (v + SHARPNESS_HALF)`` from the Laplacian variance ``v``;
    - exposure: 1 at mid-grey, falling slowly at first and to 0 for an all-black or all-white frame;
    - clipping: the share of pixels that are neither crushed nor blown (``clipped_dark + clipped_bright``);
    - contrast: a ramp that reaches 1 at ``CONTRAST_FULL`` and is 0 for a flat field.

    A product, so any one total failure (flat, black, fully clipped, featureless) sinks the score to 0.
    """
    exposure_factor = 1.0 - abs(2.0 * exposure - 1.0) ** 3
    contrast_factor = min(1.0, contrast / CONTRAST_FULL)
    value = sharpness * exposure_factor * (1.0 - clipped) * contrast_factor
    return float(min(1.0, max(0.0, value)))


def measure(image: Image.Image) -> dict[str, float]:
    """All perceptual measures of one image (see the module and :func:`quality_score` for their meaning)."""
    rgb = _prepare(image)
    levels = np.asarray(rgb.convert("L"))
    luma255 = levels.astype(np.float64)
    lap_var = laplacian_variance(luma255)
    sharpness = lap_var / (lap_var + SHARPNESS_HALF)
    exposure = float(luma255.mean() / 255.0)
    clipped_dark = float(np.count_nonzero(levels <= DARK_CLIP) / levels.size)
    clipped_bright = float(np.count_nonzero(levels >= BRIGHT_CLIP) / levels.size)
    contrast = float(luma255.std() / 255.0)
    return {
        "quality": quality_score(sharpness, exposure, clipped_dark + clipped_bright, contrast),
        "sharpness": sharpness,
        "laplacian_var": lap_var,
        "exposure": exposure,
        "contrast": contrast,
        "clipped_dark": clipped_dark,
        "clipped_bright": clipped_bright,
        "colorfulness": colorfulness(np.asarray(rgb, dtype=np.float64)),
    }


class PerceptualScorer:
    """The model-free ``perceptual`` scorer; its ``quality`` feeds the release policy's ``min_quality`` rule.

    Noise is "sharp" to a Laplacian, so this scorer flags dead frames and blur, not garbage; semantic checks belong
    to other scorers.
    """

    name = "perceptual"
    version = "1"

    def score(self, images: Sequence[Image.Image]) -> list[dict[str, float]]:
        return [measure(image) for image in images]
