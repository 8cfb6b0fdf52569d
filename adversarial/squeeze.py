"""Feature squeezing: a detector that routes images whose gate decision is fragile to human review.

Xu, Evans & Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks", NDSS 2018
(arXiv:1704.01155). Squeezers remove detail an honest image does not depend on; an adversarial perturbation lives
in that detail, so the model's output moves when it is squeezed away. The score of an image is the largest change
over the squeezers:

- ``metric="l1"`` (the paper's): ``max_s || p(x) - p(s(x)) ||_1`` with ``p`` the softmax over the two logits
  (for a two-class gate, twice the change in the FAIL probability; in [0, 2]).
- ``metric="margin"``: ``max_s | m(x) - m(s(x)) |`` with ``m = logits[:, FAIL] - logits[:, PASS]``, the gate's
  margin; unbounded, but it does not saturate where the softmax does (images far from the threshold).

Squeezers: ``BitDepth(k)`` (colour depth reduced to k bits per channel; the paper uses 5 on ImageNet) and
``MedianFilter(size)`` (2x2 or 3x3 local median, as SciPy's ``median_filter`` with ``mode="reflect"``; 2x2 on
ImageNet). The paper's third ImageNet squeezer, non-local means (11-3-4), is not implemented.

The threshold is set on clean images for a target false-positive rate (``calibrate``), as in the paper (sec. V-A).
The detector is not robust to an attacker who knows it (He et al., WOOT 2017, arXiv:1706.04701, break it with an
adaptive attack on the squeezed and unsqueezed model jointly); it is a tripwire for review, not a defense.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from adversarial.base import FAIL, PASS, GateTarget, to_tensor
from adversarial.report_types import DetectionReport


class Squeezer(Protocol):
    """A denoising map on NCHW [0, 1] tensors."""

    @property
    def spec(self) -> str: ...

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class BitDepth:
    """Reduce each channel to ``bits`` bits: ``round(x * (2^bits - 1)) / (2^bits - 1)`` (paper, sec. III-A)."""

    bits: int

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 7:
            raise ValueError(f"`bits` has to be an integer in [1, 7] (8 is the image itself) but is {self.bits}")

    @property
    def spec(self) -> str:
        return f"bits:{self.bits}"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        levels = 2**self.bits - 1
        return torch.round(batch * levels) / levels


@dataclass(frozen=True)
class MedianFilter:
    """Local median over a ``size`` x ``size`` window (paper, sec. III-B). Even windows reach one pixel up and left
    and take the upper of the two middle values, as SciPy's rank filter does; edges repeat the border pixel."""

    size: int

    def __post_init__(self) -> None:
        if self.size not in (2, 3):
            raise ValueError(f"`size` has to be 2 or 3 but is {self.size}")

    @property
    def spec(self) -> str:
        return f"median:{self.size}x{self.size}"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        before, after = self.size // 2, self.size - 1 - self.size // 2
        padded = F.pad(batch, (before, after, before, after), mode="replicate")
        windows = padded.unfold(2, self.size, 1).unfold(3, self.size, 1).flatten(-2)
        return windows.sort(dim=-1).values[..., (self.size * self.size) // 2]


DEFAULT_SQUEEZERS: tuple[Squeezer, ...] = (BitDepth(5), MedianFilter(2))  # the paper's ImageNet pair, minus NLM


class FeatureSqueezer:
    """Scores images by how much squeezing moves the target's output, and flags those above a calibrated threshold."""

    def __init__(self, target: GateTarget, squeezers: Sequence[Squeezer] = DEFAULT_SQUEEZERS, *,
                 metric: Literal["l1", "margin"] = "l1", threshold: float | None = None) -> None:
        if not squeezers:
            raise ValueError("`squeezers` has to name at least one squeezer but is empty")
        if metric not in ("l1", "margin"):
            raise ValueError(f"`metric` has to be 'l1' or 'margin' but is {metric!r}")
        self.target = target
        self.squeezers = tuple(squeezers)
        self.metric = metric
        self.threshold = threshold

    def _output(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.target(batch)
        if self.metric == "l1":
            return logits.softmax(dim=1)
        return (logits[:, FAIL] - logits[:, PASS]).unsqueeze(1)

    def scores(self, images: Sequence[Image.Image]) -> list[float]:
        """The detector score per image (see the module docstring)."""
        if not images:
            return []
        with torch.no_grad():
            batch = to_tensor(images)
            reference = self._output(batch)
            changes = [(self._output(squeeze(batch)) - reference).abs().sum(dim=1) for squeeze in self.squeezers]
            return torch.stack(changes).max(dim=0).values.tolist()

    def calibrate(self, clean_images: Sequence[Image.Image], fpr: float = 0.05) -> float:
        """Set (and return) the threshold at the ``1 - fpr`` quantile of the clean scores (linear interpolation),
        so that a share ``fpr`` of the calibration images score above it."""
        if not 0.0 < fpr < 1.0:
            raise ValueError(f"`fpr` has to be in (0, 1) but is {fpr}")
        needed = math.ceil(1.0 / fpr)
        if len(clean_images) < needed:
            raise ValueError(f"`clean_images` has to hold at least {needed} images to calibrate at fpr={fpr} but "
                             f"holds {len(clean_images)}")
        self.threshold = float(np.quantile(np.asarray(self.scores(clean_images)), 1.0 - fpr))
        return self.threshold

    def is_suspicious(self, images: Sequence[Image.Image]) -> list[bool]:
        """Per image: does its score exceed the threshold (route to review)?"""
        if self.threshold is None:
            # Fail closed: without a threshold no image can be cleared, so the caller must not treat "no flags" as
            # a result.
            raise RuntimeError("the feature squeezer has no threshold: call `calibrate` or pass `threshold`")
        return [score > self.threshold for score in self.scores(images)]

    def evaluate(self, clean_images: Sequence[Image.Image],
                 adversarial_images: Sequence[Image.Image]) -> DetectionReport:
        """False-positive rate on ``clean_images`` and detection rate on ``adversarial_images`` (pass only the
        successful ones, as the paper does) at the current threshold."""
        if self.threshold is None:
            raise RuntimeError("the feature squeezer has no threshold: call `calibrate` or pass `threshold`")
        return DetectionReport(threshold=self.threshold, metric=self.metric,
                               squeezers=tuple(s.spec for s in self.squeezers),
                               clean_scores=tuple(self.scores(clean_images)),
                               adversarial_scores=tuple(self.scores(adversarial_images)))
