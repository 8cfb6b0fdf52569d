"""What the gate targets share: Pillow's 8-bit image operations as differentiable torch ops, the margin-to-logits
map, and the frozen ``nn.Module`` they are.

The production scorers see an image through Pillow: ``resize`` (BOX, BILINEAR, BICUBIC, NEAREST), RGB to ``"L"``
conversion, each result stored in 8 bits. The ops here reproduce Pillow's fixed-point arithmetic (``Resample.c``:
integer coefficients with 22 fractional bits, a rounding shift and a clip after each of its two passes; ``Convert.c``:
the ``L24`` luma macro) in float64, where every intermediate value is an exact integer, so the forward pass equals
Pillow's output bit for bit. Rounding has no useful gradient, so the backward pass treats every rounding as the
identity: the straight-through estimator (Bengio, Léonard & Courville 2013, arXiv:1308.3432), which is the
Backward Pass Differentiable Approximation of Athalye, Carlini & Wagner 2018 ("Obfuscated Gradients Give a False
Sense of Security", ICML, arXiv:1802.00420, sec. 4.1) with the identity as the approximation. Clipping keeps its
true gradient (zero outside the range, one on its bounds).

Tensors here are NCHW "levels": float64 values on the 0..255 scale, integral in the forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal, Self

import numpy as np
import PIL
import torch
from PIL import Image

from adversarial.base import FAIL, PASS

Filter = Literal["box", "bilinear", "bicubic"]

_PILLOW_MAJOR = int(PIL.__version__.split(".")[0])

# Pillow's Resample.c: coefficients of 8-bit resampling are integers with this many fractional bits (32 - 8 - 2).
PRECISION_BITS = 22


def _box(x: np.ndarray) -> np.ndarray:
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


def _triangle(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _bicubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic convolution with a = -0.5 (Keys 1981, IEEE Trans. ASSP 29(6)), as Pillow implements it.
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


# filter -> (support in input pixels at scale 1, kernel), as in Pillow's Resample.c.
_FILTERS: dict[str, tuple[float, Callable[[np.ndarray], np.ndarray]]] = {
    "box": (0.5, _box),
    "bilinear": (1.0, _triangle),
    "bicubic": (2.0, _bicubic),
}


def resample_matrix(in_size: int, out_size: int, kind: Filter) -> np.ndarray:
    """``(out_size, in_size)`` float64 matrix of Pillow's fixed-point coefficients (integers, scaled by 2**22).

    Pillow's ``precompute_coeffs`` and ``normalize_coeffs_8bpc``: the filter is widened by the downscale factor (so
    downscaling averages, i.e. antialiases), truncated to the image, normalised to sum 1, then rounded half away
    from zero to ``PRECISION_BITS`` fractional bits.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"`in_size` and `out_size` have to be at least 1 but are {in_size} and {out_size}")
    if kind not in _FILTERS:
        raise ValueError(f"`kind` has to be one of {', '.join(_FILTERS)} but is {kind!r}")
    support_1, kernel = _FILTERS[kind]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support_1 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    centre = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(centre - support + 0.5).astype(np.int64), 0)
    count = np.minimum(np.trunc(centre + support + 0.5).astype(np.int64), in_size) - xmin
    offsets = np.arange(ksize)[None, :]
    valid = offsets < count[:, None]
    weights = np.where(valid, kernel((offsets + xmin[:, None] - centre[:, None] + 0.5) * (1.0 / filterscale)), 0.0)
    totals = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, totals, out=weights.copy(), where=totals != 0.0)
    fixed = np.trunc(weights * (1 << PRECISION_BITS) + np.where(weights < 0, -0.5, 0.5))
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows, cols = np.nonzero(valid)
    matrix[rows, xmin[rows] + cols] = fixed[rows, cols]
    return matrix


def st_round(x: torch.Tensor) -> torch.Tensor:
    """``floor(x + 0.5)`` forward (Pillow's rounding shift), the identity backward (straight-through)."""
    return x + (torch.floor(x + 0.5) - x).detach()


def clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``x.clamp(low, high)`` whose gradient is 1 on the bounds too (torch's is 0 there): a pixel at 0 or 1, where
    torchattacks' projection leaves many, or a level of exactly 255 must still feel the loss."""
    inside = (x >= low) & (x <= high)
    return torch.where(inside, x, x.clamp(low, high).detach())


def quantise(images: torch.Tensor) -> torch.Tensor:
    """NCHW images in [0, 1] as float64 levels 0..255, rounded as :func:`adversarial.base.to_images` stores them
    (round half to even), with a straight-through gradient."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"`images` has to be an NCHW RGB batch (N, 3, H, W) but has shape {tuple(images.shape)}")
    scaled = clamp(images.double(), 0.0, 1.0) * 255.0
    return scaled + (scaled.round() - scaled).detach()


def _pass(levels: torch.Tensor, matrix: np.ndarray, dim: int) -> torch.Tensor:
    weights = torch.from_numpy(matrix).to(levels.device)
    moved = levels.movedim(dim, -1) @ weights.T / float(1 << PRECISION_BITS)
    return clamp(st_round(moved), 0.0, 255.0).movedim(-1, dim)


def vertical_first(in_size: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether Pillow runs the vertical pass of a ``(width, height)`` resize first.

    Pillow 13 (python-pillow/Pillow#9549) does when the height shrinks by more than twice as many pixels as the
    width does; earlier versions always run the horizontal pass first. The order matters because each pass rounds.
    """
    (in_width, in_height), (width, height) = in_size, size
    return _PILLOW_MAJOR >= 13 and height < in_height and in_height - height > 2 * (in_width - width)


def pil_resize(levels: torch.Tensor, size: tuple[int, int], kind: Filter) -> torch.Tensor:
    """``Image.resize(size, kind)`` of 8-bit images: two separable passes, each rounded and clipped, in Pillow's
    order (:func:`vertical_first`).

    ``size`` is ``(width, height)`` as Pillow takes it. A pass whose size does not change is skipped, as Pillow
    skips it.
    """
    width, height = size
    in_height, in_width = levels.shape[-2:]
    passes = [(-1, in_width, width), (-2, in_height, height)]
    if vertical_first((in_width, in_height), size):
        passes.reverse()
    for dim, before, after in passes:
        if before != after:
            levels = _pass(levels, resample_matrix(before, after, kind), dim)
    return levels


def nearest_indices(in_size: int, out_size: int) -> torch.Tensor:
    """The source index Pillow's NEAREST resize picks for each output index, asked of Pillow itself (a ramp image
    resized), so the sampling grid cannot drift from the library's."""
    ramp = Image.fromarray(np.arange(in_size, dtype=np.int32)[None, :], mode="I")
    picked = np.asarray(ramp.resize((out_size, 1), Image.Resampling.NEAREST), dtype=np.int64)[0]
    return torch.from_numpy(picked.copy())


def pil_nearest(levels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``Image.resize(size, NEAREST)``: a selection of pixels, so the gradient reaches only the selected ones."""
    width, height = size
    rows = nearest_indices(levels.shape[-2], height).to(levels.device)
    cols = nearest_indices(levels.shape[-1], width).to(levels.device)
    return levels.index_select(-2, rows).index_select(-1, cols)


def pil_luma(levels: torch.Tensor) -> torch.Tensor:
    """``convert("L")`` of RGB levels: ITU-R BT.601 luma in Pillow's 16-bit fixed point (``L24``), rounded; (N, H, W).
    """
    r, g, b = levels[:, 0], levels[:, 1], levels[:, 2]
    return st_round((r * 19595.0 + g * 38470.0 + b * 7471.0) / 65536.0)


def check_threshold(name: str, threshold: float) -> float:
    """The threshold as a float, refused unless strictly inside (0, 1): the margins are log-odds (or scaled by the
    log-odds slope), which a threshold of 0 or 1 makes infinite, and such a gate never or always fails anyway."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold < 1.0:
        raise ValueError(f"the {name} target's `threshold` has to be a number strictly between 0 and 1 but is "
                         f"{threshold!r}")
    return float(threshold)


def score_value(values: Mapping[str, object], key: str, index: int) -> float:
    """The production scorer's ``values[key]`` for image ``index`` as a float; a missing or non-numeric value raises
    (fail closed: a verdict is never made up from an answer the scorer did not give)."""
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RuntimeError(f"the production scorer answered no finite `{key}` for image {index} ({values!r})")
    return float(value)


def margin_logits(margin: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` logits with ``logits[:, FAIL] - logits[:, PASS] = margin``, split symmetrically so the softmax
    probability of FAIL is ``sigmoid(margin)``."""
    logits = torch.empty((*margin.shape, 2), dtype=margin.dtype, device=margin.device)
    logits[..., PASS] = -0.5 * margin
    logits[..., FAIL] = 0.5 * margin
    return logits


class FrozenTarget(torch.nn.Module):
    """A gate target as the ``nn.Module`` torchattacks expects (it reads ``training``, calls ``eval()`` and takes
    the device from the first parameter), permanently in eval mode.

    A gate is a fixed decision, so ``train(True)`` is refused rather than obeyed: training mode would switch the
    wrapped network's normalisation layers to batch statistics, attacking a model the gate does not run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.training = False

    def train(self, mode: bool = True) -> Self:
        if mode:
            raise ValueError(f"{type(self).__name__} is a frozen gate decision and cannot enter training mode "
                             f"(torchattacks: leave `set_model_training_mode` at its default)")
        return super().train(False)
