"""Scripts in the template compositor, with real rendering: glyph coverage, fallback, right-to-left, CJK wrapping."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from gateway.errors import InvalidInput
from generators.template import Template, TemplateLibrary
from generators.template_fonts import CJK, Face, Fonts, load
from generators.template_samples import SAMPLES, UNCOVERED
from generators.template_text import TextBlock

MakeCard = Callable[..., Template]
NOTDEF = "\U0010fffd"

# One sample per script, with the face its letters must come from.
SCRIPTS = [
    ("en", "noto-sans"), ("vi", "noto-sans"), ("ru", "noto-sans"), ("el", "noto-sans"), ("hi", "noto-sans"),
    ("ar", "noto-sans-arabic"), ("fa", "noto-sans-arabic"), ("ur", "noto-sans-arabic"), ("he", "noto-sans-hebrew"),
    ("zh-CN", "noto-sans-cjk-sc"), ("zh-TW", "noto-sans-cjk-tc"), ("ja", "noto-sans-cjk-jp"),
    ("ko", "noto-sans-cjk-kr"),
]


@pytest.fixture
def make_card(tmp_path: Path) -> MakeCard:
    """Factory: a one-slot template on black, white text, ``slot`` overriding the text slot's settings."""

    def make(**slot: Any) -> Template:
        text_slot = {"name": "title", "box": [20, 20, 600, 120], "max_size": 40, "min_size": 12,
                     "colour": "#ffffff", "max_lines": 1, "max_chars": 1000, **slot}
        data = {"id": "card", "title": "Card", "width": 640, "height": 160, "background": {"colour": "#000000"},
                "slots": [text_slot]}
        folder = tmp_path / f"card-{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "card.json").write_text(json.dumps(data), encoding="utf-8")
        template = TemplateLibrary([folder]).get("card")
        assert template is not None
        return template

    return make


def _glyph(face: Face, char: str) -> bytes:
    font = load(face, 48, ImageFont.Layout.BASIC)
    image = Image.new("L", (96, 96))
    ImageDraw.Draw(image).text((24, 70), char, font=font, fill=255, anchor="ls")
    return image.tobytes()


def _block(template: Template, text: str, locale: str | None = None) -> TextBlock:
    return template.layout(template.validate_fields({"title": text}, locale), locale=locale)["title"]


def _ink(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.int16)


@pytest.mark.parametrize(("locale", "face"), SCRIPTS)
def test_every_script_draws_real_glyphs_from_its_face(make_card: MakeCard, locale: str, face: str) -> None:
    template = make_card(max_lines=3)
    text = SAMPLES[locale]["headline"]
    block = _block(template, text, locale)
    letters = {run.face.key for run in block.runs for c in run.text if c.isalpha()}
    assert letters == {face}
    for run in block.runs:
        notdef = _glyph(run.face, NOTDEF)
        for char in set(run.text) - {" "}:
            # A face without the character would draw its missing-glyph box instead.
            assert _glyph(run.face, char) != notdef, (locale, char, run.face.key)
    image = _ink(template.render({"title": text}, seed=0, locale=locale))
    box = template.slots[0].box
    assert (image[box.y:box.y + box.h, box.x:box.x + box.w] > 128).sum() > 100
    assert (image > 128).sum() == (image[box.y:box.y + box.h, box.x:box.x + box.w] > 128).sum()


def test_han_glyph_forms_follow_the_locale(make_card: MakeCard) -> None:
    template = make_card()
    faces = {loc: {r.face for r in _block(template, "骨直", loc).runs} for loc in ("zh-CN", "zh-TW", "ja", "ko")}
    assert faces == {"zh-CN": {CJK["sc"]}, "zh-TW": {CJK["tc"]}, "ja": {CJK["jp"]}, "ko": {CJK["kr"]}}
    # 骨 is drawn differently in Simplified Chinese and Japanese: the locale changes pixels, not only a label.
    assert _glyph(CJK["sc"], "骨") != _glyph(CJK["jp"], "骨")
    drawn = {loc: template.render({"title": "骨直"}, seed=0, locale=loc).tobytes() for loc in ("zh-CN", "ja")}
    assert drawn["zh-CN"] != drawn["ja"]


@pytest.mark.parametrize(
    ("text", "first", "rtl"),
    [
        ("مرحبا بالعالم", "مرحبا", True),  # Arabic: "hello world"
        ("שלום עולם", "שלום", True),  # Hebrew
        ("Hello world", "Hello", False),  # the control: left to right, the first word is not at the right end
    ],
)
def test_right_to_left_text_starts_at_the_right(make_card: MakeCard, text: str, first: str, rtl: bool) -> None:
    """Right-aligned at one size, the full line and its first word alone share their rightmost pixels only when
    the text runs right to left."""
    template = make_card(max_size=40, min_size=40, align="right")
    masks = []
    for words in (text, first):
        baseline = _block(template, words).origins[0][1]
        ink = _ink(template.render({"title": words}, seed=0)) > 96  # glyphs, not the faint background pattern
        masks.append(np.roll(ink, 80 - baseline, axis=0))  # the two blocks' baselines differ: line them up
    line, word = masks
    columns = np.nonzero(word.any(axis=0))[0]
    left, right = int(columns.min()), int(columns.max()) + 1
    mismatch = (line[:, left:right] != word[:, left:right]).sum() / word[:, left:right].sum()
    assert bool(mismatch < 0.1) == rtl, mismatch
    assert (_block(template, text).direction == "rtl") is rtl


def test_arabic_letters_are_joined(make_card: MakeCard) -> None:
    template = make_card(max_size=40, min_size=40)
    joined = _block(template, "ببب")
    alone = _block(template, "ب")
    width = joined.ink[2] - joined.ink[0]
    assert width < 3 * (alone.ink[2] - alone.ink[0]) * 0.8  # connected forms are narrower than isolated ones


