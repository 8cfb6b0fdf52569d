"""The NudeNet scorer runs the real bundled detector: benign images find nothing exposed, batches match singles, the
answer follows nudenet's own API, and the label and threshold logic is checked on synthetic and real detections.
No test uses a nude image."""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nudenet
import numpy as np
import pytest
from nudenet import NudeDetector
from PIL import Image, ImageDraw

import quality.nudity as nudity_module
from generators.template_fonts import NOTO_SANS, Fonts
from quality.base import ScoreContext, Scorer, score_images
from quality.nudity import (
    COUNT_THRESHOLD,
    COVERED_LABELS,
    EXPOSED_LABELS,
    NudeNetScorer,
    bundled_model_path,
    summarise,
)

ImageFactory = Callable[..., Image.Image]
NO_CONTEXT = ScoreContext()
NOTHING = {"exposed_max": 0.0, "exposed_count": 0, "labels": [], "covered_max": 0.0}


@pytest.fixture(scope="module")
def scorer() -> NudeNetScorer:
    loaded = NudeNetScorer()
    loaded.warmup()
    return loaded


@pytest.fixture
def make_scene() -> ImageFactory:
    """Factory: a landscape-like drawing (sky, ground, sun, house, tree); ``seed`` moves its shapes, adds grain."""

    def make(seed: int = 0, size: tuple[int, int] = (512, 512)) -> Image.Image:
        rng = np.random.default_rng(seed)
        width, height = size
        image = Image.new("RGB", size, (135, 206, 235))
        draw = ImageDraw.Draw(image)
        horizon = int(height * rng.uniform(0.55, 0.75))
        draw.rectangle((0, horizon, width, height), fill=(60, 140, 60))
        sun = int(rng.uniform(0.6, 0.85) * width)
        draw.ellipse((sun, 20, sun + 50, 70), fill=(255, 220, 0))
        house = int(rng.uniform(0.1, 0.4) * width)
        draw.rectangle((house, horizon - 60, house + 80, horizon), fill=(170, 80, 50))
        draw.polygon([(house - 10, horizon - 60), (house + 40, horizon - 100), (house + 90, horizon - 60)],
                     fill=(90, 50, 40))
        draw.ellipse((width - 140, horizon - 120, width - 60, horizon - 40), fill=(40, 110, 40))
        grain = rng.normal(0, 6, (height, width, 3))
        return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))

    return make


@pytest.fixture
def make_banner() -> ImageFactory:
    def make(text: str = "SUMMER SALE", background: tuple[int, int, int] = (230, 180, 150)) -> Image.Image:
        image = Image.new("RGB", (512, 512), background)
        ImageDraw.Draw(image).text((256, 256), text, font=Fonts().font(NOTO_SANS, 56), fill=(20, 20, 20), anchor="mm")
        return image

    return make


def _skimage(name: str) -> Image.Image:
    """A photograph from scikit-image's bundled data (public domain or CC0), to show the detector is alive."""
    data = pytest.importorskip("skimage.data", reason="scikit-image ships the test photographs")
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def _photos() -> list[Image.Image]:
    """The portrait when scikit-image is installed (a brisque dependency here), else nothing."""
    try:
        from skimage import data
    except ImportError:
        return []
    return [Image.fromarray(data.astronaut())]


def one(scorer: NudeNetScorer, image: Image.Image) -> dict[str, Any]:
    (values,) = scorer.score([image], NO_CONTEXT)
    return values


# -- the model and its labels ----------------------------------------------------------------------------------------


def test_is_a_scorer(scorer: NudeNetScorer) -> None:
    assert isinstance(scorer, Scorer)
    assert scorer.name == "nudity"
    assert set(scorer.fields) == {"exposed_max", "exposed_count", "labels", "covered_max"}
    assert "CPUExecutionProvider" in scorer.providers
    assert scorer._detector.onnx_session.get_providers() == scorer.providers


def test_model_is_the_file_shipped_in_the_package(scorer: NudeNetScorer) -> None:
    shipped = Path(str(importlib.resources.files("nudenet") / "320n.onnx"))
    assert scorer.model_path == bundled_model_path() == shipped
    assert scorer._detector.onnx_session._model_path == str(shipped)


def test_version_pins_package_and_weights(scorer: NudeNetScorer) -> None:
    digest = hashlib.sha256(scorer.model_path.read_bytes()).hexdigest()
    assert re.fullmatch(r"nudenet:3\.4\.\d+:[0-9a-f]{12}", scorer.version)
    assert scorer.version.endswith(f":{digest[:12]}")


