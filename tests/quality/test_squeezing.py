"""The live feature-squeezing scorer, and purification before scoring, through the gateway."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from quality.base import EMPTY_CONTEXT, ScoreContext, score_images
from quality.squeezing import SqueezeScorer


@pytest.fixture(scope="module")
def scorer() -> SqueezeScorer:
    return SqueezeScorer()


def photo(seed: int, size: int = 160) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(40, 210, size)[None, :, None] + rng.normal(0, 20, (size, size, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def test_clean_images_score_low_and_pass(scorer: SqueezeScorer) -> None:
    images = [photo(0), photo(1, 96), Image.new("RGB", (64, 64), (200, 40, 40))]
    cards = score_images([scorer], images)
    for card in cards:
        values = card.as_dict()["scores"]["squeeze"]
        assert card.complete and 0.0 <= values["score"] < scorer.threshold and values["suspicious"] is False


def test_the_score_is_the_largest_prediction_change_under_squeezing(scorer: SqueezeScorer) -> None:
    """Recomputed by hand from the same network: max over squeezers of the L1 distance of (sfw, nsfw)."""
    from adversarial.base import to_tensor

    image = photo(3)
    (answer,) = scorer.score([image], EMPTY_CONTEXT)
    target = scorer._squeezer.target
    with torch.no_grad():
        batch = to_tensor([image])
        reference = target(batch).softmax(dim=1)
        expected = max(float((target(s(batch)).softmax(dim=1) - reference).abs().sum()) for s in
                       scorer._squeezer.squeezers)
    assert answer["score"] == pytest.approx(expected, abs=1e-6)


def test_suspicious_is_the_threshold_decision() -> None:
    touchy = SqueezeScorer(threshold=1e-9)
    images = [photo(4), photo(5)]
    answers = touchy.score(images, EMPTY_CONTEXT)
    assert [a["suspicious"] for a in answers] == [a["score"] > 1e-9 for a in answers]
    with pytest.raises(ValueError, match="`threshold` has to be in"):
        SqueezeScorer(threshold=0)


def test_mixed_sizes_in_one_batch(scorer: SqueezeScorer) -> None:
    images = [photo(6, 64), photo(7, 128), photo(8, 64)]
    batch = scorer.score(images, EMPTY_CONTEXT)
    singles = [scorer.score([im], EMPTY_CONTEXT)[0] for im in images]
    assert [b["score"] for b in batch] == pytest.approx([s["score"] for s in singles], abs=1e-6)


class Recorder:
    """A scorer that keeps what it was shown, to see what the scoring stage hands the scorers."""

    name, version = "recorder", "1"
    fields: dict[str, Any] = {"mean": "float"}

    def __init__(self) -> None:
        self.seen: list[Image.Image] = []

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, Any]]:
        self.seen.extend(images)
        return [{"mean": float(np.asarray(im).mean())} for im in images]


def test_purification_runs_before_the_scorers_and_the_release_keeps_the_original(make_gateway: Any) -> None:
    recorder = Recorder()
    gw = make_gateway(scorers=[recorder], score_purify="jpeg:60,blur:1")
    app = gw.key()
    body = gw.client.post("/v1/generations", headers=app, json={"prompt": "a quiet lake", "size": "128x128"}).json()
    assert body["decision"] == "release", body
    released = Image.open(io.BytesIO(gw.client.get(body["assets"][0]["url"], headers=app).content)).convert("RGB")
    (seen,) = recorder.seen
    difference = np.abs(np.asarray(seen, dtype=np.int16) - np.asarray(released, dtype=np.int16))
    assert seen.size == released.size and difference.mean() > 1.0  # the scorer judged a blurred JPEG copy


def test_a_bad_purification_spec_stops_the_gateway(make_gateway: Any) -> None:
    with pytest.raises(ValueError, match="jpeg"):
        make_gateway(score_purify="jpeg:300")


def test_a_suspicious_image_is_held_for_review(make_gateway: Any, shared_scorers: Any) -> None:
    gw = make_gateway(scorers=[*shared_scorers, SqueezeScorer(threshold=1e-12)])
    body = gw.client.post("/v1/generations", headers=gw.key(),
                          json={"prompt": "a quiet lake", "size": "128x128"}).json()
    codes = {r["code"] for r in body["reasons"]}
    assert body["decision"] == "review" and "adversarial.suspicious" in codes, body
