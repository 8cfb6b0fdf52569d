"""The OCR scorer on the real PP-OCR models, reading banners rendered with the packaged Noto fonts: the text it finds,
the match with what a template asked for, banned words however disguised, garbled text, and the scripts it cannot
read. The text analysis functions are checked on their own, with made-up OCR lines, in ``test_ocr_text``."""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

import quality.ocr as ocr_module
from generators.template_fonts import Fonts, chain, covers
from quality.base import ImageContext, ScoreContext, Scorer, score_images
from quality.ocr import OcrScorer, SpacedCTCDecode, bundled_model_paths, prepare
from quality.ocr_text import INFERRED_SPACE, lexicon_path, match_form, readable_share, similarity

Banner = Callable[..., Image.Image]
REPO_ROOT = Path(__file__).resolve().parents[2]
BANNED = ("gore", "child abuse", "beheading")


@pytest.fixture(scope="module")
def scorer() -> OcrScorer:
    """One real reader per module: the models and the word list load in about a second."""
    loaded = OcrScorer()
    loaded.warmup()
    return loaded


@pytest.fixture(scope="module")
def fonts() -> Fonts:
    return Fonts()


@pytest.fixture
def make_banner(fonts: Fonts) -> Banner:
    """Factory: ``make_banner("LINE 1", "line 2", locale="fr")``, centred lines in the template fonts' faces."""

    def make(*lines: str, locale: str | None = None, size: tuple[int, int] = (512, 512), font_size: int = 44,
             background: tuple[int, ...] = (255, 255, 255), ink: tuple[int, ...] = (20, 20, 20),
             mode: str = "RGB") -> Image.Image:
        image = Image.new(mode, size, background)
        draw = ImageDraw.Draw(image)
        faces = chain("sans", locale)
        y = size[1] // 2 - int(font_size * 0.8 * len(lines))
        for line in lines:
            face = next(f for f in faces if all(covers(f, c) for c in line if not c.isspace()))
            rtl = any(unicodedata.bidirectional(c) in ("R", "AL") for c in line)
            draw.text((size[0] // 2, y), line, font=fonts.font(face, font_size), fill=ink, anchor="mt",
                      direction=fonts.direction("rtl" if rtl else "ltr"))
            y += int(font_size * 1.6)
        return image

    return make


def one(scorer: OcrScorer, image: Image.Image, *, expected: Sequence[str] = (), locale: str | None = None,
        **context: Any) -> dict[str, Any]:
    """Score one image with its own ImageContext (``expected``, ``locale``); the rest goes to the ScoreContext."""
    (values,) = scorer.score([image], ScoreContext(images=(ImageContext(locale, tuple(expected)),), **context))
    return values


# -- the model, its files and its version --------------------------------------------------------------------------


def test_is_a_scorer(scorer: OcrScorer) -> None:
    assert isinstance(scorer, Scorer)
    assert scorer.name == "ocr"
    assert set(scorer.fields) == {"text", "lines", "confidence", "expected", "text_checked", "text_match",
                                  "missing_texts", "banned_words", "banned_found", "garbled"}
    assert "CPUExecutionProvider" in scorer.providers


def test_models_are_the_files_shipped_in_the_package(scorer: OcrScorer) -> None:
    shipped = Path(str(importlib.resources.files("rapidocr_onnxruntime") / "models"))
    assert scorer.model_paths == bundled_model_paths()
    assert {p.parent for p in scorer.model_paths.values()} == {shipped}
    assert all(p.is_file() for p in scorer.model_paths.values())


def test_version_pins_package_models_and_word_list(scorer: OcrScorer) -> None:
    models = hashlib.sha256(b"".join(scorer.model_paths[r].read_bytes() for r in ("det", "cls", "rec"))).hexdigest()
    words = hashlib.sha256(lexicon_path().read_bytes()).hexdigest()
    assert re.fullmatch(r"rapidocr-onnxruntime:1\.4\.\d+:[0-9a-f]{12}\+lexicon:[0-9a-f]{12}", scorer.version)
    assert scorer.version.endswith(f":{models[:12]}+lexicon:{words[:12]}")


def test_missing_model_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr_module, "_MODELS", {**ocr_module._MODELS, "rec": "no-such-model.onnx"})
    with pytest.raises(FileNotFoundError, match="'no-such-model.onnx' is not inside the installed rapidocr"):
        OcrScorer()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"det_limit_side_len": 16}, "`det_limit_side_len`"), ({"intra_op_num_threads": -1}, "`intra_op_num_threads`"),
])
def test_bad_settings_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OcrScorer(**kwargs)


