"""Text layout and drawing for the template compositor: auto-fitting word wrap, the background, the logo mark.

All text uses the font embedded in Pillow (a subset of Aileron Regular, ``ImageFont.load_default(size=...)``, Pillow
>= 10.1) with Pillow's basic layout engine, so no font files ship and the pixels do not depend on which fonts or
shaping libraries a host has. That subset covers printable ASCII and a few punctuation marks only (no accented
letters, no Cyrillic, Greek, Arabic or CJK): :func:`missing_glyphs` finds text it cannot draw so that the caller can
refuse it instead of releasing a banner full of empty boxes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Font = ImageFont.FreeTypeFont
FontLoader = Callable[[int], Font]
RGB = tuple[int, int, int]

LINE_PITCH = 1.15  # baseline-to-baseline distance as a multiple of the font size
PATTERN_ALPHA = (6, 14)  # opacity range (of 255) of the faint seed-placed discs: visible to a diff, not to a viewer
PATTERN_DISCS = 5
GRADIENT_SHIFT = 0.08  # the seed moves the gradient's midpoint by at most this share of the height
_NOTDEF_PROBE = "\U0010fffd"  # a private-use code point no font maps, so it draws the font's "missing" glyph


def hex_rgb(color: str) -> RGB:
    """``#rrggbb`` (already validated by the template loader) as an RGB tuple."""
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def load_font(size: int) -> Font:
    """Pillow's embedded scalable font at ``size`` pixels."""
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("Pillow was built without FreeType; the template compositor needs its scalable font")
    return font


def font_loader() -> FontLoader:
    """A font cache for one layout or render call.

    FreeType faces must not be used from two threads at once, so fonts are never shared between calls; loading the
    embedded font costs well under a millisecond, and the cache keeps the auto-fit loop from reloading it per size.
    """
    fonts: dict[int, Font] = {}

    def get(size: int) -> Font:
        if size not in fonts:
            fonts[size] = load_font(size)
        return fonts[size]

    return get


@lru_cache(maxsize=4096)
def _has_glyph(char: str) -> bool:
    font = load_font(24)
    return _glyph_pixels(font, char) != _glyph_pixels(font, _NOTDEF_PROBE)


def _glyph_pixels(font: Font, char: str) -> bytes:
    image = Image.new("L", (48, 48))
    ImageDraw.Draw(image).text((8, 36), char, font=font, fill=255, anchor="ls")
    return image.tobytes()


def missing_glyphs(text: str) -> list[str]:
    """The distinct characters of ``text`` the embedded font has no glyph for, in order of first use."""
    missing: list[str] = []
    for char in dict.fromkeys(text):
        if char != " " and not _has_glyph(char):
            missing.append(char)
    return missing


@dataclass(frozen=True)
class TextBlock:
    """Wrapped lines at one font size, with each line's drawing origin (left baseline) inside the box."""

    size: int
    lines: tuple[str, ...]
    origins: tuple[tuple[int, int], ...]


