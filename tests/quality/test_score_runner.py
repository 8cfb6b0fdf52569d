"""``score_images`` fails closed: a scorer that raises or answers badly leaves an incomplete card, never a crash."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from PIL import Image

from quality.base import ScoreCard, Scorer, score_images
from quality.nsfw import OpenNsfwScorer
from quality.perceptual import PerceptualScorer

Answer = Callable[[Sequence[Image.Image]], list[dict[str, float]]]


@dataclass
class StubScorer:
    """A ``Scorer`` whose answer is a function of the batch, to drive the runner through each outcome."""

    name: str
    version: str
    answer: Answer

    def score(self, images: Sequence[Image.Image]) -> list[dict[str, float]]:
        return self.answer(images)


def _by_index(images: Sequence[Image.Image]) -> list[dict[str, float]]:
    return [{"index": float(i)} for i in range(len(images))]


def _boom(images: Sequence[Image.Image]) -> list[dict[str, float]]:
    raise RuntimeError("boom")


@pytest.fixture
def make_scorer() -> Callable[..., StubScorer]:
    def make(name: str = "stub", version: str = "1", answer: Answer = _by_index) -> StubScorer:
        return StubScorer(name, version, answer)

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
        [make_scorer("a", "1"), make_scorer("b", "2", lambda ims: [{"x": 0.5} for _ in ims])],
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
    scorer = make_scorer("nan", answer=lambda ims: [{"ok": 0.1, "broken": bad} for _ in ims])
    (card,) = score_images([scorer], make_images(1))
    assert not card.complete
    assert _failed(card, "nan") == "ValueError: non-finite values for ['broken']"


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
    assert as_dict["versions"] == {"perceptual": "1", "nsfw": nsfw.version}