def test_loading_imports_neither_open_clip_nor_torch() -> None:
    """The word list is read from open_clip's file; importing open_clip would pull in torch (seconds, gigabytes)."""
    code = ("import sys\nfrom quality.ocr import OcrScorer\nOcrScorer()\n"
            "assert 'open_clip' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


# -- reading ---------------------------------------------------------------------------------------------------------


def test_reads_the_rendered_lines_in_order(scorer: OcrScorer, make_banner: Banner) -> None:
    values = one(scorer, make_banner("FRESH COFFEE", "Open every day", "Bakery & Cafe"))
    assert values["text"] == "FRESH COFFEE\nOpen every day\nBakery & Cafe"
    assert values["lines"] == 3
    assert 0.9 < values["confidence"] <= 1.0
    assert values["expected"] is False and values["text_checked"] is False and values["text_match"] == 1.0


def test_no_text_reads_nothing(scorer: OcrScorer) -> None:
    values = one(scorer, Image.new("RGB", (512, 512), (90, 140, 200)))
    assert values == {"text": "", "lines": 0, "confidence": 1.0, "expected": False, "text_checked": False,
                      "text_match": 1.0, "missing_texts": [], "banned_words": 0, "banned_found": [], "garbled": 0.0}


def test_word_gaps_the_recogniser_ranks_second_are_kept(scorer: OcrScorer, make_banner: Banner) -> None:
    """All-caps lines lose their spaces in greedy decoding; the spaced reading restores them."""
    lines = scorer.read(make_banner("SUMMER SALE", "NO GORE HERE"))
    assert [line.spaced for line in lines] == ["SUMMER SALE", "NO GORE HERE"]
    assert INFERRED_SPACE in lines[0].text + lines[1].text  # at least one came from the space class, not argmax


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "1"])
def test_other_modes_are_read(scorer: OcrScorer, make_banner: Banner, mode: str) -> None:
    values = one(scorer, make_banner("HELLO WORLD").convert(mode), expected=("HELLO WORLD",))
    assert values["text_match"] == pytest.approx(1.0)


def test_text_on_a_transparent_background_is_read_as_on_a_white_page(scorer: OcrScorer,
                                                                     make_banner: Banner) -> None:
    image = make_banner("HELLO WORLD", mode="RGBA", background=(0, 0, 0, 0), ink=(0, 0, 0, 255))
    assert one(scorer, image)["text"] == "HELLO WORLD"
    assert one(scorer, image.convert("RGB"))["text"] == ""  # dropping alpha leaves black on black


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (2000, 8), (6, 900)])
def test_tiny_and_thin_images_do_not_crash(scorer: OcrScorer, size: tuple[int, int]) -> None:
    values = one(scorer, Image.new("RGB", size, (255, 255, 255)))
    assert values["lines"] == 0 and values["garbled"] == 0.0


@pytest.mark.parametrize(("size", "prepared"), [
    ((6, 900), (225, 900)), ((2000, 8), (2000, 500)), ((512, 512), (512, 512)), ((1, 1), (1, 1)),
    ((400, 100), (400, 100)),
])
def test_thin_images_are_padded_before_the_detector_scales_them(size: tuple[int, int],
                                                                prepared: tuple[int, int]) -> None:
    """The detector scales the shorter side up to 736 px: unpadded, a 6x900 strip took two minutes."""
    image = Image.new("RGB", size, (0, 0, 0))
    out = prepare(image)
    assert out.size == prepared and out.mode == "RGB"
    assert out.crop((0, 0, *size)).tobytes() == image.tobytes()  # the picture itself is unchanged, top left