def fit_text(
    text: str, box: tuple[int, int, int, int], *, max_lines: int, size_max: int, size_min: int, align: str,
    fonts: FontLoader,
) -> TextBlock | None:
    """Lay ``text`` out in ``box`` (x, y, w, h) at the largest size from ``size_max`` down to ``size_min`` that fits.

    Fitting means at most ``max_lines`` greedy word-wrapped lines whose ink boxes (as FreeType reports them, which is
    never smaller than the drawn pixels) lie inside the box. Returns None when no size fits; words are never broken
    and text is never cut, so the caller can refuse the request instead.
    """
    words = text.split()
    x, y, w, h = box
    for size in range(size_max, size_min - 1, -1):
        font = fonts(size)
        lines = _wrap(words, font, w, max_lines)
        if lines is None:
            continue
        pitch = round(size * LINE_PITCH)
        boxes = [font.getbbox(line, anchor="ls") for line in lines]
        top = min(font.getbbox("H", anchor="ls")[1], *(b[1] + i * pitch for i, b in enumerate(boxes)))
        bottom = max((len(lines) - 1) * pitch + font.getmetrics()[1], *(b[3] + i * pitch for i, b in enumerate(boxes)))
        if bottom - top > h:
            continue
        baseline = y + (h - (bottom - top)) // 2 - top
        origins = []
        for i, (left, _, right, _) in enumerate(boxes):
            ink = right - left
            start = {"left": x, "center": x + (w - ink) // 2, "right": x + w - ink}[align]
            origins.append((start - left, baseline + i * pitch))
        return TextBlock(size, tuple(lines), tuple(origins))
    return None


def _wrap(words: Sequence[str], font: Font, width: int, max_lines: int) -> list[str] | None:
    """Greedy word wrap to ``width`` pixels; None if a word alone is too wide or more than ``max_lines`` are needed."""
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if _ink_width(font, candidate) <= width:
            current = candidate
            continue
        if not current or _ink_width(font, word) > width:
            return None
        lines.append(current)
        current = word
        if len(lines) >= max_lines:
            return None
    if current:
        lines.append(current)
    return lines if 0 < len(lines) <= max_lines else None


def _ink_width(font: Font, text: str) -> int:
    left, _, right, _ = font.getbbox(text, anchor="ls")
    return right - left


def draw_text(draw: ImageDraw.ImageDraw, block: TextBlock, color: RGB, fonts: FontLoader) -> None:
    font = fonts(block.size)
    for line, origin in zip(block.lines, block.origins, strict=True):
        draw.text(origin, line, font=font, fill=color, anchor="ls")


def paint_background(size: tuple[int, int], top: RGB, bottom: RGB, seed: int) -> Image.Image:
    """A vertical ``top`` -> ``bottom`` gradient (a solid fill when they are equal) with a faint seeded pattern.

    The seed moves the gradient's midpoint slightly and places a few near-transparent discs, so images of one request
    differ from each other while every image is reproducible from its seed. Only ``Random.random()`` is used: its
    sequence for an int seed is the one the ``random`` module promises to keep across Python versions.
    """
    width, height = size
    rng = random.Random(seed)
    shift = (rng.random() * 2 - 1) * GRADIENT_SHIFT
    t = np.clip(np.linspace(0.0, 1.0, height) + shift, 0.0, 1.0)[:, None]
    rows = np.asarray(top, dtype=np.float64) * (1 - t) + np.asarray(bottom, dtype=np.float64) * t
    pixels = np.broadcast_to(np.rint(rows).astype(np.uint8)[:, None, :], (height, width, 3))
    canvas = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(PATTERN_DISCS):
        cx, cy = rng.random() * width, rng.random() * height
        radius = (0.15 + rng.random() * 0.35) * height
        alpha = PATTERN_ALPHA[0] + round(rng.random() * (PATTERN_ALPHA[1] - PATTERN_ALPHA[0]))
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=alpha)
    return Image.composite(Image.new("RGB", size, (255, 255, 255)), canvas, mask)


def draw_logo(
    draw: ImageDraw.ImageDraw, *, x: int, y: int, size: int, shape: str, fill: RGB, text: str, text_color: RGB,
    fonts: FontLoader,
) -> None:
    """A vector logo mark: a circle or rounded square of ``size`` pixels with centred initials."""
    bounds = (x, y, x + size - 1, y + size - 1)
    if shape == "circle":
        draw.ellipse(bounds, fill=fill)
    else:
        draw.rounded_rectangle(bounds, radius=size // 5, fill=fill)
    block = logo_text(text, x, y, size, fonts)
    if block is None:  # the loader checks that the initials fit, so this is a broken invariant, not bad input
        raise ValueError(f"logo initials {text!r} do not fit a {size}px mark")
    draw_text(draw, block, text_color, fonts)


def logo_text(text: str, x: int, y: int, size: int, fonts: FontLoader) -> TextBlock | None:
    """The initials' layout: one line in the middle 70% of the mark, as large as fits up to 45% of its size."""
    inset = round(size * 0.15)
    return fit_text(
        text, (x + inset, y + inset, size - 2 * inset, size - 2 * inset), max_lines=1,
        size_max=max(6, round(size * 0.45)), size_min=6, align="center", fonts=fonts,
    )
