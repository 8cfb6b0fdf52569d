"""The brisque scorer reproduces the ``brisque`` package's score with its shipped LIVE model, ranks distortions the
way BRISQUE does, and refuses to measure what it cannot."""

from __future__ import annotations

import io
import math
import pickle
import shutil
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageFilter

from quality import brisque as brisque_module
from quality.base import EMPTY_CONTEXT, Scorer, score_images
from quality.brisque import (
    BRISQUE_WORST,
    MAX_SIDE,
    MIN_SIDE,
    BrisqueScorer,
    aggd_fit,
    brisque_features,
    brisque_quality,
    bundled_model_dir,
    greyscale,
    load_bundled_model,
    mscn,
)

# Photographs bundled inside the scikit-image wheel (read from its folder, so nothing can be downloaded).
PHOTOS = ("astronaut", "coffee", "chelsea", "camera")
KEYS = {"brisque", "brisque_quality", "brisque_measured"}

ImageFactory = Callable[..., Image.Image]


@pytest.fixture(scope="module")
def scorer() -> BrisqueScorer:
    return BrisqueScorer()


@pytest.fixture
def load_photo() -> ImageFactory:
    """Factory: one of scikit-image's bundled sample photographs."""

    def load(name: str, mode: str = "RGB") -> Image.Image:
        with Image.open(Path(skimage.data.__file__).parent / f"{name}.png") as image:
            return image.convert(mode)

    return load


def jpeg(image: Image.Image, quality: int) -> Image.Image:
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


