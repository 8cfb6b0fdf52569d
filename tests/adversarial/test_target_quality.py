"""The quality target computes ``quality.perceptual``'s ``quality`` in torch, and its margin has the gate's sign."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from adversarial.base import FAIL, PASS, GateTarget, to_tensor
from adversarial.target_quality import QualityTarget, perceptual_quality
from quality.perceptual import MAX_SIDE, measure

# The forward pass sees the very 8-bit luma production measures (Pillow's BOX downscale and "L" conversion are
# replayed bit for bit, the clipped shares are exact counts), so the only difference left is float64 summation
# order in the means and variances: measured at most 7.2e-14. 1e-9 leaves four orders of magnitude for other
# platforms and still flags nearly every real difference: one pixel of a 512x512 photograph one to three levels
# brighter moves quality by 1e-9 to 6e-6 on these images.
TOLERANCE = 1e-9


def _quality(image: Image.Image) -> float:
    value = measure(image)["quality"]
    assert isinstance(value, float)
    return value


def test_is_a_differentiable_gate_target(quality_target: QualityTarget) -> None:
    assert isinstance(quality_target, GateTarget)
    assert quality_target.name == "quality" and quality_target.differentiable
    assert quality_target.threshold == 0.15
    assert [p.numel() for p in quality_target.parameters()] == [0]  # only the device anchor


def test_matches_the_production_measure(sample_images: dict[str, Image.Image]) -> None:
    """At their own sizes: 1411x1411 and 600x400 take the BOX downscale to MAX_SIDE, the others do not."""
    assert max(sample_images["retina"].size) > MAX_SIDE and max(sample_images["coffee"].size) > MAX_SIDE
    tiny = Image.new("RGB", (2, 5), (9, 9, 9))  # no interior for the Laplacian
    for name, image in [*sample_images.items(), ("tiny", tiny)]:
        with torch.no_grad():
            got = perceptual_quality(to_tensor([image])).item()
        assert abs(got - _quality(image)) <= TOLERANCE, name


def test_margin_is_the_scaled_distance_to_the_threshold(quality_target: QualityTarget,
                                                        sample_batch: list[Image.Image]) -> None:
    x = to_tensor(sample_batch)
    with torch.no_grad():
        logits = quality_target(x)
        quality = quality_target.score(x)
    assert logits.shape == (len(sample_batch), 2) and logits.dtype == torch.float32
    expected = (0.15 - quality) / (0.15 * 0.85)
    torch.testing.assert_close((logits[:, FAIL] - logits[:, PASS]).double(), expected, rtol=1e-5, atol=1e-6)


def test_argmax_agrees_with_the_production_verdict(sample_batch: list[Image.Image]) -> None:
    qualities = [_quality(image) for image in sample_batch]
    threshold = float(np.median([q for q in qualities if q > 0]))  # both sides of the gate are populated
    target = QualityTarget(threshold)
    verdicts = target.verdict(sample_batch)
    assert verdicts == [FAIL if q < threshold else PASS for q in qualities]
    assert PASS in verdicts and FAIL in verdicts
    with torch.no_grad():
        logits = target(to_tensor(sample_batch))
    clear = (logits[:, FAIL] - logits[:, PASS]).abs() > 1e-6
    assert logits.argmax(1)[clear].tolist() == [v for v, c in zip(verdicts, clear.tolist(), strict=True) if c]


def test_gradients_are_finite_everywhere_and_flow_where_the_measure_has_a_slope(
        quality_target: QualityTarget, sample_images: dict[str, Image.Image]) -> None:
    for name, image in sample_images.items():
        x = to_tensor([image]).requires_grad_()
        quality_target.score(x).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), name
        # A flat frame is a stationary point of the Laplacian variance and the contrast (and the black one is
        # clipped through and through): no slope to follow, which is the measure's own property.
        assert (x.grad.abs().sum() > 0) == (name not in ("grey", "black", "red")), name


def test_clipping_surrogate_pulls_clipped_pixels_out() -> None:
    """Half the frame at level 1 (crushed): its gradient says "brighter is better", through the count's surrogate."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(60, 200, (64, 64, 3), dtype=np.uint8)
    pixels[:, :32] = 1
    x = to_tensor([Image.fromarray(pixels)]).requires_grad_()
    perceptual_quality(x).sum().backward()
    assert x.grad is not None and x.grad[0, :, 1:-1, 1:30].mean() > 0


def test_torchattacks_moves_quality_towards_a_flip(quality_target: QualityTarget,
                                                   sample_batch: list[Image.Image]) -> None:
    """FGSM at the issue's eps = 8/255 runs; a step of 2 levels (where the Laplacian variance is still close to its
    linearisation: an 8-level sign step overshoots it and can add "sharpness") moves every image with a slope
    towards the other side of the gate, both ways."""
    torchattacks = pytest.importorskip("torchattacks")
    x = to_tensor(sample_batch)
    labels = torch.tensor(quality_target.verdict(sample_batch))
    assert set(labels.tolist()) == {PASS, FAIL}  # the blurred, flat and black frames fail at 0.15
    attack = torchattacks.FGSM(quality_target, eps=8 / 255)
    assert attack.device == torch.device("cpu")  # found through the device anchor
    assert attack(x, labels).shape == x.shape
    adversarial = torchattacks.FGSM(quality_target, eps=2 / 255)(x, labels)
    with torch.no_grad():
        before, after = quality_target.score(x), quality_target.score(adversarial)
    towards_flip = torch.where(labels == PASS, -1.0, 1.0).double()
    moved = (after - before) * towards_flip
    flat = before == 0  # grey, black and red frames: no slope (see above)
    assert torch.all(moved[~flat] > 0), moved
