"""The perceptual scorer ranks blur, dead frames, flat fields, noise and JPEG blocking as the formulas in
``quality.perceptual`` say."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageFilter
from skimage.restoration import estimate_sigma

from quality.base import EMPTY_CONTEXT, Scorer, score_images
from quality.perceptual import BLOCK_WINDOW, MAX_SIDE, PerceptualScorer, blockiness, noise_sigma, quality_score

UNIT_KEYS = ("quality", "sharpness", "exposure", "contrast", "clipped_dark", "clipped_bright")
ALL_KEYS = {*UNIT_KEYS, "laplacian_var", "colorfulness", "noise_sigma", "blockiness"}
# Photographs bundled inside the scikit-image wheel (read from its folder, so nothing can be downloaded).
PHOTOS = ("astronaut", "coffee", "chelsea", "camera")

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


@pytest.fixture
def load_photo() -> ImageFactory:
    """Factory: one of scikit-image's bundled sample photographs, as RGB, optionally as luminance only."""

    def load(name: str, mode: str = "RGB") -> Image.Image:
        with Image.open(Path(skimage.data.__file__).parent / f"{name}.png") as image:
            return image.convert(mode)

    return load


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """``image`` after a JPEG encode and decode at ``quality`` (Pillow's libjpeg scale, 4:2:0 chroma)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert(image.mode)


def add_noise(image: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    """``image`` plus white Gaussian noise of ``sigma`` 8-bit levels in every channel, rounded and clipped."""
    pixels = np.asarray(image, dtype=np.float64)
    noisy = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape)
    return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8), mode=image.mode)


def score_one(scorer: PerceptualScorer, image: Image.Image) -> dict[str, float]:
    (values,) = scorer.score([image], EMPTY_CONTEXT)
    return values  # type: ignore[return-value]


def test_is_a_scorer(scorer: PerceptualScorer) -> None:
    assert isinstance(scorer, Scorer)
    assert (scorer.name, scorer.version) == ("perceptual", "2")
    assert set(scorer.fields) == ALL_KEYS and set(scorer.fields.values()) == {"float"}


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
    assert values["noise_sigma"] >= 0.0 and values["blockiness"] > 0.0


def test_batch_returns_one_dict_per_image_in_order(
    scorer: PerceptualScorer, make_flat: ImageFactory, make_noise: ImageFactory, make_checkerboard: ImageFactory
) -> None:
    images = [make_flat(0), make_noise(), make_checkerboard()]
    batch = scorer.score(images, EMPTY_CONTEXT)
    assert len(batch) == 3
    assert batch == [score_one(scorer, image) for image in images]
    assert batch[0]["exposure"] < batch[2]["exposure"]  # the black frame stayed first
    assert scorer.score([], EMPTY_CONTEXT) == []


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
    big_values, small_values = score_one(scorer, big), score_one(scorer, small)
    del big_values["blockiness"], small_values["blockiness"]  # read at full resolution (see the blockiness tests)
    assert big_values == pytest.approx(small_values)
    unscaled = score_one(scorer, make_noise(size=(MAX_SIDE, MAX_SIDE // 2)))
    assert big_values["laplacian_var"] != pytest.approx(unscaled["laplacian_var"])


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (5, 2)])
def test_tiny_images_have_no_laplacian_but_still_score(
    scorer: PerceptualScorer, make_flat: ImageFactory, size: tuple[int, int]
) -> None:
    values = score_one(scorer, make_flat(90, size=size))
    assert values["laplacian_var"] == 0.0 and values["sharpness"] == 0.0
    assert values["exposure"] == pytest.approx(90 / 255)


def test_empty_image_is_refused(scorer: PerceptualScorer) -> None:
    with pytest.raises(ValueError, match="non-empty but is 0x4"):
        scorer.score([Image.new("RGB", (0, 4))], EMPTY_CONTEXT)


# --- noise_sigma: Donoho & Johnstone's wavelet MAD estimate, in 8-bit levels ---------------------------------------


@pytest.mark.parametrize("sigma", [2.0, 5.0, 10.0, 20.0])
def test_noise_sigma_recovers_the_noise_added_to_a_flat_field(scorer: PerceptualScorer, sigma: float) -> None:
    noisy = add_noise(Image.new("L", (256, 256), 128), sigma)
    assert score_one(scorer, noisy)["noise_sigma"] == pytest.approx(sigma, rel=0.1)


def test_noise_added_to_each_rgb_channel_shows_at_the_luma_weights_norm(scorer: PerceptualScorer) -> None:
    noisy = add_noise(Image.new("RGB", (256, 256), (128, 128, 128)), 15.0)
    expected = 15.0 * math.hypot(0.299, 0.587, 0.114)  # independent channels, BT.601 luma weights
    assert score_one(scorer, noisy)["noise_sigma"] == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("name", PHOTOS)
def test_noise_sigma_rises_with_the_noise_added_to_a_photograph(
    scorer: PerceptualScorer, load_photo: ImageFactory, name: str
) -> None:
    photo = load_photo(name, "L")
    values = [score_one(scorer, add_noise(photo, s) if s else photo)["noise_sigma"] for s in (0, 3, 8, 16, 32)]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert values[0] < 3.0  # a clean photograph: fine texture only


@pytest.mark.parametrize("name", PHOTOS)
def test_noise_sigma_is_scikit_images_estimate_on_the_luminance(load_photo: ImageFactory, name: str) -> None:
    # With a little unrounded noise no region is flat; on flat regions scikit-image keeps ~1e-14 rounding residue.
    luma = np.asarray(load_photo(name, "L"), dtype=np.float64)
    luma += np.random.default_rng(1).normal(0.0, 0.5, luma.shape)
    assert noise_sigma(luma) == pytest.approx(estimate_sigma(luma), rel=1e-9)


def test_rounding_residue_of_flat_regions_is_not_counted_as_signal(load_photo: ImageFactory) -> None:
    # Half flat, half photograph: the flat half's wavelet residue (~1e-14) must not drag the median towards 0.
    photo = np.asarray(add_noise(load_photo("camera", "L"), 4.0), dtype=np.float64)
    half_flat = photo.copy()
    half_flat[:, :256] = 100.0
    assert noise_sigma(half_flat) == pytest.approx(noise_sigma(photo[:, 256:]), rel=0.05)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (7, 7), (64, 48)])
def test_flat_images_have_no_noise(scorer: PerceptualScorer, make_flat: ImageFactory, size: tuple[int, int]) -> None:
    assert score_one(scorer, make_flat(77, size=size))["noise_sigma"] == 0.0


def test_blur_lowers_noise_sigma(scorer: PerceptualScorer, load_photo: ImageFactory) -> None:
    noisy = add_noise(load_photo("camera", "L"), 10.0)
    assert score_one(scorer, noisy.filter(ImageFilter.GaussianBlur(1.5)))["noise_sigma"] < 0.5 * score_one(
        scorer, noisy
    )["noise_sigma"]


# --- blockiness: boundary-to-interior step ratio on the 8x8 JPEG grid (Wang, Sheikh & Bovik 2002) ----------------


@pytest.mark.parametrize("name", PHOTOS)
def test_unblocked_photographs_read_about_one(scorer: PerceptualScorer, load_photo: ImageFactory, name: str) -> None:
    assert score_one(scorer, load_photo(name))["blockiness"] == pytest.approx(1.0, abs=0.06)


@pytest.mark.parametrize("name", PHOTOS)
def test_jpeg_quality_10_is_clearly_blocky(scorer: PerceptualScorer, load_photo: ImageFactory, name: str) -> None:
    photo = load_photo(name)
    original, compressed = score_one(scorer, photo)["blockiness"], score_one(scorer, jpeg(photo, 10))["blockiness"]
    assert compressed > 1.8 and compressed > original + 0.8


@pytest.mark.parametrize("name", PHOTOS)
def test_blockiness_rises_as_jpeg_quality_falls(scorer: PerceptualScorer, load_photo: ImageFactory, name: str) -> None:
    photo = load_photo(name)
    values = [score_one(scorer, jpeg(photo, q))["blockiness"] for q in (90, 75, 50, 30, 10)]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_blur_and_noise_are_not_blocking(scorer: PerceptualScorer, load_photo: ImageFactory) -> None:
    photo = load_photo("coffee")
    assert score_one(scorer, photo.filter(ImageFilter.GaussianBlur(2)))["blockiness"] == pytest.approx(1.0, abs=0.06)
    assert score_one(scorer, add_noise(photo, 20.0))["blockiness"] == pytest.approx(1.0, abs=0.06)


def test_blockiness_is_the_documented_ratio() -> None:
    # Steps of 12 levels across every 8-pixel boundary and of 2 levels inside the blocks, in both directions.
    ramp = np.cumsum(np.where(np.arange(64) % 8 == 0, 12.0, 2.0))  # ramp[8k] - ramp[8k - 1] = 12
    luma = np.add.outer(ramp, ramp)
    assert blockiness(luma) == pytest.approx((12.0 + 1.0) / (2.0 + 1.0))


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (5, 3), (64, 48)])
def test_flat_and_gridless_images_read_one(
    scorer: PerceptualScorer, make_flat: ImageFactory, size: tuple[int, int]
) -> None:
    assert score_one(scorer, make_flat(200, size=size))["blockiness"] == 1.0


def test_tiny_images_with_content_still_score(scorer: PerceptualScorer, make_noise: ImageFactory) -> None:
    for size in [(1, 1), (2, 2), (7, 7), (9, 2)]:
        values = score_one(scorer, make_noise(size=size))
        assert all(math.isfinite(v) for v in values.values()), (size, values)
        assert values["noise_sigma"] >= 0.0 and values["blockiness"] > 0.0


def test_blocks_of_flat_colour_read_far_above_one(scorer: PerceptualScorer, make_checkerboard: ImageFactory) -> None:
    # A checkerboard of 8x8 squares on the JPEG grid is the extreme of blocking: every step lies on a boundary.
    assert score_one(scorer, make_checkerboard(square=8))["blockiness"] == pytest.approx(176.0)
    assert score_one(scorer, make_checkerboard(square=7))["blockiness"] < 10.0


def test_blockiness_reads_the_grid_of_a_large_image_at_full_resolution(
    scorer: PerceptualScorer, load_photo: ImageFactory
) -> None:
    # Larger than both MAX_SIDE and BLOCK_WINDOW and not a multiple of 8: the other measures see a downscaled copy,
    # on which the grid would be gone; blockiness reads a grid-aligned window of the original.
    big = load_photo("astronaut").resize((BLOCK_WINDOW + 76, BLOCK_WINDOW + 76), Image.Resampling.LANCZOS)
    assert score_one(scorer, big)["blockiness"] == pytest.approx(1.0, abs=0.06)
    assert score_one(scorer, jpeg(big, 10))["blockiness"] > 1.8
    downscaled = jpeg(big, 10).resize((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
    assert score_one(scorer, downscaled)["blockiness"] < 1.2


# --- through the runner -------------------------------------------------------------------------------------------


def test_answers_pass_the_runners_checks(
    scorer: PerceptualScorer, load_photo: ImageFactory, make_flat: ImageFactory
) -> None:
    images = [load_photo("chelsea"), jpeg(load_photo("coffee"), 10), make_flat(0, size=(1, 1)), make_flat(128)]
    cards = score_images([scorer], images)
    assert [card.complete for card in cards] == [True] * 4
    scores = [card.as_dict()["scores"]["perceptual"] for card in cards]
    assert all(set(values) == ALL_KEYS for values in scores)
    assert scores[1]["blockiness"] > scores[0]["blockiness"]


@pytest.mark.parametrize("how", ["jpeg", "noise"])
def test_quality_still_depends_only_on_the_version_1_measures(
    scorer: PerceptualScorer, load_photo: ImageFactory, how: str
) -> None:
    photo = load_photo("chelsea")
    image = jpeg(photo, 10) if how == "jpeg" else add_noise(photo, 25.0)
    values = score_one(scorer, image)
    clipped = values["clipped_dark"] + values["clipped_bright"]
    assert values["quality"] == quality_score(values["sharpness"], values["exposure"], clipped, values["contrast"])
