"""The brand scorer's mechanics on the tiny seeded CLIP (its similarities mean nothing, its arithmetic does)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from quality.base import ScoreContext, Scorer, check_values, score_images
from quality.brand import DEFAULT_OFF_BRAND, BrandKit, BrandWeights, load_brand_kit
from quality.brand_score import BrandScorer
from quality.clip_model import ClipModel, build_tiny_clip

KitFactory = Callable[..., BrandKit]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ClipModel:
    return ClipModel(build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny"), device="cpu")


@pytest.fixture(scope="module")
def scorer(model: ClipModel) -> BrandScorer:
    return BrandScorer(model)


def _noise(seed: int, size: tuple[int, int] = (96, 96)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def make_kit(tmp_path: Path) -> KitFactory:
    """Factory: a loaded kit from ``spec`` (brand.yaml content) with noise reference images ``refs`` (seeds)."""

    def make(spec: dict[str, Any], *, refs: tuple[int, ...] = (), tenant: str = "acme") -> BrandKit:
        directory = tmp_path / tenant / f"kit{len(list(tmp_path.glob('*/kit*')))}"
        directory.mkdir(parents=True)
        names = []
        for seed in refs:
            _noise(seed).save(directory / f"ref{seed}.png")
            names.append(f"ref{seed}.png")
        (directory / "brand.yaml").write_text(yaml.safe_dump({**spec, **({"references": names} if names else {})}))
        return load_brand_kit(directory, tenant, directory.name)

    return make


def test_is_a_scorer_versioned_by_the_model(scorer: BrandScorer, model: ClipModel) -> None:
    assert isinstance(scorer, Scorer)
    assert scorer.name == "brand"
    assert scorer.version == f"clip:{model.revision}"


def test_no_brand_means_not_applicable(scorer: BrandScorer) -> None:
    assert scorer.score([_noise(0), _noise(1)], ScoreContext(tenant="acme")) == [{}, {}]
    cards = score_images([scorer], [_noise(0)], ScoreContext(tenant="acme"))
    assert cards[0].complete and cards[0].as_dict()["scores"] == {"brand": {}}


def test_a_full_kit_answers_every_declared_value(scorer: BrandScorer, make_kit: KitFactory) -> None:
    kit = make_kit({"palette": ["#ff0000"], "descriptors": ["bold"], "off_brand": ["dull"]}, refs=(1,))
    images = [_noise(5), Image.new("RGB", (64, 48), (255, 0, 0))]
    cards = score_images([scorer], images, ScoreContext(tenant="acme", brand=kit, kind="prompt", prompt="x"))
    assert all(card.complete for card in cards), [card.as_dict()["failed"] for card in cards]
    for card in cards:
        values = card.as_dict()["scores"]["brand"]
        assert not check_values(scorer.fields, values)
        assert 0.0 <= values["score"] <= 1.0
        assert values["terms"] == ["palette", "text", "references"]
    assert cards[1].as_dict()["scores"]["brand"]["palette_compliance"] == 1.0


def test_a_reference_image_scores_as_itself(scorer: BrandScorer, make_kit: KitFactory) -> None:
    kit = make_kit({}, refs=(1, 2))
    ref, other = scorer.score([_noise(2), _noise(9)], ScoreContext(brand=kit))
    assert ref["reference_sim"] == pytest.approx(1.0, abs=1e-5)
    assert ref["reference_match"] == pytest.approx(1.0, abs=1e-4)
    assert other["reference_sim"] < 1.0 - 1e-4
    assert ref["terms"] == other["terms"] == ["references"]
    assert ref["score"] == pytest.approx(ref["reference_match"]) and other["score"] == pytest.approx(
        other["reference_match"])
    assert ref["score"] > other["score"]


def test_a_reference_image_beats_another_when_the_text_is_neutral(scorer: BrandScorer, make_kit: KitFactory) -> None:
    kit = make_kit({"descriptors": ["teal flat art", "calm"], "off_brand": ["teal flat art", "calm"]}, refs=(3,))
    ref, other = scorer.score([_noise(3), _noise(4)], ScoreContext(brand=kit))
    assert ref["text_contrast"] == pytest.approx(0.5, abs=1e-6)
    assert other["text_contrast"] == pytest.approx(0.5, abs=1e-6)
    assert ref["descriptor_sim"] == pytest.approx(ref["off_brand_sim"], abs=1e-6)
    assert ref["score"] > other["score"]


def test_text_contrast_is_clips_two_class_softmax(scorer: BrandScorer, model: ClipModel,
                                                  make_kit: KitFactory) -> None:
    kit = make_kit({"descriptors": ["bold red poster", "flat shapes"], "off_brand": ["grainy photo", "pastel"]})
    image = _noise(7)
    (values,) = scorer.score([image], ScoreContext(brand=kit))
    v = model.encode_images([image])[0]
    on = v @ F.normalize(model.encode_texts(list(kit.descriptors)).mean(dim=0), dim=-1)
    off = v @ F.normalize(model.encode_texts(list(kit.off_brand)).mean(dim=0), dim=-1)
    assert values["descriptor_sim"] == pytest.approx(float(on), abs=1e-6)
    assert values["off_brand_sim"] == pytest.approx(float(off), abs=1e-6)
    logits = torch.tensor([float(on), float(off)]) * model.logit_scale
    assert values["text_contrast"] == pytest.approx(float(torch.softmax(logits, dim=0)[0]), abs=1e-6)
    assert values["terms"] == ["text"] and values["score"] == pytest.approx(values["text_contrast"])


def test_without_off_brand_texts_the_descriptors_face_a_generic_picture(
    scorer: BrandScorer, model: ClipModel, make_kit: KitFactory
) -> None:
    kit = make_kit({"descriptors": ["bold"]})
    image = _noise(8)
    (values,) = scorer.score([image], ScoreContext(brand=kit))
    anchor = F.normalize(model.encode_texts(list(DEFAULT_OFF_BRAND)).mean(dim=0), dim=-1)
    assert values["off_brand_sim"] == pytest.approx(float(model.encode_images([image])[0] @ anchor), abs=1e-6)


def test_score_is_the_weighted_mean_of_the_terms(scorer: BrandScorer, make_kit: KitFactory) -> None:
    kit = make_kit({"palette": ["#102030", "#ffffff"], "palette_max_delta_e": 30, "descriptors": ["bold"],
                    "off_brand": ["dull"], "weights": {"palette": 2, "text": 1, "references": 1}}, refs=(1,))
    for values in scorer.score([_noise(11), Image.new("RGB", (32, 32), (250, 250, 250))], ScoreContext(brand=kit)):
        expected = (2 * values["palette_compliance"] + values["text_contrast"] + values["reference_match"]) / 4
        assert values["score"] == pytest.approx(expected, abs=1e-6)


def test_zero_weights_drop_a_term(scorer: BrandScorer, make_kit: KitFactory) -> None:
    kit = make_kit({"palette": ["#ff0000"], "descriptors": ["bold"], "weights": {"text": 0, "references": 0}},
                   refs=(1,))
    (values,) = scorer.score([_noise(12)], ScoreContext(brand=kit))
    assert values["terms"] == ["palette"]
    assert values["score"] == pytest.approx(values["palette_compliance"])


def test_absent_terms_report_zero(scorer: BrandScorer, make_kit: KitFactory) -> None:
    (values,) = scorer.score([_noise(13)], ScoreContext(brand=make_kit({"descriptors": ["bold"]})))
    assert values["terms"] == ["text"]
    assert values["palette_compliance"] == values["palette_mean_delta_e"] == 0.0
    assert values["reference_sim"] == values["reference_match"] == 0.0


def test_the_reference_floor_maps_similarity_linearly(model: ClipModel, make_kit: KitFactory) -> None:
    kit = make_kit({}, refs=(1,))
    (values,) = BrandScorer(model, reference_floor=0.2).score([_noise(14)], ScoreContext(brand=kit))
    expected = min(max((values["reference_sim"] - 0.2) / 0.8, 0.0), 1.0)
    assert values["reference_match"] == pytest.approx(expected, abs=1e-6)


def test_one_image_encoding_per_batch(scorer: BrandScorer, model: ClipModel, make_kit: KitFactory,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    kit = make_kit({"descriptors": ["bold"], "off_brand": ["dull"]}, refs=(1, 2))
    scorer.score([_noise(0)], ScoreContext(brand=kit))  # first use embeds the references
    calls: list[int] = []
    original = model.encode_images

    def spy(images: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(len(images))
        return original(images, **kwargs)

    monkeypatch.setattr(model, "encode_images", spy)
    encoded = model.texts_encoded
    scorer.score([_noise(i) for i in range(5)], ScoreContext(brand=kit))
    assert calls == [5]
    assert model.texts_encoded == encoded  # descriptors came from the text cache


def test_batches_match_one_by_one(scorer: BrandScorer, make_kit: KitFactory) -> None:
    kit = make_kit({"palette": ["#ff0000", "#00ff00"], "descriptors": ["bold"], "off_brand": ["dull"]}, refs=(1,))
    images = [_noise(i) for i in range(4)]
    batched = scorer.score(images, ScoreContext(brand=kit))
    for image, values in zip(images, batched, strict=True):
        (single,) = scorer.score([image], ScoreContext(brand=kit))
        assert single["terms"] == values["terms"]
        for key in ("score", "descriptor_sim", "off_brand_sim", "reference_sim", "palette_compliance"):
            assert single[key] == pytest.approx(values[key], abs=1e-5), key


def test_an_empty_batch_is_empty(scorer: BrandScorer, make_kit: KitFactory) -> None:
    assert scorer.score([], ScoreContext(brand=make_kit({"descriptors": ["bold"]}))) == []


def test_something_other_than_a_kit_fails_the_card(scorer: BrandScorer) -> None:
    (card,) = score_images([scorer], [_noise(0)], ScoreContext(brand={"palette": ["#ff0000"]}))
    assert not card.complete
    assert "has to be a BrandKit" in card.as_dict()["failed"]["brand"]


def test_another_tenants_kit_fails_the_card(scorer: BrandScorer, make_kit: KitFactory) -> None:
    kit = make_kit({"descriptors": ["bold"]}, tenant="globex")
    (card,) = score_images([scorer], [_noise(0)], ScoreContext(tenant="acme", brand=kit))
    assert not card.complete
    assert "does not belong to tenant 'acme'" in card.as_dict()["failed"]["brand"]


@pytest.mark.parametrize(("kwargs", "name"), [({"reference_floor": 1.0}, "reference_floor"),
                                              ({"reference_floor": -0.1}, "reference_floor"),
                                              ({"temperature": 0.0}, "temperature"),
                                              ({"temperature": math.inf}, "temperature"),
                                              ({"palette_max_side": 0}, "palette_max_side")])
def test_bad_arguments_are_named(model: ClipModel, kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        BrandScorer(model, **kwargs)


def test_an_explicit_temperature_sharpens_the_contrast(model: ClipModel, make_kit: KitFactory) -> None:
    kit = make_kit({"descriptors": ["bold red poster"], "off_brand": ["grainy photo"]})
    image = _noise(7)
    (soft,) = BrandScorer(model, temperature=1.0).score([image], ScoreContext(brand=kit))
    (sharp,) = BrandScorer(model, temperature=1000.0).score([image], ScoreContext(brand=kit))
    assert abs(sharp["text_contrast"] - 0.5) > abs(soft["text_contrast"] - 0.5)


def test_the_palette_sample_size_is_the_scorers(model: ClipModel, make_kit: KitFactory) -> None:
    kit = make_kit({"palette": ["#ff0000"], "palette_max_delta_e": 5, "descriptors": ["bold"]})
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :, 0] = 255
    pixels[:, ::2, 1] = 255  # every other column yellow: a 2-pixel sample lands on red only
    image = Image.fromarray(pixels)
    (fine,) = BrandScorer(model).score([image], ScoreContext(brand=kit))
    (coarse,) = BrandScorer(model, palette_max_side=2).score([image], ScoreContext(brand=kit))
    assert fine["palette_compliance"] == 0.5
    assert coarse["palette_compliance"] in (0.0, 1.0)


def test_a_kit_built_without_any_weighted_term_fails_the_card(scorer: BrandScorer, make_kit: KitFactory) -> None:
    kit = replace(make_kit({"descriptors": ["bold"]}), weights=BrandWeights(palette=1, text=0, references=1))
    (card,) = score_images([scorer], [_noise(0)], ScoreContext(brand=kit))
    assert not card.complete
    assert "gives no weight" in card.as_dict()["failed"]["brand"]