def blur(image: Image.Image, radius: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def score_one(scorer: BrisqueScorer, image: Image.Image) -> dict[str, Any]:
    (values,) = scorer.score([image], EMPTY_CONTEXT)
    return values


def brisque_of(scorer: BrisqueScorer, image: Image.Image) -> float:
    values = score_one(scorer, image)
    assert values["brisque_measured"] is True
    return float(values["brisque"])


def test_is_a_scorer_pinned_to_the_live_model(scorer: BrisqueScorer) -> None:
    assert isinstance(scorer, Scorer)
    assert scorer.name == "brisque"
    assert scorer.fields == {"brisque": "float", "brisque_quality": "float", "brisque_measured": "bool"}
    assert scorer.version == "1:brisque-0.2.0:19526fb799c4"


# --- the package's own score ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package_score() -> Callable[[Image.Image], float]:
    """``brisque.BRISQUE(url=False).score`` on the image's RGB pixels: the package's features, model and prediction.

    brisque 0.2.0 calls ``float()`` on 1-element arrays when it scales its features, which numpy >= 2.4 refuses; the
    subclass flattens them first and changes nothing else.
    """
    from brisque import BRISQUE

    class Reference(BRISQUE):  # type: ignore[misc]
        def scale_features(self, features: Any) -> Any:
            return super().scale_features([float(np.asarray(f).reshape(-1)[0]) for f in features])

    reference = Reference(url=False)
    return lambda image: float(reference.score(np.asarray(image.convert("RGB"))))


# Photographs and distortions without flat 7x7 areas: where the whole window is one level, the package sorts MSCN
# coefficients of +-1e-16 by their rounding sign (see quality.brisque.mscn), which no other implementation reproduces.
REFERENCE_CASES = [
    ("coffee", "original"),
    ("chelsea", "original"),
    ("camera", "original"),
    ("astronaut", "blur 1"),
    ("coffee", "blur 2"),
    ("camera", "noise 10"),
    ("chelsea", "noise 25"),
]


def distort(image: Image.Image, how: str) -> Image.Image:
    kind, _, amount = how.partition(" ")
    if kind == "blur":
        return blur(image, float(amount))
    if kind == "noise":
        return add_noise(image, float(amount))
    if kind == "jpeg":
        return jpeg(image, int(amount))
    assert kind == "original"
    return image


@pytest.mark.parametrize(("name", "how"), REFERENCE_CASES)
def test_matches_the_package_score(
    scorer: BrisqueScorer, package_score: Callable[[Image.Image], float], load_photo: ImageFactory, name: str,
    how: str,
) -> None:
    image = distort(load_photo(name), how)
    assert max(image.size) <= MAX_SIDE  # scored as is, like the package
    assert brisque_of(scorer, image) == pytest.approx(package_score(image), abs=1e-6)


def test_prediction_is_libsvms_and_repeats_to_the_bit(scorer: BrisqueScorer, load_photo: ImageFactory) -> None:
    from libsvm import svm as libsvm
    from libsvm import svmutil

    reference = svmutil.svm_load_model(str(bundled_model_dir() / "svm.txt"))
    model = scorer.model
    vectors = [brisque_features(greyscale(distort(load_photo(name), how))) for name, how in REFERENCE_CASES[:4]]
    rng = np.random.default_rng(8)
    vectors += [model.feature_min + rng.random(36) * (model.feature_max - model.feature_min) for _ in range(4)]
    for features in vectors:
        assert features is not None
        scaled = -1.0 + 2.0 * (features - model.feature_min) / (model.feature_max - model.feature_min)
        nodes, _ = libsvm.gen_svm_nodearray([float(v) for v in scaled])
        expected = libsvm.libsvm.svm_predict(reference, nodes)
        assert model.predict(features) == pytest.approx(expected, abs=1e-9)
        assert len({model.predict(features) for _ in range(20)}) == 1


def test_matches_the_package_on_greyscale_and_rgba(
    scorer: BrisqueScorer, package_score: Callable[[Image.Image], float], load_photo: ImageFactory
) -> None:
    grey = load_photo("coffee", "L")
    rgba = load_photo("chelsea", "RGBA")
    assert brisque_of(scorer, grey) == pytest.approx(package_score(grey), abs=1e-6)
    assert brisque_of(scorer, rgba) == pytest.approx(package_score(rgba), abs=1e-6)


# --- the distribution fit ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sampler", "alpha"), [("normal", 2.0), ("laplace", 1.0)])
def test_aggd_fit_recovers_the_shape_of_symmetric_samples(sampler: str, alpha: float) -> None:
    samples = getattr(np.random.default_rng(5), sampler)(0.0, 1.0, 400_000)
    fit = aggd_fit(samples)
    assert fit is not None
    shape, mean, var_l, var_r = fit
    assert shape == pytest.approx(alpha, rel=0.03)
    assert mean == pytest.approx(0.0, abs=0.02)
    assert var_l == pytest.approx(var_r, rel=0.02) and var_l == pytest.approx(samples.var(), rel=0.02)


def test_aggd_fit_sees_asymmetry() -> None:
    rng = np.random.default_rng(6)
    samples = np.concatenate([-np.abs(rng.normal(0.0, 1.0, 200_000)), np.abs(rng.normal(0.0, 3.0, 200_000))])
    fit = aggd_fit(samples)
    assert fit is not None
    _, mean, var_l, var_r = fit
    assert var_l == pytest.approx(1.0, rel=0.02) and var_r == pytest.approx(9.0, rel=0.02)
    assert mean > 0.0


def test_aggd_shape_is_clamped_to_the_search_range() -> None:
    fit = aggd_fit(np.array([-1.0, 1.0] * 50))  # two points: flatter than any generalised Gaussian
    assert fit is not None and fit[0] == 10.0


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0], [-1.0, -2.0], [0.0, 0.0, 0.0]])
def test_aggd_fit_of_a_one_sided_or_empty_distribution_is_none(values: list[float]) -> None:
    assert aggd_fit(np.array(values)) is None


# --- BRISQUE's ranking of distortions ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PHOTOS)
def test_clean_beats_blurred_beats_heavy_jpeg_and_noise(
    scorer: BrisqueScorer, load_photo: ImageFactory, name: str
) -> None:
    photo = load_photo(name)
    clean = brisque_of(scorer, photo)
    blurred = brisque_of(scorer, blur(photo, 1))
    assert clean < 15.0  # a pristine photograph: near 0 on the DMOS scale
    assert clean + 10.0 < blurred
    assert blurred + 5.0 < brisque_of(scorer, jpeg(photo, 10))
    assert blurred + 5.0 < brisque_of(scorer, add_noise(photo, 30))


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize(
    "ladder",
    [("blur 1", "blur 2", "blur 4"), ("jpeg 50", "jpeg 30", "jpeg 10", "jpeg 5"), ("noise 10", "noise 25", "noise 50")],
    ids=["blur", "jpeg", "noise"],
)
def test_score_worsens_with_the_strength_of_a_distortion(
    scorer: BrisqueScorer, load_photo: ImageFactory, name: str, ladder: tuple[str, ...]
) -> None:
    photo = load_photo(name)
    scores = [brisque_of(scorer, distort(photo, how)) for how in ladder]
    assert scores == sorted(scores) and len(set(scores)) == len(scores), scores
    qualities = [brisque_quality(s) for s in scores]
    assert qualities == sorted(qualities, reverse=True)


