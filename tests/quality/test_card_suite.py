"""The score-card suite: real score cards pass, and a bad score, a missing value, an incomplete card or an empty
batch fails it, naming the column and the images.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from PIL import Image

from quality.base import FieldType, ScoreContext, ScoreValue, score_images
from quality.card_suite import scorecard_suite, validate_cards
from quality.perceptual import PerceptualScorer


def _rule(expectation: Any) -> tuple[str, str | None]:
    """An expectation's short rule (from its meta) and its column."""
    return (expectation.meta or {})["rule"], expectation.configuration.kwargs.get("column")


class _Broken:
    """A scorer that raises: its entry fails and the card is incomplete."""

    name = "nsfw"
    version = "1"
    fields: dict[str, FieldType] = {"nsfw": "float", "sfw": "float"}

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]:
        raise RuntimeError("model missing")


class _Counter:
    """A scorer answering a count and a probability, like an OCR scorer."""

    name = "ocr"
    version = "1"
    fields: dict[str, FieldType] = {"banned_words": "int", "garbled": "float", "text": "str"}

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]:
        return [{"banned_words": i, "garbled": 0.1 * i, "text": "SALE"} for i in range(len(images))]


@pytest.fixture(scope="module")
def cards() -> list[dict[str, Any]]:
    """Real complete cards of three images from the perceptual scorer and an OCR-like one."""
    images = [Image.new("RGB", (32, 32), (60 * i, 120, 200)) for i in range(3)]
    scorers: list[Any] = [PerceptualScorer(), _Counter()]  # Any: mypy reads Scorer.fields as invariant
    return [card.as_dict() for card in score_images(scorers, images)]


def _failures(report: Mapping[str, Any]) -> list[tuple[str, str, list[int]]]:
    return [(f["column"], f["rule"], f["unexpected_images"]) for f in report["failed"]]


def test_good_score_cards_pass(cards: list[dict[str, Any]]) -> None:
    report = validate_cards(cards)
    assert report["success"] is True and report["failed"] == []
    assert report["images"] == 3
    assert {"complete", "perceptual.quality", "ocr.banned_words", "ocr.text"} <= set(report["columns"])
    assert report["statistics"]["unsuccessful_expectations"] == 0
    json.dumps(report)


# Each case breaks one value of one image; one GX run checks them all.
BAD_SCORES: list[tuple[int, str, str, Any, str]] = [
    (1, "perceptual", "quality", 1.5, "range"), (2, "perceptual", "exposure", -0.1, "range"),
    (0, "ocr", "garbled", 2.0, "range"), (1, "ocr", "banned_words", -1, "range"),
    (0, "perceptual", "sharpness", None, "not_null"), (2, "ocr", "text", None, "not_null"),
]


@pytest.fixture(scope="module")
def bad_scores_report(cards: list[dict[str, Any]]) -> dict[str, Any]:
    broken = json.loads(json.dumps(cards))
    for image, scorer, key, value, _ in BAD_SCORES:
        broken[image]["scores"][scorer][key] = value
    return validate_cards(broken)


@pytest.mark.parametrize(("image", "scorer", "key", "value", "rule"), BAD_SCORES,
                         ids=[f"{s}.{k}={v}" for _, s, k, v, _ in BAD_SCORES])
def test_a_bad_score_names_its_column(bad_scores_report: dict[str, Any], image: int, scorer: str, key: str,
                                      value: Any, rule: str) -> None:
    assert bad_scores_report["success"] is False
    (failure,) = [f for f in bad_scores_report["failed"] if f["column"] == f"{scorer}.{key}"]
    assert (failure["rule"], failure["unexpected_images"], failure["unexpected_values"]) == (rule, [image], [value])


def test_only_the_bad_scores_fail(bad_scores_report: dict[str, Any]) -> None:
    assert sorted(_failures(bad_scores_report)) == sorted((f"{s}.{k}", r, [i]) for i, s, k, _, r in BAD_SCORES)
    assert bad_scores_report["statistics"]["unsuccessful_expectations"] == len(BAD_SCORES)
    json.dumps(bad_scores_report)


def test_an_unknown_count_column_must_not_be_negative(cards: list[dict[str, Any]]) -> None:
    extra = json.loads(json.dumps(cards))
    for i, card in enumerate(extra):
        card["scores"]["logo"] = {"found": 1 - i, "ratio": 5.0}  # 'ratio' is unknown and unbounded
    assert _failures(validate_cards(extra)) == [("logo.found", "range", [2])]


def test_an_incomplete_card_fails_the_suite() -> None:
    images = [Image.new("RGB", (32, 32), (200, 100, 50)) for _ in range(2)]
    scorers: list[Any] = [PerceptualScorer(), _Broken()]
    cards = [card.as_dict() for card in score_images(scorers, images)]
    report = validate_cards(cards)
    # The failed scorer's columns are absent, not null: only completeness fails.
    assert _failures(report) == [("complete", "complete", [0, 1])]
    assert report["columns"] == sorted(["complete", *(f"perceptual.{k}" for k in PerceptualScorer.fields)])


def test_a_scorer_that_does_not_apply_leaves_no_nulls(cards: list[dict[str, Any]]) -> None:
    mixed = json.loads(json.dumps(cards))
    mixed[0]["scores"]["brand"] = {"score": 0.7}
    mixed[1]["scores"]["brand"] = {}  # no brand kit for this image: not applicable, not missing
    mixed[2]["scores"]["brand"] = {"score": 1.2}
    assert _failures(validate_cards(mixed)) == [("brand.score", "range", [2])]


def test_no_cards_fail_the_suite() -> None:
    report = validate_cards([])
    assert report["success"] is False
    assert ("non_empty", None) in [(f["rule"], f["column"]) for f in report["failed"]]


def test_the_scorecard_suite_fits_the_columns_present() -> None:
    suite = scorecard_suite(["complete", "_answered.nsfw", "nsfw.nsfw", "nsfw.sfw", "x.y"])
    checked = {_rule(e) for e in suite.expectations}
    assert {("not_null", "nsfw.nsfw"), ("range", "nsfw.nsfw"), ("range", "nsfw.sfw"), ("not_null", "x.y"),
            ("complete", "complete")} <= checked
    assert ("range", "x.y") not in checked and ("not_null", "_answered.nsfw") not in checked
