"""The shared target ops reproduce Pillow exactly in the forward pass and pass gradients straight through."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from adversarial.base import FAIL, PASS, to_images, to_tensor
from adversarial.target_ops import (
    FrozenTarget,
    check_threshold,
    clamp,
    margin_logits,
    pil_luma,
    pil_nearest,
    pil_resize,
    quantise,
    resample_matrix,
    score_value,
    vertical_first,
)

FILTERS = {"box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def _noise(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _levels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.mark.parametrize("kind", FILTERS)
def test_resize_is_pillow_bit_for_bit(kind: str) -> None:
    """Random sizes up and down, both pass orders of Pillow 13 among them: not one level differs."""
    rng = np.random.default_rng(1)
    cases = [tuple(int(v) for v in rng.integers(1, (160, 160, 200, 200))) for _ in range(40)]
    cases += [(300, 400, 256, 256), (256, 256, 224, 224), (80, 40, 10, 39), (40, 80, 39, 10)]
    for height, width, out_height, out_width in cases:
        image = _noise(rng, height, width)
        size = (out_width, out_height)
        got = pil_resize(quantise(to_tensor([image])), size, kind)  # type: ignore[arg-type]
        expected = _levels(image.resize(size, FILTERS[kind]))
        np.testing.assert_array_equal(got[0].permute(1, 2, 0).numpy(), expected, err_msg=f"{image.size} -> {size}")


def test_pass_order_follows_pillow() -> None:
    # The height shrinks by 70 pixels, the width by 1: Pillow 13 runs the vertical pass first (rounding differs).
    assert vertical_first((80, 80), (79, 10)) == (int(Image.__version__.split(".")[0]) >= 13)
    assert not vertical_first((80, 80), (10, 79))
    assert not vertical_first((80, 80), (90, 90))


def test_resample_rows_sum_to_one_in_fixed_point() -> None:
    matrix = resample_matrix(640, 256, "bilinear")
    assert matrix.shape == (256, 640)
    assert np.all(np.abs(matrix.sum(axis=1) - 2**22) <= matrix.shape[1])
    with pytest.raises(ValueError, match="`kind`"):
        resample_matrix(4, 2, "lanczos")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        resample_matrix(0, 2, "box")


def test_nearest_and_luma_are_pillow() -> None:
    rng = np.random.default_rng(2)
    for height, width, size in ((300, 451, (128, 85)), (90, 70, (33, 60)), (5, 7, (7, 5))):
        image = _noise(rng, height, width)
        levels = quantise(to_tensor([image]))
        np.testing.assert_array_equal(pil_nearest(levels, size)[0].permute(1, 2, 0).numpy(),
                                      _levels(image.resize(size, Image.Resampling.NEAREST)))
        np.testing.assert_array_equal(pil_luma(levels)[0].numpy(), _levels(image.convert("L")))


def test_quantise_stores_as_to_images_does_and_passes_gradients_straight_through() -> None:
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0.0, 1.0  # on the bounds, where torch's own clamp has no gradient
    x[1, 1, 1, 1] = 0.5 / 255.0  # a tie: round half to even, as to_images stores it
    x.requires_grad_()
    levels = quantise(x)
    stored = np.stack([np.asarray(image) for image in to_images(x.detach())]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(levels.detach().numpy(), stored)
    levels.sum().backward()
    assert x.grad is not None and torch.all(x.grad == 255.0)
    with pytest.raises(ValueError, match="NCHW"):
        quantise(torch.rand(3, 8, 8))


def test_clamp_keeps_the_gradient_on_its_bounds_only() -> None:
    x = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    y = clamp(x, 0.0, 1.0)
    y.sum().backward()
    assert y.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert x.grad is not None and x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_margin_logits_difference_is_the_margin_and_softmax_its_sigmoid() -> None:
    margin = torch.tensor([-3.0, 0.0, 0.25, 7.0])
    logits = margin_logits(margin)
    assert logits.shape == (4, 2)
    torch.testing.assert_close(logits[:, FAIL] - logits[:, PASS], margin)
    torch.testing.assert_close(logits.softmax(1)[:, FAIL], torch.sigmoid(margin))


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.1, 1.5, math.nan, True, "0.5", None])
def test_threshold_has_to_be_strictly_inside_the_unit_interval(bad: object) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        check_threshold("quality", bad)  # type: ignore[arg-type]
    assert check_threshold("quality", 0.15) == 0.15


def test_score_value_refuses_a_missing_or_non_numeric_answer() -> None:
    assert score_value({"nsfw": 0.25}, "nsfw", 0) == 0.25
    for values in ({}, {"nsfw": "high"}, {"nsfw": True}, {"nsfw": math.inf}):
        with pytest.raises(RuntimeError, match="image 3"):
            score_value(values, "nsfw", 3)


def test_frozen_target_refuses_training_mode() -> None:
    target = FrozenTarget()
    target.layer = torch.nn.BatchNorm2d(3)
    assert not target.training
    assert target.eval() is target and not target.layer.training
    with pytest.raises(ValueError, match="training mode"):
        target.train()
