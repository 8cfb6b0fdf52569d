"""The alignment scorer is CLIPScore (2.5 * max(cos, 0)) of each image against the prompt, on the tiny CLIP."""

from __future__ import annotations

from typing import Any

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from quality.alignment import CLIPSCORE_WEIGHT, AlignmentScorer
from quality.base import ScoreContext, Scorer, score_images
from quality.clip_model import ClipModel, build_tiny_clip


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ClipModel:
    return ClipModel(build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny"), device="cpu")


@pytest.fixture(scope="module")
def scorer(model: ClipModel) -> AlignmentScorer:
    return AlignmentScorer(model)


def _noise(seed: int, size: tuple[int, int] = (80, 60)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_is_a_scorer_versioned_by_the_model(scorer: AlignmentScorer, model: ClipModel) -> None:
    assert isinstance(scorer, Scorer)
    assert scorer.name == "alignment"
    assert scorer.version == f"clip:{model.revision}"
    assert CLIPSCORE_WEIGHT == 2.5  # Hessel et al. 2021


def test_matches_a_direct_computation_with_the_model(scorer: AlignmentScorer, model: ClipModel) -> None:
    prompt = "a lighthouse on a cliff at dusk"
    images = [_noise(i) for i in range(3)]
    with torch.no_grad():
        image = F.normalize(model.model.encode_image(torch.stack([model.preprocess(im) for im in images])), dim=-1)
        text = F.normalize(model.model.encode_text(open_clip.tokenize([prompt])), dim=-1)[0]
    cosines = (image @ text).tolist()
    answer = scorer.score(images, ScoreContext(kind="prompt", prompt=prompt))
    assert [v["cosine"] for v in answer] == pytest.approx(cosines, abs=1e-6)
    assert [v["clip_score"] for v in answer] == pytest.approx([2.5 * max(c, 0.0) for c in cosines], abs=1e-6)


class _FixedModel:
    """Stands in for a ClipModel with chosen embeddings, to reach both sides of the max(cos, 0)."""

    revision = "fixed"

    def __init__(self, images: torch.Tensor, text: torch.Tensor) -> None:
        self.images, self.text = images, text
        self.calls: list[tuple[str, int]] = []

    def encode_images(self, images: Any) -> torch.Tensor:
        self.calls.append(("images", len(images)))
        return self.images[: len(images)]

    def encode_texts(self, texts: Any) -> torch.Tensor:
        self.calls.append(("texts", len(texts)))
        return self.text[None, :]


def test_negative_cosines_score_zero() -> None:
    fixed = _FixedModel(torch.tensor([[1.0, 0.0], [-0.6, 0.8], [0.6, 0.8]]), torch.tensor([1.0, 0.0]))
    answer = AlignmentScorer(fixed).score([_noise(i) for i in range(3)], ScoreContext(prompt="p"))  # type: ignore[arg-type]
    assert answer == [
        {"clip_score": 2.5, "cosine": 1.0},
        {"clip_score": 0.0, "cosine": pytest.approx(-0.6)},
        {"clip_score": pytest.approx(1.5), "cosine": pytest.approx(0.6)},
    ]
    assert fixed.calls == [("texts", 1), ("images", 3)]  # one image batch, one text


@pytest.mark.parametrize("prompt", [None, "", "   \n"])
def test_no_prompt_means_not_applicable(scorer: AlignmentScorer, prompt: str | None) -> None:
    assert scorer.score([_noise(0), _noise(1)], ScoreContext(kind="upload", prompt=prompt)) == [{}, {}]


def test_prompt_whitespace_does_not_change_the_score(scorer: AlignmentScorer) -> None:
    images = [_noise(4)]
    tidy = scorer.score(images, ScoreContext(prompt="a red fox"))
    messy = scorer.score(images, ScoreContext(prompt="  a   red\nfox "))
    assert messy == tidy


def test_a_prefix_is_prepended(model: ClipModel) -> None:
    images = [_noise(5)]
    prefixed = AlignmentScorer(model, prefix="A photo depicts").score(images, ScoreContext(prompt="a red fox"))
    direct = AlignmentScorer(model).score(images, ScoreContext(prompt="A photo depicts a red fox"))
    plain = AlignmentScorer(model).score(images, ScoreContext(prompt="a red fox"))
    assert prefixed == direct != plain


def test_batches_match_one_by_one(scorer: AlignmentScorer) -> None:
    images = [_noise(i) for i in range(4)]
    context = ScoreContext(prompt="a bowl of ramen")
    batched = scorer.score(images, context)
    single = [scorer.score([image], context)[0] for image in images]
    assert [v["cosine"] for v in batched] == pytest.approx([v["cosine"] for v in single], abs=1e-5)


def test_the_runner_accepts_the_answer(scorer: AlignmentScorer) -> None:
    cards = score_images([scorer], [_noise(0), _noise(1)], ScoreContext(kind="prompt", prompt="a cat"))
    assert all(card.complete for card in cards)
    values = cards[0].as_dict()["scores"]["alignment"]
    assert set(values) == {"clip_score", "cosine"}
    assert all(isinstance(v, float) for v in values.values())
    assert cards[0].as_dict()["versions"] == {"alignment": scorer.version}


def test_an_empty_batch_is_empty(scorer: AlignmentScorer) -> None:
    assert scorer.score([], ScoreContext(prompt="a cat")) == []