def test_labels_come_from_the_model_and_match_nudenet(scorer: NudeNetScorer) -> None:
    assert scorer.labels == tuple(getattr(nudenet.nudenet, "__labels"))  # noqa: B009 - a module-private name
    assert len(scorer.labels) == 18
    assert EXPOSED_LABELS <= set(scorer.labels) and COVERED_LABELS <= set(scorer.labels)
    assert not EXPOSED_LABELS & COVERED_LABELS
    assert all(label.endswith("_EXPOSED") for label in EXPOSED_LABELS)
    assert all(label.endswith("_COVERED") for label in COVERED_LABELS)
    assert "MALE_BREAST_EXPOSED" not in EXPOSED_LABELS and "FACE_FEMALE" not in EXPOSED_LABELS


def test_a_model_without_an_expected_label_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nudity_module, "EXPOSED_LABELS", EXPOSED_LABELS | {"NO_SUCH_LABEL"})
    with pytest.raises(RuntimeError, match="has no label \\['NO_SUCH_LABEL'\\]"):
        NudeNetScorer()


def test_a_model_whose_labels_differ_from_nudenets_list_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """nudenet names detections from its own list: a model with another class order would be mislabelled."""
    real = nudity_module.model_labels
    monkeypatch.setattr(nudity_module, "model_labels", lambda session: tuple(reversed(real(session))))
    with pytest.raises(RuntimeError, match="not nudenet's own list"):
        NudeNetScorer()


def test_missing_model_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nudity_module, "_MODEL_FILENAME", "no-such-model.onnx")
    with pytest.raises(FileNotFoundError, match="'no-such-model.onnx' is not inside the installed nudenet"):
        NudeNetScorer()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_batch": 0}, "`max_batch`"), ({"intra_op_num_threads": -1}, "`intra_op_num_threads`"),
    ({"threshold": 0.0}, "`threshold`"), ({"threshold": 1.5}, "`threshold`"),
])
def test_bad_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NudeNetScorer(**kwargs)


# -- summarise: detections to fields ---------------------------------------------------------------------------------


def _found(label: str, score: float) -> dict[str, Any]:
    return {"class": label, "score": score, "box": [10, 10, 50, 50]}