def test_mixed_direction_line_orders_its_runs(make_card: MakeCard) -> None:
    template = make_card(max_size=32, min_size=32)
    block = _block(template, "خصم 30٪ على Mediagate")  # "30% off Mediagate"
    assert block.direction == "rtl"
    by_text = {run.text.strip(): run for run in block.runs}
    assert by_text["Mediagate"].face.key == "noto-sans" and by_text["Mediagate"].direction == "ltr"
    assert by_text["30"].direction == "ltr"  # numbers read left to right inside right-to-left text
    # Right to left: the first word is rightmost, the Latin brand (last) leftmost, the number in between.
    xs = sorted(block.runs, key=lambda r: r.origin[0])
    assert xs[0].text.strip() == "Mediagate" and "خصم" in xs[-1].text
    assert by_text["Mediagate"].origin[0] < by_text["30"].origin[0] < xs[-1].origin[0]


@pytest.mark.parametrize(("align", "text", "side"),
                         [("start", "Hello", "left"), ("start", "مرحبا", "right"), ("end", "Hello", "right"),
                          ("end", "مرحبا", "left"), ("left", "مرحبا", "left"), ("right", "Hello", "right")])
def test_start_and_end_follow_the_direction(make_card: MakeCard, align: str, text: str, side: str) -> None:
    template = make_card(align=align)
    block = _block(template, text)
    box = template.slots[0].box
    edge = block.ink[0] - box.x if side == "left" else box.x + box.w - block.ink[2]
    assert 0 <= edge <= 3, (block.ink, box)


@pytest.mark.parametrize("locale", ["zh-CN", "zh-TW", "ja"])
def test_cjk_wraps_between_characters_inside_the_box(make_card: MakeCard, locale: str) -> None:
    template = make_card(box=[20, 10, 260, 140], max_size=40, min_size=30, max_lines=4)
    text = SAMPLES[locale]["subline"]
    assert " " not in text
    block = _block(template, text, locale)
    assert len(block.lines) > 1 and "".join(block.lines) == text  # broken between characters, nothing lost
    assert not any(line[0] in "、。，" for line in block.lines[1:])  # no line starts with a closing mark
    box = template.slots[0].box
    left, top, right, bottom = block.ink
    assert box.x <= left and box.y <= top and right <= box.x + box.w and bottom <= box.y + box.h
    assert block.size == 30 or len(block.lines) <= 4


def test_korean_breaks_at_spaces_only(make_card: MakeCard) -> None:
    template = make_card(box=[20, 10, 300, 140], max_size=40, min_size=20, max_lines=3)
    text = SAMPLES["ko"]["headline"]
    block = _block(template, text, "ko")
    assert " ".join(block.lines) == text and len(block.lines) > 1


@pytest.mark.parametrize("locale", [loc for loc, _ in SCRIPTS])
def test_text_too_long_for_its_slot_is_refused_in_every_script(make_card: MakeCard, locale: str) -> None:
    template = make_card(box=[20, 20, 300, 60], max_size=30, min_size=24, max_lines=2)
    text = " ".join([SAMPLES[locale]["subline"]] * 3)
    with pytest.raises(InvalidInput) as caught:
        template.validate_fields({"title": text}, locale)
    assert (caught.value.field, caught.value.rule) == ("fields.title", "text_fits")
    assert "'title'" in caught.value.detail


@pytest.mark.parametrize("slot", ["headline", "subline", "cta"])
def test_a_script_no_font_covers_is_refused_naming_the_slot(slot: str) -> None:
    template = TemplateLibrary([TemplateLibrary.default_dir()]).get("global-launch")
    assert template is not None
    fields = {**SAMPLES["en"], slot: UNCOVERED["th"][slot]}
    with pytest.raises(InvalidInput) as caught:
        template.validate_fields(fields, "th")
    assert (caught.value.field, caught.value.rule) == (f"fields.{slot}", "font_coverage")
    assert f"slot {slot!r}" in caught.value.detail and "U+0E" in caught.value.detail


def test_every_sample_fits_the_global_launch_template() -> None:
    template = TemplateLibrary([TemplateLibrary.default_dir()]).get("global-launch")
    assert template is not None
    for locale, fields in SAMPLES.items():
        assert template.validate_fields(fields, locale) == fields, locale


@pytest.mark.parametrize("text", ["مرحبا", "नमस्ते", "שלום"])
def test_shaped_text_is_refused_without_raqm(make_card: MakeCard, text: str) -> None:
    template = make_card()
    with pytest.raises(InvalidInput) as caught:
        template.check_fields({"title": text}, None, Fonts(ImageFont.Layout.BASIC))
    assert (caught.value.field, caught.value.rule) == ("fields.title", "text_shaping")
    cleaned, blocks = template.check_fields({"title": "Привет, Ελλάδα"}, None, Fonts(ImageFont.Layout.BASIC))
    assert blocks["title"].lines == ("Привет, Ελλάδα",)


def test_serif_family_draws_other_glyphs(make_card: MakeCard) -> None:
    sans, serif = make_card(), make_card(font="serif")
    assert sans.render({"title": "Grand opening"}, seed=0).tobytes() != serif.render({"title": "Grand opening"},
                                                                                        seed=0).tobytes()
    assert {r.face.key for r in _block(serif, "Grand opening").runs} == {"noto-serif"}
    assert {r.face.key for r in _block(serif, "नमस्ते").runs} == {"noto-sans"}  # no serif Devanagari: falls back
    with pytest.raises(ValueError, match=r"slots\.title\.font must be sans \| serif"):
        make_card(font="mono")
