"""The OCR text analysis on its own, with made-up OCR lines: the match with expected texts, banned words however
disguised, and garbled text judged against CLIP's word list. No model is loaded; ``test_ocr`` reads real images."""

from __future__ import annotations

from typing import Any

import pytest

from quality.base import ImageContext, ScoreContext
from quality.ocr_text import (
    INFERRED_SPACE,
    Line,
    analyse,
    banned_found,
    garbled,
    lexicon,
    line_garbled,
    match_form,
    near_miss,
    similarity,
    word_garbled,
)

BANNED = ("gore", "child abuse", "beheading")


# -- expected texts ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expected", "read", "low", "high"), [
    ("summersale", "bigsummersalenow", 1.0, 1.0),
    ("summersale", "summersa1e", 0.85, 0.95),
    ("summersale", "wintersale", 0.5, 0.79),
    ("summersale", "", 0.0, 0.0),
    ("", "anything", 1.0, 1.0),
    ("freedelivery", "summersaleupto50off", 0.0, 0.4),
])
def test_similarity(expected: str, read: str, low: float, high: float) -> None:
    assert low <= similarity(expected, read) <= high


def test_match_form_ignores_case_spacing_punctuation_and_look_alikes() -> None:
    assert match_form("  SUMMER-Sale, 50 %! ") == match_form("summer sale 50%") == "summersale50"
    assert match_form("Café") == match_form("CAFE") == "cafe"
    assert match_form("Ｓａｌｅ") == match_form("Sаle") == "sale"  # fullwidth; Cyrillic а inside a Latin word


# -- banned words ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "found"), [
    ("GORE", ["gore"]), ("G0RE", ["gore"]), ("g0r3", ["gore"]), ("GΟRE", ["gore"]),  # Greek capital omicron
    ("ｇｏｒｅ", ["gore"]), ("G O R E", ["gore"]), ("gore!", ["gore"]), ("no-gore-zone", ["gore"]),
    ("child\nabuse", ["child abuse"]), ("CHILD  ABUSE", ["child abuse"]),
    ("gorgeous", []), ("gored", []), ("algore", []), ("child's abuse", []), ("", []),
    ("gore beheading gore", ["gore", "beheading"]),
])
def test_banned_found_readings(text: str, found: list[str]) -> None:
    assert banned_found([text], BANNED) == found


def test_banned_found_reads_with_and_without_inferred_breaks() -> None:
    assert banned_found(["NOGOREHERE"], BANNED) == []
    line = Line(f"NO{INFERRED_SPACE}GORE{INFERRED_SPACE}HERE", 0.99, 8.0)
    assert banned_found([line.spaced, line.plain], BANNED) == ["gore"]
    broken = Line(f"GO{INFERRED_SPACE}RE", 0.99, 3.0)  # a false break inside the word: the plain reading has it
    assert banned_found([broken.spaced, broken.plain], BANNED) == ["gore"]


# -- garbled text ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("word", "verdict"), [
    ("coffee", 0.0), ("Gorgeous", 0.0), ("SUMMER", 0.0), ("of", None), ("Mr", None), ("夏季", None),
    ("Zorblax", 0.5), ("Quivven", 0.5), ("Xqzkt", 1.0), ("Rtyp", 0.5), ("strngth", 1.0), ("Pizzza", 1.0),
    ("xQzKa", 1.0), ("iPhone", 0.0), ("COFEFE", 1.0), ("Bakkery", 1.0), ("shoop", 1.0), ("Ka入o", 1.0),
    ("Weicome", 0.0), ("rnarket", 0.0), ("www", 0.0), ("VIII", 0.0), ("mmmm", 1.0), ("Soooo", 1.0),
])
def test_word_garbled(word: str, verdict: float | None) -> None:
    assert word_garbled(word, lexicon()) == verdict


