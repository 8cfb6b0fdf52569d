"""The torch colour science equals scikit-image's, CIEDE2000 passes Sharma's test data, and palette compliance
counts exactly as ``quality.brand`` does while still giving a gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

from adversarial.base import to_tensor
from adversarial.target_ops import quantise
from adversarial.target_palette import ciede2000, palette_compliance, srgb_to_lab
from quality.brand import hex_to_lab
from quality.brand import palette_compliance as production_compliance

# Sharma, Wu & Dalal 2005, Table 1: (Lab 1, Lab 2, CIEDE2000) pairs that exercise the hue wrap-around, the
# zero-chroma branches and the rotation term, given to 4 decimals.
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0000),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0011), 7.2195),
    ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.694), (23.0331, 14.973, -42.5619), 2.0373),
    ((90.8027, -2.0831, 1.441), (91.1528, -1.6435, 0.0447), 1.4441),
    ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082),
]


def _colours(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (n, 3)).astype(np.float64) / 255.0
    rgb[:20] = np.repeat(rng.integers(0, 256, (20, 1)), 3, axis=1) / 255.0  # greys: zero chroma
    rgb[20], rgb[21] = 0.0, 1.0
    return rgb


def test_lab_is_scikit_images() -> None:
    rgb = _colours(3000)
    np.testing.assert_allclose(srgb_to_lab(torch.from_numpy(rgb)).numpy(), rgb2lab(rgb[None])[0], atol=1e-10)


@pytest.mark.parametrize(("lab1", "lab2", "expected"), SHARMA)
def test_ciede2000_passes_sharmas_test_data(lab1: tuple[float, ...], lab2: tuple[float, ...], expected: float) -> None:
    got = ciede2000(torch.tensor(lab1, dtype=torch.float64), torch.tensor(lab2, dtype=torch.float64))
    assert round(got.item(), 4) == expected
    swapped = ciede2000(torch.tensor(lab2, dtype=torch.float64), torch.tensor(lab1, dtype=torch.float64))
    assert round(swapped.item(), 4) == expected


def test_ciede2000_is_scikit_images_with_finite_gradients_at_grey_and_at_zero_distance() -> None:
    rgb = _colours(2000, seed=1)
    lab = rgb2lab(rgb[None])[0]
    palette = lab[[5, 20, 21, 30, 40]]  # a grey, black, white, and two colours that are also pixels (distance 0)
    x = torch.from_numpy(rgb).requires_grad_()
    got = ciede2000(srgb_to_lab(x)[:, None, :], torch.from_numpy(palette)[None])
    np.testing.assert_allclose(got.detach().numpy(), deltaE_ciede2000(lab[:, None, :], palette[None]), atol=1e-9)
    got.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(("size", "max_side"), [((96, 64), 128), ((451, 300), 128), ((300, 451), 64)])
def test_compliance_counts_exactly_as_production(size: tuple[int, int], max_side: int) -> None:
    rng = np.random.default_rng(4)
    palette = ["#ff0000", "#202020", "#f0e0d0"]
    pixels = rng.integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)
    pixels[: size[1] // 3] = (250, 10, 5)  # near the red: inside the tolerance
    pixels[size[1] // 3: size[1] // 2] = (40, 30, 30)  # near the black
    image = Image.fromarray(pixels)
    lab = np.array([hex_to_lab(h) for h in palette])
    expected, _ = production_compliance(image, lab, 10.0, max_side=max_side)
    got = palette_compliance(quantise(to_tensor([image])), torch.from_numpy(lab), 10.0, max_side)
    assert got.item() == expected and 0 < expected < 1


def test_compliance_gradient_pulls_pixels_near_the_tolerance_towards_the_palette() -> None:
    """Pixels at CIEDE2000 10.8 from pure red (just outside a tolerance of 10): raising compliance asks for more
    red, although the exact count has no slope at all."""
    x = torch.tensor([[205 / 255, 0.0, 0.0]]).view(1, 3, 1, 1).expand(1, 3, 8, 8).clone().requires_grad_()
    lab = torch.tensor([hex_to_lab("#ff0000")], dtype=torch.float64)
    compliance = palette_compliance(quantise(x), lab, 10.0, 128)
    assert compliance.item() == 0.0  # the exact count: none inside yet
    compliance.sum().backward()
    assert x.grad is not None
    assert x.grad[0, 0].mean() > 0