@pytest.mark.parametrize(
    ("score", "expected"),
    [(-12.0, 1.0), (0.0, 1.0), (25.0, 0.75), (60.0, 0.4), (100.0, 0.0), (140.0, 0.0)],
)
def test_quality_is_the_clipped_linear_reading(score: float, expected: float) -> None:
    assert brisque_quality(score) == pytest.approx(expected)


def test_quality_field_is_the_reading_of_the_score(scorer: BrisqueScorer, load_photo: ImageFactory) -> None:
    values = score_one(scorer, blur(load_photo("chelsea"), 1.5))
    assert 0.0 < values["brisque_quality"] < 1.0
    assert values["brisque_quality"] == pytest.approx(1.0 - values["brisque"] / 100.0)


# --- what is not measured ------------------------------------------------------------------------------------------


UNMEASURED = {"brisque": BRISQUE_WORST, "brisque_quality": 0.0, "brisque_measured": False}


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (7, 7), (MIN_SIDE - 1, 300), (300, MIN_SIDE - 1)])
def test_images_under_the_minimum_side_are_not_measured(
    scorer: BrisqueScorer, load_photo: ImageFactory, size: tuple[int, int]
) -> None:
    crop = load_photo("astronaut").crop((100, 100, 100 + size[0], 100 + size[1]))
    assert score_one(scorer, crop) == UNMEASURED


def test_an_image_at_the_minimum_side_is_measured(scorer: BrisqueScorer, load_photo: ImageFactory) -> None:
    crop = load_photo("astronaut").crop((200, 150, 200 + MIN_SIDE, 150 + MIN_SIDE))
    values = score_one(scorer, crop)
    assert values["brisque_measured"] is True and math.isfinite(values["brisque"])


@pytest.mark.parametrize("color", [(0, 0, 0), (128, 128, 128), (255, 255, 255), (200, 20, 20)])
def test_flat_images_are_not_measured(scorer: BrisqueScorer, color: tuple[int, int, int]) -> None:
    assert score_one(scorer, Image.new("RGB", (96, 64), color)) == UNMEASURED


def test_a_flat_area_has_exactly_zero_mscn_inside() -> None:
    grey = np.full((40, 40), 0.3137)  # a level whose filtered mean does not round back to itself
    grey[:, 20:] = np.random.default_rng(0).random((40, 20))
    coefficients = mscn(grey)
    assert np.all(coefficients[3:-3, 3:17] == 0.0)  # every 7x7 window there is flat
    assert np.all(coefficients[:3, :17] != 0.0)  # zero padding at the border is not flat
    assert np.count_nonzero(coefficients[:, 20:]) > 0.99 * 40 * 20


def test_synthetic_patterns_score_finite(scorer: BrisqueScorer) -> None:
    cells = (np.indices((128, 128)) // 8).sum(axis=0) % 2
    board = Image.fromarray(np.where(cells == 1, 215, 40).astype(np.uint8), mode="L")
    ramp = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (64, 1)), mode="L")
    noise = Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 96, 3), dtype=np.uint8), mode="RGB")
    for image in (board, ramp, noise):
        values = score_one(scorer, image)
        assert values["brisque_measured"] is True and math.isfinite(values["brisque"])
        assert 0.0 <= values["brisque_quality"] <= 1.0
    assert score_one(scorer, noise)["brisque"] > 60.0  # white noise is nothing like a natural image


# --- modes, sizes, batches -----------------------------------------------------------------------------------------


def test_grey_content_scores_the_same_in_l_and_rgb(scorer: BrisqueScorer, load_photo: ImageFactory) -> None:
    grey = load_photo("camera", "L")
    assert score_one(scorer, grey) == pytest.approx(score_one(scorer, grey.convert("RGB")), abs=1e-9)


def test_alpha_is_dropped(scorer: BrisqueScorer, load_photo: ImageFactory) -> None:
    rgb = load_photo("coffee")
    rgba = rgb.copy()
    rgba.putalpha(0)
    assert score_one(scorer, rgba) == score_one(scorer, rgb)


def test_palette_images_score_as_their_colours(scorer: BrisqueScorer, load_photo: ImageFactory) -> None:
    palette = load_photo("chelsea").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    assert palette.mode == "P"
    assert score_one(scorer, palette) == score_one(scorer, palette.convert("RGB"))


