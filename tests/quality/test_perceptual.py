"""The perceptual scorer ranks blur, dead frames and flat fields as the formulas in ``quality.perceptual`` say."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageFilter

from quality.base import Scorer
from quality.perceptual import MAX_SIDE, PerceptualScorer, quality_score

UNIT_KEYS = ("quality", "sharpness", "exposure", "contrast", "clipped_dark", "clipped_bright")
ALL_KEYS = {*UNIT_KEYS, "laplacian_var", "colorfulness"}

ImageFactory = Callable[..., Image.Image]


@pytest.fixture
def scorer() -> PerceptualScorer:
    return PerceptualScorer()


@pytest.fixture
def make_checkerboard() -> ImageFactory:
    """Factory: a grey checkerboard whose levels stay clear of clipping, so only sharpness differs under blur."""

    def make(size: int = 128, square: int = 8, low: int = 40, high: int = 215, mode: str = "RGB") -> Image.Image:
        cells = (np.indices((size, size)) // square).sum(axis=0) % 2
        return Image.fromarray(np.where(cells == 1, high, low).astype(np.uint8), mode="L").convert(mode)

    return make


@pytest.fixture
def make_flat() -> ImageFactory:
    """Factory: a flat image; an int ``color`` is a grey level (PIL would read it as a packed RGB value)."""

    def make(color: int | tuple[int, ...] = 128, size: tuple[int, int] = (64, 48)) -> Image.Image:
        return Image.new("RGB", size, (color, color, color) if isinstance(color, int) else color)

    return make


@pytest.fixture
def make_noise() -> ImageFactory:
    def make(seed: int = 0, size: tuple[int, int] = (96, 64)) -> Image.Image:
        pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        return Image.fromarray(pixels, mode="RGB")

    return make


def score_one(scorer: PerceptualScorer, image: Image.Image) -> dict[str, float]:
    (values,) = scorer.score([image])
    return values


def test_is_a_scorer(scorer: PerceptualScorer) -> None:
    assert isinstance(scorer, Scorer)
    assert (scorer.name, scorer.version) == ("perceptual", "1")


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_blur_lowers_sharpness_and_quality(
    scorer: PerceptualScorer, make_checkerboard: ImageFactory, radius: int
) -> None:
    sharp = make_checkerboard()
    sharp_v = score_one(scorer, sharp)
    blurred_v = score_one(scorer, sharp.filter(ImageFilter.GaussianBlur(radius)))
    assert sharp_v["laplacian_var"] > blurred_v["laplacian_var"]
    assert sharp_v["sharpness"] > blurred_v["sharpness"]
    assert sharp_v["quality"] > blurred_v["quality"]


def test_sharpness_falls_monotonically_with_blur(scorer: PerceptualScorer, make_checkerboard: ImageFactory) -> None:
    board = make_checkerboard()
    values = [score_one(scorer, board.filter(ImageFilter.GaussianBlur(r)))["sharpness"] for r in (0.5, 1, 2, 3, 5)]
    assert values == sorted(values, reverse=True)
    assert len(set(values)) == len(values)


def test_sharpness_is_the_documented_saturating_transform(
    scorer: PerceptualScorer, make_checkerboard: ImageFactory
) -> None:
    values = score_one(scorer, make_checkerboard().filter(ImageFilter.GaussianBlur(2)))
    v = values["laplacian_var"]
    assert values["sharpness"] == pytest.approx(v / (v + 100.0))


def test_all_black_is_dark_clipped_and_worthless(scorer: PerceptualScorer, make_flat: ImageFactory) -> None:
    values = score_one(scorer, make_flat(0))
    assert values["exposure"] == pytest.approx(0.0, abs=1e-9)
    assert values["clipped_dark"] == pytest.approx(1.0)
    assert values["clipped_bright"] == 0.0
    assert values["quality"] < 0.05


def test_all_white_is_bright_clipped(scorer: PerceptualScorer, make_flat: ImageFactory) -> None:
    values = score_one(scorer, make_flat((255, 255, 255)))
    assert values["exposure"] == pytest.approx(1.0)
    assert values["clipped_bright"] == pytest.approx(1.0)
    assert values["quality"] < 0.05


def test_mid_grey_flat_has_no_contrast(scorer: PerceptualScorer, make_flat: ImageFactory) -> None:
    values = score_one(scorer, make_flat(128))
    assert values["contrast"] == 0.0
    assert values["laplacian_var"] == 0.0
    assert values["exposure"] == pytest.approx(128 / 255)
    assert values["clipped_dark"] == values["clipped_bright"] == 0.0
    assert values["quality"] == 0.0


@pytest.mark.parametrize(
    ("level", "dark", "bright"),
    [(0, 1.0, 0.0), (2, 1.0, 0.0), (3, 0.0, 0.0), (252, 0.0, 0.0), (253, 0.0, 1.0), (255, 0.0, 1.0)],
)
def test_clipping_thresholds_are_inclusive(
    scorer: PerceptualScorer, make_flat: ImageFactory, level: int, dark: float, bright: float
) -> None:
    values = score_one(scorer, make_flat((level, level, level)))
    assert (values["clipped_dark"], values["clipped_bright"]) == (dark, bright)


def test_clipped_fraction_counts_pixels(scorer: PerceptualScorer) -> None:
    pixels = np.full((40, 40), 128, dtype=np.uint8)
    pixels[:10] = 0  # a quarter crushed
    pixels[10:12] = 255  # a twentieth blown
    values = score_one(scorer, Image.fromarray(pixels, mode="L"))
    assert values["clipped_dark"] == pytest.approx(0.25)
    assert values["clipped_bright"] == pytest.approx(0.05)


def test_horizontal_ramp_is_mid_exposed_with_known_contrast(scorer: PerceptualScorer) -> None:
    ramp = np.tile(np.arange(256, dtype=np.uint8), (32, 1))
    values = score_one(scorer, Image.fromarray(ramp, mode="L"))
    assert values["exposure"] == pytest.approx(0.5)
    assert values["contrast"] == pytest.approx(np.arange(256).std() / 255)
    assert values["laplacian_var"] == pytest.approx(0.0)  # a linear ramp has no second derivative


@pytest.mark.parametrize(
    ("color", "expected"),
    [
        ((128, 128, 128), 0.0),
        # rg = 255, yb = 127.5, no spread: M = 0.3 * hypot(255, 127.5) (Hasler & Süsstrunk 2003).
        ((255, 0, 0), 0.3 * math.hypot(255, 127.5)),
        ((0, 0, 255), 0.3 * 255),
    ],
)
def test_colorfulness_of_flat_colours(
    scorer: PerceptualScorer, make_flat: ImageFactory, color: tuple[int, int, int], expected: float
) -> None:
    assert score_one(scorer, make_flat(color))["colorfulness"] == pytest.approx(expected)


def test_colour_noise_is_more_colourful_than_a_grey_board(
    scorer: PerceptualScorer, make_noise: ImageFactory, make_checkerboard: ImageFactory
) -> None:
    assert score_one(scorer, make_checkerboard())["colorfulness"] == pytest.approx(0.0)
    assert score_one(scorer, make_noise())["colorfulness"] > 59  # "quite colourful" on the paper's scale


@pytest.mark.parametrize(
    ("sharpness", "exposure", "clipped", "contrast", "expected"),
    [
        (1.0, 0.5, 0.0, 0.2, 1.0),
        (0.5, 0.5, 0.0, 0.1, 0.5),
        (1.0, 0.0, 0.0, 0.2, 0.0),
        (1.0, 1.0, 0.0, 0.2, 0.0),
        (1.0, 0.25, 0.0, 0.2, 1 - 0.5**3),
        (1.0, 0.5, 0.4, 0.2, 0.6),
        (1.0, 0.5, 0.0, 0.05, 0.5),
        (1.0, 0.5, 0.0, 0.0, 0.0),
        (0.8, 0.75, 0.1, 0.05, 0.8 * (1 - 0.5**3) * 0.9 * 0.5),
    ],
)
def test_quality_formula(sharpness: float, exposure: float, clipped: float, contrast: float, expected: float) -> None:
    assert quality_score(sharpness, exposure, clipped, contrast) == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["noise", "board", "blurred", "black", "white", "grey", "red"])
def test_values_are_finite_and_in_range(
    scorer: PerceptualScorer,
    make_noise: ImageFactory,
    make_checkerboard: ImageFactory,
    make_flat: ImageFactory,
    kind: str,
) -> None:
    images = {
        "noise": make_noise,
        "board": make_checkerboard,
        "blurred": lambda: make_checkerboard().filter(ImageFilter.GaussianBlur(3)),
        "black": lambda: make_flat(0),
        "white": lambda: make_flat((255, 255, 255)),
        "grey": lambda: make_flat(128),
        "red": lambda: make_flat((200, 20, 20)),
    }
    values = score_one(scorer, images[kind]())
    assert set(values) == ALL_KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in values.values())
    assert all(0.0 <= values[k] <= 1.0 for k in UNIT_KEYS), values
    assert values["laplacian_var"] >= 0.0 and values["colorfulness"] >= 0.0


def test_batch_returns_one_dict_per_image_in_order(
    scorer: PerceptualScorer, make_flat: ImageFactory, make_noise: ImageFactory, make_checkerboard: ImageFactory
) -> None:
    images = [make_flat(0), make_noise(), make_checkerboard()]
    batch = scorer.score(images)
    assert len(batch) == 3
    assert batch == [score_one(scorer, image) for image in images]
    assert batch[0]["exposure"] < batch[2]["exposure"]  # the black frame stayed first
    assert scorer.score([]) == []


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I"])
def test_other_modes_score_like_their_rgb_content(
    scorer: PerceptualScorer, make_checkerboard: ImageFactory, mode: str
) -> None:
    rgb = make_checkerboard()
    other = rgb.convert(mode) if mode != "P" else rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert other.mode == mode
    assert score_one(scorer, other) == pytest.approx(score_one(scorer, rgb))


def test_transparent_rgba_is_scored_on_its_colour_channels(scorer: PerceptualScorer, make_noise: ImageFactory) -> None:
    rgb = make_noise()
    rgba = rgb.copy()
    rgba.putalpha(0)
    assert score_one(scorer, rgba) == pytest.approx(score_one(scorer, rgb))


def test_large_images_are_measured_at_the_max_side(scorer: PerceptualScorer, make_noise: ImageFactory) -> None:
    big = make_noise(size=(2 * MAX_SIDE, MAX_SIDE))
    small = big.resize((MAX_SIDE, MAX_SIDE // 2), resample=Image.Resampling.BOX)
    assert score_one(scorer, big) == pytest.approx(score_one(scorer, small))
    unscaled = score_one(scorer, make_noise(size=(MAX_SIDE, MAX_SIDE // 2)))
    assert score_one(scorer, big)["laplacian_var"] != pytest.approx(unscaled["laplacian_var"])


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (5, 2)])
def test_tiny_images_have_no_laplacian_but_still_score(
    scorer: PerceptualScorer, make_flat: ImageFactory, size: tuple[int, int]
) -> None:
    values = score_one(scorer, make_flat(90, size=size))
    assert values["laplacian_var"] == 0.0 and values["sharpness"] == 0.0
    assert values["exposure"] == pytest.approx(90 / 255)


def test_empty_image_is_refused(scorer: PerceptualScorer) -> None:
    with pytest.raises(ValueError, match="non-empty but is 0x4"):
        scorer.score([Image.new("RGB", (0, 4))])