@pytest.mark.parametrize(("detections", "expected"), [
    ([], NOTHING),
    ([_found("FEMALE_BREAST_EXPOSED", 0.91)],
     {"exposed_max": 0.91, "exposed_count": 1, "labels": ["FEMALE_BREAST_EXPOSED"], "covered_max": 0.0}),
    ([_found("BUTTOCKS_EXPOSED", 0.3)],  # seen, but under the counting threshold
     {"exposed_max": 0.3, "exposed_count": 0, "labels": [], "covered_max": 0.0}),
    ([_found("MALE_GENITALIA_EXPOSED", COUNT_THRESHOLD)],  # the threshold itself counts
     {"exposed_max": COUNT_THRESHOLD, "exposed_count": 1, "labels": ["MALE_GENITALIA_EXPOSED"], "covered_max": 0.0}),
    ([_found("ANUS_EXPOSED", 0.7), _found("ANUS_EXPOSED", 0.6), _found("FEMALE_GENITALIA_EXPOSED", 0.55)],
     {"exposed_max": 0.7, "exposed_count": 3, "labels": ["ANUS_EXPOSED", "FEMALE_GENITALIA_EXPOSED"],
      "covered_max": 0.0}),
    ([_found("FEMALE_BREAST_COVERED", 0.8), _found("BUTTOCKS_COVERED", 0.4)],
     {"exposed_max": 0.0, "exposed_count": 0, "labels": [], "covered_max": 0.8}),
    ([_found(label, 0.99) for label in ("FACE_FEMALE", "FACE_MALE", "MALE_BREAST_EXPOSED", "FEET_EXPOSED",
                                        "BELLY_EXPOSED", "ARMPITS_EXPOSED", "FEET_COVERED", "BELLY_COVERED",
                                        "ARMPITS_COVERED")], NOTHING),  # not nudity
])
def test_summarise(detections: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    assert summarise(detections) == expected


def test_summarise_threshold_is_a_parameter() -> None:
    detections = [_found("BUTTOCKS_EXPOSED", 0.3), _found("FEMALE_BREAST_EXPOSED", 0.2)]
    assert summarise(detections, threshold=0.25)["labels"] == ["BUTTOCKS_EXPOSED"]
    assert summarise(detections, threshold=0.1)["exposed_count"] == 2


def test_summarise_answers_plain_python_types() -> None:
    values: dict[str, Any] = summarise([{"class": np.str_("BUTTOCKS_EXPOSED"), "score": np.float32(0.8),
                                         "box": [0, 0, 1, 1]}])
    assert type(values["exposed_max"]) is float and type(values["exposed_count"]) is int
    assert values["labels"] == ["BUTTOCKS_EXPOSED"] and type(values["labels"][0]) is str


def test_summarise_on_real_detections_of_a_portrait(scorer: NudeNetScorer) -> None:
    """The detector finds the astronaut's face (so the pipeline is alive); a face is not nudity."""
    (found,) = scorer.detect([_skimage("astronaut")])
    assert [d["class"] for d in found if d["score"] >= 0.5] == ["FACE_FEMALE"]
    assert summarise(found) == NOTHING


def test_summarise_on_a_real_false_alarm(scorer: NudeNetScorer) -> None:
    """On a cup of coffee the detector reports BUTTOCKS_EXPOSED at about 0.3: reported, but not counted."""
    (found,) = scorer.detect([_skimage("coffee")])
    assert [d["class"] for d in found] == ["BUTTOCKS_EXPOSED"]
    values: dict[str, Any] = summarise(found)
    assert 0.25 <= values["exposed_max"] < COUNT_THRESHOLD
    assert values["exposed_count"] == 0 and values["labels"] == []


# -- scoring images --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("color", [(0, 0, 0), (128, 128, 128), (255, 255, 255), (230, 180, 150), (200, 30, 30)])
def test_flat_colours_find_nothing(scorer: NudeNetScorer, color: tuple[int, int, int]) -> None:
    assert scorer.score([Image.new("RGB", (512, 512), color)], NO_CONTEXT) == [NOTHING]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_benign_scenes_find_nothing_exposed(scorer: NudeNetScorer, make_scene: ImageFactory,
                                            make_banner: ImageFactory, seed: int) -> None:
    for image in (make_scene(seed), make_banner(["SUMMER SALE", "Fresh coffee", "Open late"][seed])):
        values = one(scorer, image)
        assert values["exposed_count"] == 0 and values["labels"] == []
        assert values["exposed_max"] < COUNT_THRESHOLD and values["covered_max"] < COUNT_THRESHOLD


def test_follows_nudenets_own_api(scorer: NudeNetScorer, make_scene: ImageFactory) -> None:
    """Same detections as nudenet's NudeDetector on the same RGB array (its own session, CPU)."""
    reference = NudeDetector(model_path=str(bundled_model_path()))
    for image in (*_photos(), make_scene(0), make_scene(1).convert("L").convert("RGB")):
        (ours,) = scorer.detect([image])
        theirs = reference.detect(np.asarray(image))
        assert [(d["class"], d["box"]) for d in ours] == [(d["class"], d["box"]) for d in theirs]
        assert [d["score"] for d in ours] == pytest.approx([d["score"] for d in theirs], abs=1e-5)


def test_batch_matches_single_images_in_order(make_scene: ImageFactory) -> None:
    chunked = NudeNetScorer(max_batch=2, intra_op_num_threads=1)
    images = [make_scene(0), Image.new("RGB", (512, 512)), *_photos(), make_scene(1, size=(300, 200)), make_scene(2),
              Image.new("RGB", (64, 640), (230, 180, 150))]
    batch = chunked.detect(images)
    singles = [chunked.detect([image])[0] for image in images]
    assert len(batch) == len(images)
    for got, want in zip(batch, singles, strict=True):
        assert [(d["class"], d["box"]) for d in got] == [(d["class"], d["box"]) for d in want]
        assert [d["score"] for d in got] == pytest.approx([d["score"] for d in want], abs=1e-4)
    assert chunked.score(images, NO_CONTEXT) == [summarise(found) for found in singles]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "1", "CMYK", "I;16"])
def test_other_modes_are_scored_as_rgb(scorer: NudeNetScorer, make_scene: ImageFactory, mode: str) -> None:
    other = make_scene(0).convert(mode)
    assert scorer.detect([other]) == scorer.detect([other.convert("RGB")])


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (1000, 4), (7, 700)])
def test_tiny_and_thin_images_do_not_crash(scorer: NudeNetScorer, size: tuple[int, int]) -> None:
    assert one(scorer, Image.new("RGB", size, (200, 150, 120))) == NOTHING


def test_empty_batch_scores_nothing(scorer: NudeNetScorer) -> None:
    assert scorer.score([], NO_CONTEXT) == []


def test_answers_pass_the_runner_checks(scorer: NudeNetScorer, make_scene: ImageFactory,
                                        make_banner: ImageFactory) -> None:
    images = [make_scene(0), make_banner(), Image.new("L", (1, 1)), Image.new("RGBA", (64, 64))]
    cards = score_images([scorer], images, NO_CONTEXT)
    assert all(card.complete for card in cards), [card.as_dict()["failed"] for card in cards]
    assert [card.as_dict()["scores"]["nudity"] for card in cards] == [NOTHING] * 4
