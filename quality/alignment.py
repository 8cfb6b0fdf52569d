"""The ``alignment`` scorer: CLIPScore of each image against the request's prompt.

CLIPScore (Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric for Image Captioning", EMNLP,
arXiv:2104.08718) is ``w * max(cos(E_image, E_text), 0)`` with ``w = 2.5``, which spreads the cosines a ViT-B/32
CLIP gives matching pairs (about 0.2-0.4) over roughly 0.5-1.0. The paper prefixes captions with "A photo depicts";
generation prompts are not captions, so no prefix is used unless one is given. Prompts longer than the model's
context (77 tokens for CLIP) are truncated by its tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PIL import Image

from quality.base import FieldType, ScoreContext, ScoreValue
from quality.clip_model import ClipModel

CLIPSCORE_WEIGHT = 2.5


class AlignmentScorer:
    """Scores ``{"clip_score", "cosine"}`` per image against ``context.prompt``; ``{}`` when there is no prompt.

    ``version`` is ``clip:<model revision>``. One ``encode_images`` call per batch; the prompt's embedding comes
    from the model's text cache when the same prompt is scored again (several images, retries).
    """

    name = "alignment"
    fields: Mapping[str, FieldType] = {"clip_score": "float", "cosine": "float"}

    def __init__(self, model: ClipModel, *, prefix: str = "") -> None:
        self.model = model
        self.prefix = prefix
        self.version = f"clip:{model.revision}"

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]:
        prompt = " ".join((context.prompt or "").split())
        if not prompt:
            return [{} for _ in images]
        if not images:
            return []
        text = self.model.encode_texts([f"{self.prefix} {prompt}".strip()])[0]
        cosines = (self.model.encode_images(images) @ text).clamp(-1.0, 1.0)
        return [{"clip_score": CLIPSCORE_WEIGHT * max(float(c), 0.0), "cosine": float(c)} for c in cosines]