def test_large_images_are_measured_at_the_max_side(scorer: BrisqueScorer, load_photo: ImageFactory) -> None:
    big = load_photo("coffee").resize((2 * MAX_SIDE, 2 * MAX_SIDE * 2 // 3), Image.Resampling.LANCZOS)
    small = big.resize((MAX_SIDE, MAX_SIDE * 2 // 3), Image.Resampling.BOX)
    assert greyscale(big).shape == (MAX_SIDE * 2 // 3, MAX_SIDE)
    assert score_one(scorer, big) == pytest.approx(score_one(scorer, small), abs=1e-9)


def test_batch_returns_one_answer_per_image_in_order(scorer: BrisqueScorer, load_photo: ImageFactory) -> None:
    photo = load_photo("chelsea")
    images = [jpeg(photo, 5), Image.new("RGB", (4, 4)), photo]
    batch = scorer.score(images, EMPTY_CONTEXT)
    assert batch == [score_one(scorer, image) for image in images]
    assert batch[0]["brisque"] > batch[2]["brisque"] and batch[1] == UNMEASURED
    assert scorer.score([], EMPTY_CONTEXT) == []


def test_empty_image_is_refused(scorer: BrisqueScorer) -> None:
    with pytest.raises(ValueError, match="non-empty but is 4x0"):
        scorer.score([Image.new("RGB", (4, 0))], EMPTY_CONTEXT)


def test_answers_pass_the_runners_checks(scorer: BrisqueScorer, load_photo: ImageFactory) -> None:
    images = [load_photo("astronaut"), add_noise(load_photo("coffee"), 30), Image.new("RGB", (1, 1), (9, 9, 9))]
    cards = score_images([scorer], images)
    assert [card.complete for card in cards] == [True, True, True]
    scores = [card.as_dict()["scores"]["brisque"] for card in cards]
    assert all(set(values) == KEYS for values in scores)
    assert [type(values["brisque"]) for values in scores] == [float] * 3
    assert scores[0]["brisque_quality"] > scores[1]["brisque_quality"] > scores[2]["brisque_quality"] == 0.0


# --- the model files -----------------------------------------------------------------------------------------------


@pytest.fixture
def model_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the package's model folder that ``load_bundled_model`` reads instead of the installed one."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("svm.txt", "normalize.pickle"):
        shutil.copyfile(bundled_model_dir() / name, folder / name)
    monkeypatch.setattr(brisque_module, "bundled_model_dir", lambda: folder)
    return folder


def test_an_untouched_copy_loads(model_copy: Path) -> None:
    model = load_bundled_model()
    assert model.feature_min.shape == model.feature_max.shape == (36,)
    assert model.version.endswith(":19526fb799c4")


def test_a_changed_model_file_is_refused(model_copy: Path) -> None:
    svm = model_copy / "svm.txt"
    svm.write_text(svm.read_text().replace("gamma 0.05", "gamma 0.06"))
    with pytest.raises(ValueError, match="svm.txt has sha256 .* but has to be 19526fb7"):
        load_bundled_model()


def test_a_missing_model_file_is_refused(model_copy: Path) -> None:
    (model_copy / "normalize.pickle").unlink()
    with pytest.raises(FileNotFoundError, match="normalize.pickle is missing"):
        BrisqueScorer()


def test_the_ranges_file_may_hold_plain_data_only() -> None:
    ranges = brisque_module._RangesUnpickler(io.BytesIO(pickle.dumps({"min_": [0.5], "max_": [1.5]}))).load()
    assert ranges == {"min_": [0.5], "max_": [1.5]}
    with pytest.raises(pickle.UnpicklingError, match="may not reference collections.OrderedDict"):
        brisque_module._RangesUnpickler(io.BytesIO(pickle.dumps(OrderedDict(min_=[0.5])))).load()


def test_scoring_never_imports_the_package_or_an_http_client() -> None:
    # The package's url=True mode fetches images with requests; the scorer reads the model files without importing it.
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "from quality.base import EMPTY_CONTEXT\n"
        "from quality.brisque import BrisqueScorer\n"
        "BrisqueScorer().score([Image.effect_noise((64, 64), 40).convert('RGB')], EMPTY_CONTEXT)\n"
        "print(sorted(m for m in ('brisque', 'requests', 'urllib3', 'httpx') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
