"""``score_images`` fails closed: a scorer that raises or answers badly leaves an incomplete card, never a crash."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image

from quality.base import FieldType, ImageContext, ScoreCard, ScoreContext, Scorer, score_images
from quality.nsfw import OpenNsfwScorer
from quality.perceptual import PerceptualScorer

Answer = Callable[[Sequence[Image.Image]], list[dict[str, Any]]]


@dataclass
class StubScorer:
    """A ``Scorer`` whose answer is a function of the batch, to drive the runner through each outcome."""

    name: str
    version: str
    answer: Answer
    fields: Mapping[str, FieldType] = field(default_factory=dict)
    seen: list[ScoreContext] = field(default_factory=list)

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, Any]]:
        self.seen.append(context)
        return self.answer(images)


def _by_index(images: Sequence[Image.Image]) -> list[dict[str, float]]:
    return [{"index": float(i)} for i in range(len(images))]


def _boom(images: Sequence[Image.Image]) -> list[dict[str, float]]:
    raise RuntimeError("boom")


@pytest.fixture
def make_scorer() -> Callable[..., StubScorer]:
    def make(name: str = "stub", version: str = "1", answer: Answer = _by_index,
             fields: Mapping[str, FieldType] | None = None) -> StubScorer:
        return StubScorer(name, version, answer, dict(fields or {"index": "float"}))

    return make


@pytest.fixture
def make_images() -> Callable[[int], list[Image.Image]]:
    def make(n: int = 3) -> list[Image.Image]:
        return [Image.new("RGB", (16, 16), (40 * i, 100, 200)) for i in range(n)]

    return make


def _failed(card: ScoreCard, scorer: str) -> str | None:
    (result,) = [r for r in card.results if r.scorer == scorer]
    assert not result.ok and result.values == {}
    return result.error


def test_stub_is_a_scorer(make_scorer: Callable[..., StubScorer]) -> None:
    assert isinstance(make_scorer(), Scorer)


def test_all_ok_gives_complete_cards_in_image_order(
    make_scorer: Callable[..., StubScorer], make_images: Callable[[int], list[Image.Image]]
) -> None:
    seen: list[tuple[str, float]] = []
    cards = score_images(
        [make_scorer("a", "1", fields={"index": "float"}),
         make_scorer("b", "2", lambda ims: [{"x": 0.5} for _ in ims], fields={"x": "float"})],
        make_images(3),
        observe=lambda name, seconds: seen.append((name, seconds)),
    )
    assert len(cards) == 3
    assert all(card.complete for card in cards)
    assert [card.as_dict()["scores"]["a"]["index"] for card in cards] == [0.0, 1.0, 2.0]
    assert cards[1].as_dict() == {
        "complete": True,
        "scores": {"a": {"index": 1.0}, "b": {"x": 0.5}},
        "failed": {},
        "versions": {"a": "1", "b": "2"},
    }
    assert [name for name, _ in seen] == ["a", "b"]
    assert all(seconds >= 0 for _, seconds in seen)
    assert all(r.duration_s >= 0 and r.error is None for card in cards for r in card.results)


def test_a_raising_scorer_fails_its_entry_and_the_card(
    make_scorer: Callable[..., StubScorer], make_images: Callable[[int], list[Image.Image]]
) -> None:
    cards = score_images([make_scorer("good"), make_scorer("bad", answer=_boom)], make_images(2))
    for card in cards:
        assert not card.complete
        assert _failed(card, "bad") == "RuntimeError: boom"
        as_dict = card.as_dict()
        assert as_dict["failed"] == {"bad": "RuntimeError: boom"}
        assert "bad" not in as_dict["scores"] and "good" in as_dict["scores"]
        assert as_dict["versions"] == {"good": "1", "bad": "1"}


@pytest.mark.parametrize("count", [0, 2, 4])
def test_wrong_result_count_fails(
    make_scorer: Callable[..., StubScorer], make_images: Callable[[int], list[Image.Image]], count: int
) -> None:
    scorer = make_scorer("miscount", answer=lambda ims: [{"x": 1.0}] * count)
    cards = score_images([scorer], make_images(3))
    assert len(cards) == 3
    for card in cards:
        assert not card.complete
        assert _failed(card, "miscount") == f"ValueError: returned {count} results for 3 images"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_fail(
    make_scorer: Callable[..., StubScorer], make_images: Callable[[int], list[Image.Image]], bad: float
) -> None:
    scorer = make_scorer("nan", answer=lambda ims: [{"ok": 0.1, "broken": bad} for _ in ims],
                         fields={"ok": "float", "broken": "float"})
    (card,) = score_images([scorer], make_images(1))
    assert not card.complete
    assert _failed(card, "nan") == f"ValueError: bad answer: broken is not finite ({bad})"


def test_no_scorers_is_never_complete(make_images: Callable[[int], list[Image.Image]]) -> None:
    cards = score_images([], make_images(2))
    assert len(cards) == 2
    assert not any(card.complete for card in cards)


def test_real_scorers_fill_a_complete_card(make_images: Callable[[int], list[Image.Image]]) -> None:
    nsfw = OpenNsfwScorer()
    cards = score_images([PerceptualScorer(), nsfw], make_images(2))
    assert all(card.complete for card in cards)
    as_dict = cards[0].as_dict()
    assert set(as_dict["scores"]) == {"perceptual", "nsfw"}
    assert 0.0 <= as_dict["scores"]["perceptual"]["quality"] <= 1.0
    assert as_dict["scores"]["nsfw"]["nsfw"] < 0.5
    assert as_dict["versions"] == {"perceptual": PerceptualScorer.version, "nsfw": nsfw.version}


TYPED: dict[str, FieldType] = {"p": "float", "n": "int", "flag": "bool", "text": "str", "labels": "list[str]"}
GOOD = {"p": 0.5, "n": 3, "flag": True, "text": "SALE", "labels": ["a", "b"]}


@pytest.mark.parametrize(("change", "problem"), [
    ({"p": "0.5"}, "p must be a number, not str"),
    ({"p": True}, "p must be a number, not bool"),
    ({"n": 3.0}, "n must be an integer, not float"),
    ({"n": False}, "n must be an integer, not bool"),
    ({"flag": 1}, "flag must be a boolean, not int"),
    ({"text": None}, "text must be a string, not NoneType"),
    ({"labels": "a"}, "labels must be a list of strings"),
    ({"labels": ["a", 1]}, "labels must be a list of strings"),
    ({"extra": 1.0}, "undeclared extra"),
])
def test_answers_are_checked_against_the_declared_fields(
    make_scorer: Callable[..., StubScorer], make_images: Callable[[int], list[Image.Image]],
    change: dict[str, Any], problem: str,
) -> None:
    answer = {**GOOD, **change}
    scorer = make_scorer("typed", answer=lambda ims: [dict(answer) for _ in ims], fields=TYPED)
    (card,) = score_images([scorer], make_images(1))
    assert _failed(card, "typed") == f"ValueError: bad answer: {problem}"


def test_a_missing_field_fails(
    make_scorer: Callable[..., StubScorer], make_images: Callable[[int], list[Image.Image]]
) -> None:
    answer = {k: v for k, v in GOOD.items() if k != "text"}
    (card,) = score_images([make_scorer("typed", answer=lambda ims: [answer], fields=TYPED)], make_images(1))
    assert _failed(card, "typed") == "ValueError: bad answer: missing text"


def test_typed_values_reach_the_card_as_plain_json(
    make_scorer: Callable[..., StubScorer], make_images: Callable[[int], list[Image.Image]]
) -> None:
    import numpy as np

    answer = {**GOOD, "p": np.float64(0.25)}
    (card,) = score_images([make_scorer("typed", answer=lambda ims: [answer], fields=TYPED)], make_images(1))
    values = card.as_dict()["scores"]["typed"]
    assert values == {**GOOD, "p": 0.25} and type(values["p"]) is float


def test_an_empty_answer_means_not_applicable(
    make_scorer: Callable[..., StubScorer], make_images: Callable[[int], list[Image.Image]]
) -> None:
    scorer = make_scorer("brandish", answer=lambda ims: [{} if i % 2 else dict(GOOD) for i in range(len(ims))],
                         fields=TYPED)
    cards = score_images([scorer], make_images(2))
    assert all(card.complete for card in cards)
    assert [card.as_dict()["scores"]["brandish"] for card in cards] == [GOOD, {}]


def test_the_context_reaches_every_scorer(
    make_scorer: Callable[..., StubScorer], make_images: Callable[[int], list[Image.Image]]
) -> None:
    context = ScoreContext(tenant="acme", kind="template", prompt=None, banned_terms=("gore",),
                           images=(ImageContext("de-DE", ("Sommer",)),))
    a, b = make_scorer("a"), make_scorer("b")
    score_images([a, b], make_images(1), context)
    assert a.seen == [context] and b.seen == [context]
    assert context.image(0).expected_texts == ("Sommer",) and context.image(5) == ImageContext()