def test_batch_matches_single_images_with_their_own_context(scorer: OcrScorer, make_banner: Banner) -> None:
    images = [make_banner("SUMMER SALE"), make_banner("WINTER SALE"), Image.new("RGB", (64, 64))]
    context = ScoreContext(banned_terms=BANNED, images=(ImageContext("en", ("SUMMER SALE",)),
                                                        ImageContext("en", ("SUMMER SALE",))))
    batch = scorer.score(images, context)
    singles = [scorer.score([img], ScoreContext(banned_terms=BANNED, images=context.images[i:i + 1]))[0]
               for i, img in enumerate(images)]
    assert batch == singles
    assert [v["missing_texts"] for v in batch] == [[], ["SUMMER SALE"], []]


def test_answers_pass_the_runner_checks(scorer: OcrScorer, make_banner: Banner) -> None:
    images = [make_banner("SUMMER SALE", "gоre"), make_banner("Xqzkt Vbnmw"), Image.new("L", (1, 1))]
    context = ScoreContext(kind="template", banned_terms=BANNED,
                           images=(ImageContext("en", ("SUMMER SALE", "Free delivery")),))
    cards = score_images([scorer], images, context)
    assert all(card.complete for card in cards), [card.as_dict()["failed"] for card in cards]
    scores = [card.as_dict()["scores"]["ocr"] for card in cards]
    assert scores[0]["banned_found"] == ["gore"] and scores[0]["missing_texts"] == ["Free delivery"]
    assert scores[1]["garbled"] > 0.5 and scores[2]["lines"] == 0


# -- expected texts --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rendered", "expected"), [
    (["SUMMER SALE", "Up to 50% off"], ["Summer sale", "up to 50% OFF"]),  # case, spaces
    (["Soldes d'été", "Café gratuit"], ["Soldes d’été", "Cafe gratuit"]),  # apostrophe and accent forms
    (["Summer sale up to", "50% off everything"], ["Summer sale up to 50% off everything"]),  # wrapped
    (["夏季大促销", "全场五折"], ["夏季大促销"]),
])
def test_rendered_expected_text_matches(scorer: OcrScorer, make_banner: Banner, rendered: list[str],
                                        expected: list[str]) -> None:
    values = one(scorer, make_banner(*rendered), expected=expected)
    assert values["expected"] is True and values["text_checked"] is True
    assert values["text_match"] >= 0.9 and values["missing_texts"] == []


@pytest.mark.parametrize(("rendered", "expected"), [
    (["WINTER CLEARANCE"], ["Summer sale"]),
    (["Fresh bread daily"], ["Cold drinks inside"]),
    (["全场五折"], ["夏季大促销"]),
])
def test_different_text_does_not_match(scorer: OcrScorer, make_banner: Banner, rendered: list[str],
                                       expected: list[str]) -> None:
    values = one(scorer, make_banner(*rendered), expected=expected)
    assert values["text_match"] < 0.5
    assert values["missing_texts"] == expected and values["text_checked"] is True


def test_missing_texts_names_only_the_absent_string(scorer: OcrScorer, make_banner: Banner) -> None:
    values = one(scorer, make_banner("SUMMER SALE", "Up to 50% off"),
                 expected=("SUMMER SALE", "Free delivery", "Up to 50% off"))
    assert values["missing_texts"] == ["Free delivery"]
    assert values["text_match"] < 0.5


@pytest.mark.parametrize(("locale", "text"), [
    ("ru", "Летняя распродажа"), ("uk", "Привіт світ"), ("el", "Καλοκαιρινή έκπτωση"), ("ar", "تخفيضات الصيف"),
    ("he", "מבצע קיץ"), ("hi", "गर्मी की बिक्री"), ("ko", "여름 세일"), ("ja", "ありがとう"),
])
def test_unreadable_scripts_are_not_checked(scorer: OcrScorer, make_banner: Banner, locale: str, text: str) -> None:
    values = one(scorer, make_banner(text, locale=locale), locale=locale, expected=(text,))
    # The recogniser really cannot read it: a match score here would be pretending.
    assert similarity(match_form(text), match_form(str(values["text"]))) < 0.5
    assert values["expected"] is True and values["text_checked"] is False
    assert values["text_match"] == 1.0 and values["missing_texts"] == [] and values["garbled"] == 0.0


