"""The production NSFW gate as a black box: open_nsfw on onnxruntime, exactly as the ``nsfw`` scorer runs it.

No gradient flows through onnxruntime, so only score-based attacks (Square) may aim at this target; a white-box
attack refuses it (``NotDifferentiable``). It shows what an attacker without the weights achieves against the
deployed model itself, preprocessing (JPEG round-trip included) and all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from PIL import Image

from adversarial.base import FAIL, PASS, to_images
from adversarial.target_ops import check_threshold, margin_logits, score_value
from quality.base import ScoreContext
from quality.nsfw import OpenNsfwScorer

DEFAULT_THRESHOLD = 0.85
_EPS = 1e-6


class OnnxNsfwTarget(torch.nn.Module):
    """FAIL when the production open_nsfw probability reaches ``threshold``; margin in log-odds, no gradient."""

    differentiable = False

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, *, scorer: OpenNsfwScorer | None = None) -> None:
        super().__init__()
        self.threshold = check_threshold("nsfw-onnx", threshold)
        self.scorer = scorer if scorer is not None else OpenNsfwScorer()
        self.name = "nsfw-onnx"
        self.description = f"open_nsfw on onnxruntime (production, no gradient) probability >= {self.threshold:g}"

    def _probabilities(self, images: Sequence[Image.Image]) -> list[float]:
        results = self.scorer.score(images, ScoreContext())
        return [score_value(values, "nsfw", i) for i, values in enumerate(results)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        def log_odds(p: float) -> float:
            p = min(max(p, _EPS), 1 - _EPS)
            return math.log(p / (1 - p))

        with torch.no_grad():
            margins = [log_odds(p) - log_odds(self.threshold) for p in self._probabilities(to_images(images))]
        return margin_logits(torch.tensor(margins, dtype=torch.float32, device=images.device))

    def verdict(self, images: Sequence[Image.Image]) -> list[int]:
        return [FAIL if p >= self.threshold else PASS for p in self._probabilities(images)]
