"""The ``squeeze`` scorer: a feature-squeezing tripwire that sends likely adversarial images to human review.

Feature squeezing (Xu, Evans & Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks",
NDSS 2018): an adversarial perturbation is fragile, so reducing the image's colour depth or median-filtering it
moves the model's prediction far more for an adversarial image than for a natural one. The score is the largest
L1 distance, over the squeezers, between open_nsfw's (sfw, nsfw) prediction on the image and on its squeezed copy;
above ``threshold`` the image is ``suspicious`` and the release policy holds it (``adversarial.suspicious``).

The model is the production open_nsfw weights converted to torch (``adversarial.target_nsfw``), the same network
the ``nsfw`` scorer runs on onnxruntime. The threshold should be calibrated on the deployment's own clean images
(`mediagate adversarial run` reports the threshold at a 5% false-positive rate); it is a tripwire against attacks
that ignore it, not a defence against an attacker who knows it is there (He et al., WOOT 2017).
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from quality.base import FieldType, ScoreContext, ScoreValue

DEFAULT_THRESHOLD = 0.2  # clean photos, textures, banners and noise score under 0.005 here


class SqueezeScorer:
    """Answers ``{"score": float, "suspicious": bool}`` per image."""

    name = "squeeze"
    fields: dict[str, FieldType] = {"score": "float", "suspicious": "bool"}

    def __init__(self, *, threshold: float = DEFAULT_THRESHOLD, max_batch: int = 16) -> None:
        from adversarial.squeeze import FeatureSqueezer
        from adversarial.target_nsfw import NsfwTarget

        if not 0.0 < threshold <= 2.0:
            raise ValueError(f"`threshold` has to be in (0, 2] (an L1 distance of two probabilities) but is "
                             f"{threshold}")
        target = NsfwTarget()
        self._squeezer = FeatureSqueezer(target, threshold=threshold)
        self.threshold = threshold
        self.max_batch = max_batch
        squeezers = "+".join(s.spec for s in self._squeezer.squeezers)
        self.version = f"feature-squeezing:{squeezers}:t={threshold:g}:{getattr(target, 'revision', 'open_nsfw')}"

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]:
        results: list[dict[str, ScoreValue]] = []
        for start in range(0, len(images), self.max_batch):
            chunk = [image.convert("RGB") for image in images[start:start + self.max_batch]]
            by_size: dict[tuple[int, int], list[int]] = {}
            for i, image in enumerate(chunk):  # the squeezer batches tensors: one call per image size
                by_size.setdefault(image.size, []).append(i)
            scores = [0.0] * len(chunk)
            for indices in by_size.values():
                for i, value in zip(indices, self._squeezer.scores([chunk[i] for i in indices]), strict=True):
                    scores[i] = float(value)
            results.extend({"score": s, "suspicious": s > self.threshold} for s in scores)
        return results