def test_text_with_many_sharp_s_is_not_checked(scorer: OcrScorer, make_banner: Banner) -> None:
    """The alphabet has no ß (read as "B"): two in eleven letters is past the tolerance of one in ten."""
    values = one(scorer, make_banner("Größe Straße", locale="de"), expected=("Größe Straße",))
    assert values["text_checked"] is False and values["text_match"] == 1.0
    assert one(scorer, make_banner("Schöne Grüße"), expected=("Schöne Grüße",))["text_checked"] is True


@pytest.mark.parametrize(("locale", "text"), [
    ("en", "Summer sale"), ("fr", "Soldes d'été"), ("es", "Oferta de verano"), ("zh-Hans", "夏季大促销"),
    ("zh-Hant", "夏季大促銷"), ("ja", "東京都"),
])
def test_readable_scripts_are_checked(scorer: OcrScorer, make_banner: Banner, locale: str, text: str) -> None:
    values = one(scorer, make_banner(text, locale=locale), locale=locale, expected=(text,))
    assert values["text_checked"] is True and values["text_match"] >= 0.8


def test_a_mixed_image_checks_what_it_can(scorer: OcrScorer, make_banner: Banner) -> None:
    values = one(scorer, make_banner("Привет мир", "SALE 50%", locale="ru"), expected=("Привет мир", "SALE 50%"))
    assert values["text_checked"] is False and values["text_match"] == pytest.approx(1.0)


@pytest.mark.parametrize(("text", "share"), [
    ("Summer", 1.0), ("Café crème", 1.0), ("夏季", 1.0), ("50%", 1.0), ("", 1.0), ("Größe", 0.8), ("Привет", 1 / 3),
    ("여름", 0.0), ("セール", 0.0),
])
def test_readable_share(scorer: OcrScorer, text: str, share: float) -> None:
    assert readable_share(text, scorer.alphabet) == pytest.approx(share)


# -- banned words ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rendered", "found"), [
    (["NO G0RE HERE"], ["gore"]),  # leetspeak, and a gap the recogniser ranks second
    (["gоre zone"], ["gore"]),  # Cyrillic о, which the recogniser reads as the Latin letter it looks like
    (["GORE"], ["gore"]),
    (["STOP CHILD", "ABUSE NOW"], ["child abuse"]),  # a phrase across two lines
    (["Gorgeous deals", "Goregaon station"], []),  # the letters inside other words are not the word
    (["Summer sale"], []),
])
def test_banned_words_in_the_image(scorer: OcrScorer, make_banner: Banner, rendered: list[str],
                                   found: list[str]) -> None:
    values = one(scorer, make_banner(*rendered), banned_terms=BANNED)
    assert values["banned_found"] == found
    assert values["banned_words"] == len(found)


# -- garbled text ----------------------------------------------------------------------------------------------------


def _warp(image: Image.Image, amplitude: int, period: int = 24) -> Image.Image:
    """A sine shear along both axes: letters bent out of shape, as diffusion models draw them."""
    pixels = np.asarray(image)
    rows = np.stack([np.roll(row, int(amplitude * np.sin(2 * np.pi * y / period)), axis=0)
                     for y, row in enumerate(pixels)])
    cols = np.stack([np.roll(rows[:, x], int(amplitude * np.sin(2 * np.pi * x / period + 1)), axis=0)
                     for x in range(rows.shape[1])], axis=1)
    return Image.fromarray(cols)


