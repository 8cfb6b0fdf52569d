"""No-reference perceptual basics: sharpness, exposure, clipping, contrast, colourfulness, noise, JPEG blocking and
one ``quality`` number.

These are cheap, model-free checks that catch the obvious failures of a generator or of a lossy pipeline behind it (a
black or blown-out frame, a flat field, a heavy blur, sensor-like noise, a JPEG re-encode at low quality); they say
nothing about aesthetics or prompt fidelity. All measures except colourfulness are taken on the 8-bit luminance PIL's
``"L"`` mode gives (ITU-R BT.601 luma, rounded); the clipping thresholds are then exact integer levels (<= 2, >= 253).
Everything but ``blockiness`` is measured on a copy downscaled to ``MAX_SIDE``; ``blockiness`` needs the original
pixel grid, so it reads a window of the full-resolution image (``BLOCK_WINDOW``). ``noise_sigma`` and ``blockiness``
are reported for policy and audit; they do not enter ``quality``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pywt
from PIL import Image

from quality.base import FieldType, ScoreContext, ScoreValue

# Images are measured at most this many pixels on their longest side (area-averaged downscale). It bounds the cost
# (about 20 ms of CPU time per 512x512 image, a quarter of it the wavelet transform of ``noise_sigma``) and makes the
# scale-dependent Laplacian and noise estimate comparable across output sizes.
MAX_SIDE = 512

# Laplacian variance (on 0..255 luminance) at which ``sharpness`` is 0.5. 100 is the blur cut-off commonly used with
# the 3x3 Laplacian on 8-bit greyscale; sharp images reach several hundred to thousands.
SHARPNESS_HALF = 100.0

# Luminance std (0..1) at and above which contrast costs no quality; a typical photograph has 0.15-0.3.
CONTRAST_FULL = 0.1

# 8-bit luminance levels at or below / at or above which a pixel counts as clipped shadow / highlight.
DARK_CLIP = 2
BRIGHT_CLIP = 253

# The 75th percentile of the standard normal distribution (scipy.stats.norm.ppf(0.75)): the median of |N(0, sigma)|
# is this times sigma, which turns a median absolute wavelet coefficient into a noise standard deviation.
_MAD_TO_SIGMA = 0.6744897501960817

# Wavelet coefficients this small (in 8-bit levels) are floating-point residue of a flat region, not signal or noise.
_ZERO_COEFFICIENT = 1e-9

# JPEG codes luminance in 8x8 blocks aligned with the top-left corner (ITU-T T.81).
BLOCK = 8

# ``blockiness`` is measured on at most this many pixels per side of the full-resolution image: a centred window whose
# origin stays on the 8x8 grid, so that it bounds the cost without moving the block boundaries.
BLOCK_WINDOW = 1024

# Added to both mean differences of the blockiness ratio, in 8-bit levels: one quantisation step, so that a flat or
# nearly flat image reads as unblocked (1.0) instead of dividing by zero.
_BLOCK_EPS = 1.0


def _as_rgb(image: Image.Image) -> Image.Image:
    """The image as RGB at full resolution. Alpha is dropped, as ``convert("RGB")`` does."""
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"`image` has to be non-empty but is {width}x{height}")
    return image if image.mode == "RGB" else image.convert("RGB")


def _prepare(rgb: Image.Image) -> Image.Image:
    """The RGB image downscaled to ``MAX_SIDE`` (area average); smaller images are returned as they are."""
    width, height = rgb.size
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


def noise_sigma(luma255: np.ndarray) -> float:
    """Standard deviation of additive white Gaussian noise, in 8-bit levels, by Donoho's wavelet MAD estimator.

    D. L. Donoho and I. M. Johnstone, "Ideal spatial adaptation by wavelet shrinkage", Biometrika 81(3), 1994,
    sec. 4.2: ``sigma = median(|HH|) / 0.6745`` over the finest diagonal (HH) detail coefficients of a Daubechies-2
    wavelet transform, which natural image content barely reaches and noise fills. As in scikit-image's
    ``restoration.estimate_sigma`` (whose result this reproduces on images without flat regions), zero coefficients
    are left out as masked regions; here "zero" includes the ~1e-14 rounding residue a flat region leaves, which
    scikit-image counts as signal. An image with no coefficient left (a flat field) has no measurable noise: 0.
    Texture as fine as one pixel also reads as noise, so clean but detailed photographs reach a level or two. Noise
    added to each RGB channel shows in the luminance at about 0.67 times its sigma (the norm of the BT.601 weights),
    and an area-averaging downscale to ``MAX_SIDE`` lowers it further.
    """
    _, (_, _, diagonal) = pywt.dwt2(luma255, "db2", mode="symmetric")
    magnitudes = np.abs(diagonal)
    magnitudes = magnitudes[magnitudes > _ZERO_COEFFICIENT]
    if magnitudes.size == 0:
        return 0.0
    return float(np.median(magnitudes) / _MAD_TO_SIGMA)


def _block_window(rgb: Image.Image) -> np.ndarray:
    """0..255 luminance of the centred ``BLOCK_WINDOW`` crop of the full-resolution image, origin on the 8x8 grid."""
    width, height = rgb.size
    left = max(0, (width - BLOCK_WINDOW) // 2) // BLOCK * BLOCK
    top = max(0, (height - BLOCK_WINDOW) // 2) // BLOCK * BLOCK
    window = rgb.crop((left, top, min(width, left + BLOCK_WINDOW), min(height, top + BLOCK_WINDOW)))
    return np.asarray(window.convert("L"), dtype=np.float64)


def blockiness(luma255: np.ndarray) -> float:
    """How much stronger luminance steps are across the 8x8 block boundaries than inside the blocks; 1 = no blocking.

    The ratio of the two spatial features of Wang, Sheikh & Bovik, "No-reference perceptual quality assessment of
    JPEG compressed images", Proc. IEEE ICIP 2002, vol. 1, pp. 477-480: ``B``, the mean absolute difference between
    horizontally or vertically adjacent pixels that straddle a block boundary (columns/rows 7|8, 15|16, ...), over
    ``A``, the mean absolute difference between adjacent pixels within a block, pooled over both directions:
    ``(B + 1) / (A + 1)`` in 8-bit levels (the 1 keeps flat images at 1.0). The paper feeds ``B`` and ``A`` into a
    model fitted to LIVE's JPEG subjective scores; the bare ratio needs no fitted parameter. Content without a grid
    scores about 1; a JPEG re-encode at quality 10 of a photograph scores about 2 to 3. The grid is assumed to start
    at the top-left pixel, as it does for a JPEG decoded at its own size. Images no more than 8 pixels in both
    directions have no boundary and score 1.
    """
    steps_h = np.abs(np.diff(luma255, axis=1))
    steps_v = np.abs(np.diff(luma255, axis=0))
    edge_h = np.arange(steps_h.shape[1]) % BLOCK == BLOCK - 1
    edge_v = np.arange(steps_v.shape[0]) % BLOCK == BLOCK - 1
    across = [steps_h[:, edge_h], steps_v[edge_v]]
    within = [steps_h[:, ~edge_h], steps_v[~edge_v]]
    n_across = sum(a.size for a in across)
    n_within = sum(a.size for a in within)
    if n_across == 0:
        return 1.0
    mean_across = sum(float(a.sum()) for a in across) / n_across
    mean_within = sum(float(a.sum()) for a in within) / n_within if n_within else 0.0
    return (mean_across + _BLOCK_EPS) / (mean_within + _BLOCK_EPS)


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


def measure(image: Image.Image) -> dict[str, ScoreValue]:
    """All perceptual measures of one image (see the module and :func:`quality_score` for their meaning)."""
    full = _as_rgb(image)
    rgb = _prepare(full)
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
        "noise_sigma": noise_sigma(luma255),
        "blockiness": blockiness(_block_window(full)),
    }


class PerceptualScorer:
    """The model-free ``perceptual`` scorer; its ``quality`` feeds the release policy's ``min_quality`` rule.

    Noise is "sharp" to a Laplacian, so ``quality`` flags dead frames and blur, not garbage; ``noise_sigma`` and
    ``blockiness`` let a policy catch noise and JPEG damage; semantic checks belong to other scorers. Version 2 added
    ``noise_sigma`` and ``blockiness``; the version-1 fields and ``quality`` are unchanged.
    """

    name = "perceptual"
    version = "2"
    fields: dict[str, FieldType] = {
        k: "float" for k in ("quality", "sharpness", "laplacian_var", "exposure", "contrast", "clipped_dark",
                             "clipped_bright", "colorfulness", "noise_sigma", "blockiness")
    }

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]:
        return [measure(image) for image in images]