def test_near_miss_is_one_edit_from_a_known_word() -> None:
    words = {"bakery", "coffee", "shop", "cat", "type"}
    one_edit = ("bakkery", "bakry", "bakeyr", "bakory", "cofefe", "shoop", "shp")
    assert [near_miss(w, words) for w in one_edit] == [True] * 7
    # two edits, a known word under four letters, unrelated, and the known word itself
    assert [near_miss(w, words) for w in ("bkry", "caat", "rtyp", "pizza", "bakeries", "shopping", "bakery")] == [
        False] * 7


def test_lexicon_is_clips_whole_words_folded() -> None:
    words = lexicon()
    assert len(words) > 30000
    assert {"coffee", "bakery", "gorgeous", "cafe", "welcome"} <= words
    assert not {"xqzkt", "cofefe", "bakkery", "Coffee"} & words


@pytest.mark.parametrize(("line", "share"), [
    (Line("Fresh coffee", 0.98, 6.0), 0.0),
    (Line("Fresh coffee", 0.3, 6.0), 1.0),  # the recogniser could not read it
    (Line("", 0.0, 6.0), 1.0),
    (Line("Xqzkt coffee", 0.98, 6.0), 5 / 11),
    (Line("K", 0.9, 6.0), 1 - 1 / 3),  # one character read from a box six heights wide
    (Line(f"SUMMER{INFERRED_SPACE}SALE", 0.98, 6.0), 0.0),  # judged as two words
    (Line(f"NO{INFERRED_SPACE}GORE", 0.98, 6.0), 0.0),  # a short word beside a known one is clean
    (Line(f"MM{INFERRED_SPACE}WW", 0.6, 4.0), 1.0),  # short parts do not clear a garbled run
    (Line(f"Te{INFERRED_SPACE}rms apply", 0.98, 6.0), 0.0),  # a false break inside a known word
    (Line(f"FRESS{INFERRED_SPACE}CESSEE", 0.98, 6.0), (5 * 1.0 + 6 * 0.5) / 11),
    (Line("50% 2024 !!", 0.98, 4.0), 0.0),
])
def test_line_garbled(line: Line, share: float) -> None:
    assert line_garbled(line, lexicon()) == pytest.approx(share)


def test_garbled_weights_lines_by_length_and_ignores_stray_marks() -> None:
    words = lexicon()
    assert garbled([], words) == 0.0
    assert garbled([Line("O", 0.2, 1.2), Line("?", 0.3, 1.0)], words) == 0.0  # glyph-sized marks in a photo
    assert garbled([Line("s?06", 0.2, 3.0)], words) == pytest.approx(3.0 / 6.0)  # less than a line of text
    assert garbled([Line("Xqzkt", 0.9, 12.0), Line("Fresh coffee", 0.98, 4.0)], words) == pytest.approx(0.75)


# -- the scorer's answer -----------------------------------------------------------------------------------------------


def test_analyse_gives_every_field_from_lines() -> None:
    lines = [Line(f"NO{INFERRED_SPACE}GORE", 0.97, 6.0), Line("Summer sale", 0.99, 7.0), Line("xx", 0.2, 3.0)]
    image = ImageContext("en", ("Summer sale", "Free delivery", "★★★"))
    values: dict[str, Any] = analyse(lines, image, ScoreContext(banned_terms=BANNED),
                                     alphabet=frozenset("abcdefghijklmnopqrstuvwxyz"), lexicon=lexicon())
    assert values["text"] == "NO GORE\nSummer sale" and values["lines"] == 2
    assert values["confidence"] == pytest.approx(0.98)
    assert values["expected"] is True and values["text_checked"] is True  # "★★★" has nothing to check
    assert values["missing_texts"] == ["Free delivery"] and values["text_match"] < 0.5
    assert values["banned_found"] == ["gore"] and values["banned_words"] == 1
    assert values["garbled"] == pytest.approx(3.0 / 16.0)  # the unreadable box, three of sixteen heights