def _pseudo_glyphs(seed: int) -> Image.Image:
    """Three lines of letter-sized clusters of random strokes: text-like, but no letters."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (512, 512), (245, 240, 230))
    draw = ImageDraw.Draw(image)
    for line in range(3):
        x, y = 60.0, 80 + line * 120
        for _ in range(8):
            width = 40 * rng.uniform(0.5, 0.9)
            for _ in range(rng.integers(2, 5)):
                points = [(x + rng.uniform(0, width), y + rng.uniform(0, 40)) for _ in range(rng.integers(2, 4))]
                draw.line(points, fill=(30, 30, 30), width=5, joint="curve")
            x += width + 6 + (16 if rng.random() < 0.2 else 0)
    return image


@pytest.mark.parametrize("lines", [
    ("FRESH COFFEE", "Open every day", "Bakery & Cafe"), ("Welcome to the", "summer festival"), ("SUMMER SALE",),
])
def test_clean_words_are_not_garbled(scorer: OcrScorer, make_banner: Banner, lines: tuple[str, ...]) -> None:
    assert one(scorer, make_banner(*lines))["garbled"] < 0.1


@pytest.mark.parametrize("lines", [
    ("Xqzkt Vbnmw Rtyp", "Jhgf Wqrtz Kplm"), ("Brtkl Zxvmq", "Pfnrt Gwhkz"), ("COFEFE SHOOP", "Bakkery Opn"),
])
def test_letter_soup_and_misspellings_are_garbled(scorer: OcrScorer, make_banner: Banner,
                                                  lines: tuple[str, ...]) -> None:
    assert one(scorer, make_banner(*lines))["garbled"] > 0.8


@pytest.mark.parametrize("amplitude", [4, 6, 8])
def test_distorted_letters_are_garbled(scorer: OcrScorer, make_banner: Banner, amplitude: int) -> None:
    banner = make_banner("FRESH COFFEE", "Open every day")
    assert one(scorer, _warp(banner, 1))["garbled"] < 0.1
    assert one(scorer, _warp(banner, amplitude))["garbled"] > 0.5


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pseudo_glyph_strokes_are_garbled(scorer: OcrScorer, seed: int) -> None:
    assert one(scorer, _pseudo_glyphs(seed))["garbled"] > 0.5


def test_words_the_request_asked_for_are_not_garbled(scorer: OcrScorer, make_banner: Banner) -> None:
    banner = make_banner("ZORBLAX QUIVVEN")
    assert one(scorer, banner)["garbled"] > 0.3  # unknown, but pronounceable
    assert one(scorer, banner, prompt='a shop sign saying "Zorblax Quivven"')["garbled"] == 0.0
    assert one(scorer, banner, expected=("Zorblax Quivven",))["garbled"] == 0.0


# -- decoding --------------------------------------------------------------------------------------------------------


def _columns(*steps: tuple[int, float, float]) -> np.ndarray:
    """CTC output for one line: per column (class, its probability, the space class's probability)."""
    characters = ["blank", "A", "B", "夏", "季", " "]
    preds = np.zeros((1, len(steps), len(characters)), dtype=np.float32)
    for t, (cls, p, space) in enumerate(steps):
        preds[0, t, cls] = p
        preds[0, t, 5] = max(preds[0, t, 5], space)
        preds[0, t, 0] += max(0.0, 1 - p - space) if cls != 0 else 0
    return preds


def test_decoder_marks_word_gaps_from_the_space_class() -> None:
    decode = SpacedCTCDecode(["blank", "A", "B", "夏", "季", " "])
    gap = _columns((1, 0.9, 0), (1, 0.9, 0), (0, 0.8, 0.2), (2, 0.7, 0))
    assert decode(gap) == [(f"A{INFERRED_SPACE}B", pytest.approx(0.8))]
    faint = _columns((1, 0.9, 0), (0, 0.99, 0.005), (2, 0.9, 0))
    assert decode(faint) == [("AB", pytest.approx(0.9))]
    repeated = _columns((1, 0.9, 0), (0, 0.9, 0.05), (1, 0.9, 0))  # "AA" needs a blank between: CTC
    assert decode(repeated)[0][0] == f"A{INFERRED_SPACE}A"
    cjk = _columns((3, 0.9, 0), (0, 0.5, 0.5), (4, 0.9, 0))
    assert decode(cjk)[0][0] == "夏季"  # no spaces between CJK characters
    argmax_space = _columns((1, 0.9, 0), (5, 0.0, 0.9), (2, 0.9, 0))
    assert decode(argmax_space)[0][0] == "A B"
    assert decode(_columns((0, 0.9, 0), (0, 0.9, 0))) == [("", 0.0)]
