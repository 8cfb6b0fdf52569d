"""The feature-squeezing detector: squeezers match their reference definitions, calibration hits the requested
false-positive rate, and PGD examples against a small conv-net gate are flagged far more often than clean images.

Why the toy should work: the clean images are smooth (bicubic-upsampled noise), so a 3x3 median barely moves them
or the net's output; PGD's sign perturbation is pixel-level noise that the median largely removes, so the net's
output on the squeezed adversarial image moves back towards the clean one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from adversarial.base import FAIL, PASS, to_images, to_tensor
from adversarial.image_attacks import AttackSpec, run_attack
from adversarial.squeeze import DEFAULT_SQUEEZERS, BitDepth, FeatureSqueezer, MedianFilter


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The toy tensors are tiny: torch's intra-op thread pool only adds synchronisation, and on a busy machine its
    spinning threads made these tests several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyConvGate(nn.Module):
    """A seeded random two-layer conv net; its output is centred and scaled on ``reference`` images so that about
    half of them fail and the margin has unit spread."""

    name = "tiny-conv"
    description = "random conv net gate"
    differentiable = True

    def __init__(self, reference: Sequence[Image.Image], seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                     nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))
        with torch.no_grad():
            raw = self.net(to_tensor(reference)).squeeze(1)
        self.register_buffer("centre", raw.median())
        self.register_buffer("spread", raw.std())

    def margin(self, images: torch.Tensor) -> torch.Tensor:
        return (self.net(images).squeeze(1) - self.centre) / self.spread

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        margin = self.margin(images)
        return torch.stack([torch.zeros_like(margin), margin], dim=1)

    def verdict(self, images: Sequence[Image.Image]) -> list[int]:
        with torch.no_grad():
            return [FAIL if m > 0 else PASS for m in self.margin(to_tensor(images)).tolist()]


def _smooth_images(n: int, seed: int) -> list[Image.Image]:
    generator = torch.Generator().manual_seed(seed)
    means = 0.3 + 0.4 * torch.rand(n, generator=generator)
    coarse = torch.randn(n, 3, 4, 4, generator=generator)
    texture = F.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False) * 0.08
    texture = texture - texture.mean(dim=(1, 2, 3), keepdim=True)
    return to_images((texture + means.view(-1, 1, 1, 1)).clamp(0, 1))


@pytest.fixture(scope="module")
def world() -> tuple[TinyConvGate, list[Image.Image], list[Image.Image], list[Image.Image]]:
    """The gate, 100 clean calibration images, 40 held-out clean images, and the successful PGD-8/255 examples."""
    images = _smooth_images(140, seed=1)
    calibration, held_out = images[:100], images[100:]
    gate = TinyConvGate(calibration)
    result = run_attack(gate, held_out, AttackSpec("pgd-8", "pgd", 8 / 255))
    adversarial = [result.adversarial_images[o.index] for o in result.flipped]
    assert len(adversarial) >= 20  # measured 28 of 40
    return gate, calibration, held_out, adversarial


def test_bit_depth_keeps_only_2_to_the_k_levels() -> None:
    squeezed = BitDepth(2)(torch.linspace(0, 1, 101).view(1, 1, 1, -1))
    assert sorted(set(np.round(squeezed.flatten().tolist(), 6))) == pytest.approx([0, 1 / 3, 2 / 3, 1])


@pytest.mark.parametrize("size", [2, 3])
def test_median_filter_matches_scipy(size: int) -> None:
    batch = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    expected = scipy.ndimage.median_filter(batch.numpy(), size=(1, 1, size, size), mode="reflect")
    assert np.array_equal(MedianFilter(size)(batch).numpy(), expected)


@pytest.mark.parametrize("metric", ["l1", "margin"])
def test_calibrated_detector_flags_adversarial_examples(world: tuple, metric: str) -> None:
    gate, calibration, held_out, adversarial = world
    detector = FeatureSqueezer(gate, [BitDepth(5), MedianFilter(3)], metric=metric)  # type: ignore[arg-type]
    detector.calibrate(calibration, fpr=0.05)
    assert sum(detector.is_suspicious(calibration)) == 5  # exactly the requested 5% of the calibration set
    report = detector.evaluate(held_out, adversarial)
    assert report.false_positive_rate <= 0.1  # measured 0.075 (3 of 40) on unseen clean images, both metrics
    assert report.detection_rate >= 0.8  # measured 1.0 (28 of 28), both metrics
    payload = json.loads(json.dumps(report.as_dict()))
    assert payload["squeezers"] == ["bits:5", "median:3x3"] and payload["n_adversarial"] == len(adversarial)


def test_detector_needs_a_threshold_and_enough_clean_images(world: tuple) -> None:
    gate, calibration, _, _ = world
    detector = FeatureSqueezer(gate)
    assert [s.spec for s in detector.squeezers] == [s.spec for s in DEFAULT_SQUEEZERS] == ["bits:5", "median:2x2"]
    with pytest.raises(RuntimeError, match="no threshold"):
        detector.is_suspicious(calibration[:1])
    with pytest.raises(ValueError, match="at least 20 images to calibrate at fpr=0.05 but holds 10"):
        detector.calibrate(calibration[:10], fpr=0.05)
    with pytest.raises(ValueError, match="`fpr` has to be in \\(0, 1\\) but is 0"):
        detector.calibrate(calibration, fpr=0)
    assert FeatureSqueezer(gate, threshold=0.0).is_suspicious([]) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"squeezers": []}, "at least one squeezer"),
    ({"metric": "l2"}, "`metric` has to be 'l1' or 'margin' but is 'l2'"),
])
def test_detector_arguments_are_checked(world: tuple, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureSqueezer(world[0], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("factory", "message"), [
    (lambda: BitDepth(8), "`bits` has to be an integer in \\[1, 7\\]"),
    (lambda: MedianFilter(4), "`size` has to be 2 or 3 but is 4"),
])
def test_squeezer_arguments_are_checked(factory: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()  # type: ignore[operator]
