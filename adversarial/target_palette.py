"""Palette compliance (``quality.brand.palette_compliance``) in torch: sRGB to CIELAB, CIEDE2000, and a count
with a gradient.

Compliance is the share of an image's pixels (downscaled with Pillow's NEAREST to ``PALETTE_MAX_SIDE``) whose
CIEDE2000 difference to the nearest palette colour is at most the kit's ``palette_max_delta_e``. The colour
science follows scikit-image, which production uses: sRGB (IEC 61966-2-1) to XYZ with scikit-image's matrix, to
CIELAB under D65 / 2 degrees, and CIEDE2000 (CIE 142-2001) as in Sharma, Wu & Dalal 2005, "The CIEDE2000
color-difference formula: implementation notes, supplementary test data, and mathematical observations", Color Res.
Appl. 30(1), written branch for branch like ``skimage.color.deltaE_ciede2000``. Every square root and ``atan2`` is
guarded where its argument can be zero (grey pixels have zero chroma, a palette colour is at distance zero), so the
gradient is finite everywhere.

The count itself has no gradient. Its forward value is the exact count; its gradient is that of the logistic
relaxation ``sigmoid((max_delta_e - delta_e) / PALETTE_TEMPERATURE)``: a straight-through estimator (Bengio,
Léonard & Courville 2013, arXiv:1308.3432) with a sigmoid surrogate, so the attack sees the pull of the tolerance
boundary and the forward value stays production's.
"""

from __future__ import annotations

import math

import torch

from adversarial.target_ops import pil_nearest

# Width, in CIEDE2000 units, of the logistic that stands in for the tolerance in the backward pass: about one
# just-noticeable difference, so a pixel feels the boundary from a few units away.
PALETTE_TEMPERATURE = 1.0


def _rgb_to_xyz_matrix() -> torch.Tensor:
    from skimage.color.colorconv import xyz_from_rgb

    return torch.tensor(xyz_from_rgb, dtype=torch.float64)


def _white_point() -> torch.Tensor:
    from skimage.color import xyz_tristimulus_values

    return torch.tensor(xyz_tristimulus_values(illuminant="D65", observer="2"), dtype=torch.float64)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``skimage.color.rgb2lab`` of sRGB values in [0, 1], channels last; float64."""
    rgb = rgb.double()
    low = rgb <= 0.04045
    linear = torch.where(low, rgb / 12.92, ((torch.where(low, 0.0, rgb) + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _rgb_to_xyz_matrix().to(rgb.device).T / _white_point().to(rgb.device)
    small = xyz <= 0.008856
    f = torch.where(small, 7.787 * xyz + 16.0 / 116.0, torch.where(small, 1.0, xyz) ** (1.0 / 3.0))
    fx, fy, fz = f.unbind(-1)
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-1)


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0).sqrt(), 0.0)


def _polar(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(radius, angle in [0, 2 pi)), as scikit-image's ``_cart2polar_2pi``; angle 0 at the origin."""
    origin = (x == 0) & (y == 0)
    angle = torch.atan2(torch.where(origin, 0.0, y), torch.where(origin, 1.0, x))
    return _sqrt(x * x + y * y), torch.where(angle < 0, angle + 2 * math.pi, angle)


def ciede2000(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """CIEDE2000 colour difference (kL = kC = kH = 1) of broadcastable CIELAB tensors, channels last."""
    l1, a1, b1 = lab1.unbind(-1)
    l2, a2, b2 = lab2.unbind(-1)
    c7 = (0.5 * (_sqrt(a1 * a1 + b1 * b1) + _sqrt(a2 * a2 + b2 * b2))) ** 7
    g = 0.5 * (1 - _sqrt(c7 / (c7 + 25.0**7)))
    c1, h1 = _polar(a1 * (1 + g), b1)
    c2, h2 = _polar(a2 * (1 + g), b2)

    l_bar = 0.5 * (l1 + l2)
    tmp = (l_bar - 50) ** 2
    l_term = (l2 - l1) / (1 + 0.015 * tmp / torch.sqrt(20 + tmp))

    c_bar = 0.5 * (c1 + c2)
    c_term = (c2 - c1) / (1 + 0.045 * c_bar)

    h_diff, h_sum, cc = h2 - h1, h1 + h2, c1 * c2
    no_hue = cc == 0
    d_h = torch.where(h_diff > math.pi, h_diff - 2 * math.pi, torch.where(h_diff < -math.pi, h_diff + 2 * math.pi,
                                                                          h_diff))
    d_h = torch.where(no_hue, 0.0, d_h)
    dh_term = 2 * _sqrt(cc) * torch.sin(d_h / 2)

    wrap = ~no_hue & (h_diff.abs() > math.pi)
    h_bar = torch.where(wrap & (h_sum < 2 * math.pi), h_sum + 2 * math.pi,
                        torch.where(wrap, h_sum - 2 * math.pi, h_sum))
    h_bar = 0.5 * torch.where(no_hue, 2 * h_bar, h_bar)
    t = (1 - 0.17 * torch.cos(h_bar - math.radians(30)) + 0.24 * torch.cos(2 * h_bar)
         + 0.32 * torch.cos(3 * h_bar + math.radians(6)) - 0.20 * torch.cos(4 * h_bar - math.radians(63)))
    h_term = dh_term / (1 + 0.015 * c_bar * t)

    c7 = c_bar**7
    rc = 2 * _sqrt(c7 / (c7 + 25.0**7))
    d_theta = math.radians(30) * torch.exp(-(((torch.rad2deg(h_bar) - 275) / 25) ** 2))
    r_term = -torch.sin(2 * d_theta) * rc * c_term * h_term
    return _sqrt((l_term**2 + c_term**2 + h_term**2 + r_term).clamp_min(0.0))


def palette_compliance(levels: torch.Tensor, palette_lab: torch.Tensor, max_delta_e: float,
                       max_side: int) -> torch.Tensor:
    """Per-image share of pixels within ``max_delta_e`` of the palette: exact count forward, logistic gradient.

    ``levels`` are NCHW float64 8-bit levels (see :func:`adversarial.target_ops.quantise`); ``palette_lab`` is the
    kit's ``(colours, 3)`` CIELAB palette.
    """
    height, width = levels.shape[-2:]
    if max(width, height) > max_side:
        scale = max_side / max(width, height)
        levels = pil_nearest(levels, (max(1, round(width * scale)), max(1, round(height * scale))))
    lab = srgb_to_lab(levels.permute(0, 2, 3, 1).flatten(1, 2) / 255.0)
    palette = palette_lab.to(device=lab.device, dtype=torch.float64)
    nearest = ciede2000(lab[:, :, None, :], palette[None, None, :, :]).min(dim=-1).values
    hard = (nearest <= max_delta_e).double().mean(1)
    soft = torch.sigmoid((max_delta_e - nearest) / PALETTE_TEMPERATURE).mean(1)
    return hard + (soft - soft.detach())
