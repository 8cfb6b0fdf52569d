"""Embedding levels and run order (UAX #9 rules the compositor implements), checked on small tables."""

from __future__ import annotations

import pytest

from generators.template_bidi import embedding_levels, paragraph_level, visual_order


@pytest.mark.parametrize(
    ("text", "base", "levels"),
    [
        ("abc def", 0, "0000000"),
        ("שלום", 1, "1111"),
        ("Hello עולם 123!", 0, "000000111112220"),  # digits after Hebrew in LTR text: level 2; "!" back to 0
        ("خصم 30٪", 1, "1111221"),  # W2: digits after Arabic are Arabic numbers (2); ٪ stays right-to-left
        ("خصم Mediagate Pro على", 1, "111122222222222221111"),  # Latin inside Arabic: level 2, spaces between: 1
        ("a-b", 0, "000"),
        ("12.5%", 0, "00000"),  # W4, W5 then W7: a European number in LTR text is L
        ("مرحبا (عالم)", 1, "111111111111"),  # brackets between right-to-left words are right-to-left
        ("", 0, ""),
        ("123", 0, "000"),  # no strong character: LTR paragraph, and W7 makes the number L
    ],
)
def test_levels(text: str, base: int, levels: str) -> None:
    assert paragraph_level(text) == base
    assert "".join(map(str, embedding_levels(text, base))) == levels


def test_non_spacing_marks_take_the_type_of_their_base() -> None:
    text = "بَ a"  # Arabic beh with fatha, space, Latin a
    assert embedding_levels(text, 1) == [1, 1, 1, 2]


@pytest.mark.parametrize(
    ("levels", "order"),
    [
        ([0], [0]),
        ([0, 1, 0], [0, 1, 2]),
        ([1, 2, 1], [2, 1, 0]),
        ([1, 1, 2, 2, 1], [4, 2, 3, 1, 0]),  # left-to-right runs inside right-to-left keep their order
        ([0, 1, 1, 0], [0, 2, 1, 3]),
        ([], []),
    ],
)
def test_visual_order(levels: list[int], order: list[int]) -> None:
    assert visual_order(levels) == order
