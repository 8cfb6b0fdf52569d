"""The ``brand`` scorer: how well an image fits the brand kit the request names, as one 0..1 ``score``.

Three terms, each 0..1, mixed by the kit's ``weights`` (default palette 0.3, text 0.35, references 0.35):

- ``palette``: the share of pixels within the kit's CIEDE2000 tolerance of its palette (``quality.brand``).
- ``text``: CLIP zero-shot classification of the image between two classes, "on brand" (the descriptors) and "off
  brand" (the off-brand texts; "an image", "a photo", "a picture" when the kit has none). Each class is the
  normalised mean of its texts' embeddings (prompt ensembling, Radford et al. 2021, arXiv:2103.00020, sec. 3.1.4);
  the term is the softmax probability of "on brand" at the model's own temperature ``tau`` (its learned logit
  scale, 100 for OpenAI's CLIP): ``sigmoid(tau * (descriptor_sim - off_brand_sim))``. Identical classes give 0.5.
- ``references``: the best cosine similarity of the image to a reference image or the logo, mapped linearly from
  ``reference_floor`` (0: the similarity of unrelated images) to 1 (the same image). Image-image cosines live on a
  different scale from image-text ones (the modality gap, Liang et al. 2022, arXiv:2203.02053), so they are not
  contrasted with the texts; the floor is a property of the model, set where the scorer is built.

``score`` is the weighted mean of the terms the kit has (no palette, no descriptors, or no images: that term drops
out and ``terms`` says which were used). A mean rather than a product: an image off palette but on message keeps
partial credit; the release policy's ``min_brand`` is the place for a hard line. Values for a term the kit lacks are
reported as 0.0 and are not in ``terms``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from quality.base import FieldType, ScoreContext, ScoreValue
from quality.brand import DEFAULT_OFF_BRAND, PALETTE_MAX_SIDE, BrandKit
from quality.clip_model import ClipModel

# Cosine similarity between the CLIP image embeddings of unrelated images, where ``reference_match`` reaches 0.
# An assumed value for ViT-B/32-class CLIPs (whose image embeddings share a large common component, so unrelated
# images are far from orthogonal), not measured here: calibrate it on the deployed weights with unrelated images.
DEFAULT_REFERENCE_FLOOR = 0.5


def _class_embedding(vectors: torch.Tensor) -> torch.Tensor:
    return F.normalize(vectors.mean(dim=0), dim=-1)


class BrandScorer:
    """Scores an image against ``context.brand`` (a :class:`~quality.brand.BrandKit`); ``{}`` without a kit.

    ``version`` is ``clip:<model revision>``; the kit's own revision belongs to the request's audit entry.
    One ``encode_images`` call per batch; descriptor texts come from the model's text cache and reference
    embeddings from the kit's cache after their first use.
    """

    name = "brand"
    fields: Mapping[str, FieldType] = {
        "score": "float",
        "palette_compliance": "float",
        "palette_mean_delta_e": "float",
        "descriptor_sim": "float",
        "off_brand_sim": "float",
        "text_contrast": "float",
        "reference_sim": "float",
        "reference_match": "float",
        "terms": "list[str]",
    }

    def __init__(self, model: ClipModel, *, reference_floor: float = DEFAULT_REFERENCE_FLOOR,
                 temperature: float | None = None, palette_max_side: int = PALETTE_MAX_SIDE) -> None:
        if not 0.0 <= reference_floor < 1.0:
            raise ValueError(f"`reference_floor` has to be in [0, 1) but is {reference_floor}")
        if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"`temperature` has to be a finite number > 0 but is {temperature}")
        if palette_max_side < 1:
            raise ValueError(f"`palette_max_side` has to be at least 1 but is {palette_max_side}")
        self.model = model
        self.palette_max_side = palette_max_side
        self.reference_floor = reference_floor
        self.temperature = model.logit_scale if temperature is None else temperature
        self.version = f"clip:{model.revision}"

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]:
        kit = context.brand
        if kit is None:
            return [{} for _ in images]
        if not isinstance(kit, BrandKit):
            raise TypeError(f"`context.brand` has to be a BrandKit but is {type(kit).__name__}")
        if context.tenant and context.tenant != kit.tenant:
            # Fail closed: scoring one tenant's image against another tenant's kit is a wiring bug, not a score.
            raise ValueError(f"brand kit {kit.tenant}/{kit.brand} does not belong to tenant {context.tenant!r}")
        if not images:
            return []
        embeddings = self.model.encode_images(images)
        n = len(images)
        zeros = torch.zeros(n)
        weights = kit.weights
        terms: dict[str, tuple[float, torch.Tensor]] = {}

        descriptor_sim = text_contrast = zeros
        off_texts = kit.off_brand or DEFAULT_OFF_BRAND
        texts = self.model.encode_texts([*kit.descriptors, *off_texts])
        off_brand_sim = embeddings @ _class_embedding(texts[len(kit.descriptors):])
        if kit.descriptors:
            descriptor_sim = embeddings @ _class_embedding(texts[:len(kit.descriptors)])
            text_contrast = torch.sigmoid(self.temperature * (descriptor_sim - off_brand_sim))
            terms["text"] = (weights.text, text_contrast)

        reference_sim = reference_match = zeros
        anchors = kit.image_embeddings(self.model)
        if len(anchors):
            reference_sim = (embeddings @ anchors.T).max(dim=1).values.clamp(-1.0, 1.0)
            reference_match = ((reference_sim - self.reference_floor) / (1.0 - self.reference_floor)).clamp(0.0, 1.0)
            terms["references"] = (weights.references, reference_match)

        compliance = mean_delta_e = zeros
        if kit.palette:
            side = self.palette_max_side
            measured = torch.tensor([kit.palette_compliance(im, max_side=side) for im in images], dtype=torch.float64)
            compliance, mean_delta_e = measured[:, 0], measured[:, 1]
            terms["palette"] = (weights.palette, compliance)

        used = [name for name in ("palette", "text", "references") if name in terms and terms[name][0] > 0]
        if not used:
            # Fail closed (load_brand_kit already refuses such kits): a score made of nothing must not release.
            raise ValueError(f"brand kit {kit.tenant}/{kit.brand} gives no weight to any term it has")
        total = sum(terms[name][0] for name in used)
        score = sum((terms[name][0] * terms[name][1].double() for name in used), torch.zeros(n, dtype=torch.float64))
        score = (score / total).clamp(0.0, 1.0)
        return [
            {
                "score": float(score[i]),
                "palette_compliance": float(compliance[i]),
                "palette_mean_delta_e": float(mean_delta_e[i]),
                "descriptor_sim": float(descriptor_sim[i].clamp(-1.0, 1.0)),
                "off_brand_sim": float(off_brand_sim[i].clamp(-1.0, 1.0)),
                "text_contrast": float(text_contrast[i]),
                "reference_sim": float(reference_sim[i]),
                "reference_match": float(reference_match[i]),
                "terms": list(used),
            }
            for i in range(n)
        ]
