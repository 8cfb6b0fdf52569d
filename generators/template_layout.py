"""Geometry and drawing for the template compositor: slots, auto-fitting word wrap, background, button, logo mark.

All text uses the font embedded in Pillow (a subset of Aileron Regular, ``ImageFont.load_default(size=...)``, Pillow
>= 10.1, drawn with Pillow's basic layout engine), so no font files ship and the pixels do not depend on which fonts
or shaping libraries a host has. That subset covers printable ASCII and a few punctuation marks only: no accented
letters, no Cyrillic, Greek, Arabic or CJK. :func:`missing_glyphs` finds text it cannot draw so that the caller can
refuse it instead of releasing a banner full of empty boxes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Font = ImageFont.FreeTypeFont
FontLoader = Callable[[int], Font]
RGB = tuple[int, int, int]

LINE_PITCH = 1.15  # baseline-to-baseline distance as a multiple of the font size
GRADIENT_SHIFT = 0.08  # the seed moves the gradient's midpoint by at most this share of the height
PATTERN_DISCS = 5
PATTERN_ALPHA = (3, 8)  # opacity (of 255) of the faint seed-placed discs: plain to a diff, barely to a viewer
_NOTDEF_PROBE = "\U0010fffd"  # a private-use code point no font maps, so it draws the font's "missing glyph" box


@dataclass(frozen=True)
class Box:
    """A rectangle on the canvas: top-left corner and size in pixels."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Background:
    """A vertical gradient from ``top`` to ``bottom`` (``#rrggbb``); a solid fill has both equal."""

    top: str
    bottom: str


@dataclass(frozen=True)
class Logo:
    """A vector logo mark: a ``circle`` or ``rounded_square`` of ``size`` pixels with up to three initials."""

    shape: str
    x: int
    y: int
    size: int
    colour: str
    text: str
    text_colour: str


@dataclass(frozen=True)
class Slot:
    """A text slot: where its text may go, how large it may be, and (``button``, a fill colour) whether it is a CTA."""

    name: str
    box: Box
    max_size: int
    min_size: int
    colour: str
    align: str = "left"
    max_lines: int = 1
    required: bool = False
    max_chars: int = 120
    button: str | None = None

    def text_box(self) -> Box:
        """The area the text must fit in: the box, less the padding of a button."""
        b = self.box
        if self.button is None:
            return b
        pad_x, pad_y = button_padding(b.h)
        return Box(b.x + pad_x, b.y + pad_y, b.w - 2 * pad_x, b.h - 2 * pad_y)


@dataclass(frozen=True)
class TextBlock:
    """Wrapped lines at one font size, each line's drawing origin (left baseline), and the ink box of them all."""

    size: int
    lines: tuple[str, ...]
    origins: tuple[tuple[int, int], ...]
    ink: tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)


def button_padding(height: int) -> tuple[int, int]:
    """Horizontal and vertical padding between a button's edge and its text."""
    return max(12, height // 3), max(4, height // 8)


def hex_rgb(colour: str) -> RGB:
    """``#rrggbb`` (validated by the template loader) as an RGB tuple."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def load_font(size: int) -> Font:
    """Pillow's embedded scalable font at ``size`` pixels."""
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("Pillow was built without FreeType; the template compositor needs its scalable font")
    return font


def font_loader() -> FontLoader:
    """A font cache for one layout or render call.

    A FreeType face must not be used by two threads at once, so fonts are never shared between calls; loading the
    embedded font costs a fraction of a millisecond, and the cache keeps the auto-fit loop from reloading sizes.
    """
    fonts: dict[int, Font] = {}

    def get(size: int) -> Font:
        if size not in fonts:
            fonts[size] = load_font(size)
        return fonts[size]

    return get


@lru_cache(maxsize=4096)
def _has_glyph(char: str) -> bool:
    """A character the font does not map draws as the "missing glyph" box: compare the two once per character."""
    font = load_font(24)
    return _glyph_pixels(font, char) != _glyph_pixels(font, _NOTDEF_PROBE)


def _glyph_pixels(font: Font, char: str) -> bytes:
    image = Image.new("L", (48, 48))
    ImageDraw.Draw(image).text((8, 36), char, font=font, fill=255, anchor="ls")
    return image.tobytes()


def missing_glyphs(text: str) -> list[str]:
    """The distinct characters of ``text`` the embedded font cannot draw, in order of first use."""
    return [c for c in dict.fromkeys(text) if c != " " and not _has_glyph(c)]


def fit_text(
    text: str, box: Box, *, max_lines: int, max_size: int, min_size: int, align: str, fonts: FontLoader
) -> TextBlock | None:
    """Lay ``text`` out in ``box`` at the largest size from ``max_size`` down to ``min_size`` that fits.

    Fitting means at most ``max_lines`` greedily word-wrapped lines whose ink boxes, as FreeType reports them (never
    smaller than the drawn pixels), lie inside the box; the block is centred vertically. Returns None when even
    ``min_size`` does not fit: words are never broken and text is never cut, so the caller can refuse the request.

    Whether text fits shrinks with the size (glyph widths scale with it), so the size is found by bisection: a
    handful of trial layouts instead of one per size. Any block returned was laid out and checked at its size.
    """
    words = text.split()
    best = _layout_at(words, box, min_size, max_lines, align, fonts)
    low, high = min_size + 1, max_size
    while best is not None and low <= high:
        middle = (low + high) // 2
        block = _layout_at(words, box, middle, max_lines, align, fonts)
        if block is None:
            high = middle - 1
        else:
            best, low = block, middle + 1
    return best


def _layout_at(words: Sequence[str], box: Box, size: int, max_lines: int, align: str,
               fonts: FontLoader) -> TextBlock | None:
    """The text block at one font size, or None if it does not fit the box there."""
    font = fonts(size)
    lines = _wrap(words, font, box.w, max_lines)
    if lines is None:
        return None
    pitch = round(size * LINE_PITCH)
    bboxes = [_ink_box(font, line) for line in lines]
    # The nominal extent (cap height to descent) keeps the baseline steady whatever letters a text has.
    top = min(_ink_box(font, "H")[1], *(b[1] + i * pitch for i, b in enumerate(bboxes)))
    bottom = max((len(lines) - 1) * pitch + font.getmetrics()[1], *(b[3] + i * pitch for i, b in enumerate(bboxes)))
    if bottom - top > box.h:
        return None
    baseline = box.y + (box.h - (bottom - top)) // 2 - top
    origins = []
    for i, (left, _, right, _) in enumerate(bboxes):
        offset = {"left": 0, "center": (box.w - (right - left)) // 2, "right": box.w - (right - left)}[align]
        origins.append((box.x + offset - left, baseline + i * pitch))
    ink_left = min(o[0] + b[0] for o, b in zip(origins, bboxes, strict=True))
    ink_right = max(o[0] + b[2] for o, b in zip(origins, bboxes, strict=True))
    return TextBlock(size, tuple(lines), tuple(origins), (ink_left, baseline + top, ink_right, baseline + bottom))


def _wrap(words: Sequence[str], font: Font, width: int, max_lines: int) -> list[str] | None:
    """Greedy word wrap to ``width`` pixels; None if a word alone is too wide or more than ``max_lines`` are needed."""
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if _ink_width(font, candidate) <= width:
            current = candidate
            continue
        if not current or _ink_width(font, word) > width or len(lines) + 1 >= max_lines:
            return None
        lines.append(current)
        current = word
    if current:
        lines.append(current)
    return lines or None


def _ink_width(font: Font, text: str) -> int:
    left, _, right, _ = _ink_box(font, text)
    return right - left


def _ink_box(font: Font, text: str) -> tuple[int, int, int, int]:
    """The ink box of ``text`` drawn at the origin (left baseline), rounded outwards to whole pixels."""
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    return math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom)


def fit_slot(slot: Slot, text: str, fonts: FontLoader) -> TextBlock | None:
    return fit_text(text, slot.text_box(), max_lines=slot.max_lines, max_size=slot.max_size,
                    min_size=slot.min_size, align=slot.align, fonts=fonts)


def logo_text(logo: Logo, fonts: FontLoader) -> TextBlock | None:
    """The initials' layout: one centred line in the middle 70% of the mark, at most 45% of its size tall."""
    inset = round(logo.size * 0.15)
    box = Box(logo.x + inset, logo.y + inset, logo.size - 2 * inset, logo.size - 2 * inset)
    return fit_text(logo.text, box, max_lines=1, max_size=max(6, round(logo.size * 0.45)), min_size=6,
                    align="center", fonts=fonts)


def render_banner(
    size: tuple[int, int], background: Background, logo: Logo | None, slots: Sequence[Slot],
    blocks: Mapping[str, TextBlock], seed: int, fonts: FontLoader,
) -> Image.Image:
    """Draw the background, the logo, then each slot that has a laid-out text block (buttons behind their text)."""
    image = paint_background(size, hex_rgb(background.top), hex_rgb(background.bottom), seed)
    draw = ImageDraw.Draw(image)
    if logo is not None:
        initials = logo_text(logo, fonts)
        if initials is None:  # the loader checked that the initials fit: this is a broken invariant, not bad input
            raise ValueError(f"logo initials {logo.text!r} do not fit a {logo.size}px mark")
        bounds = (logo.x, logo.y, logo.x + logo.size - 1, logo.y + logo.size - 1)
        if logo.shape == "circle":
            draw.ellipse(bounds, fill=hex_rgb(logo.colour))
        else:
            draw.rounded_rectangle(bounds, radius=logo.size // 5, fill=hex_rgb(logo.colour))
        draw_text(draw, initials, hex_rgb(logo.text_colour), fonts)
    for slot in slots:
        block = blocks.get(slot.name)
        if block is None:
            continue
        if slot.button is not None:
            # The button hugs its text horizontally and takes the slot's full height; padding keeps it in the box.
            pad_x, _ = button_padding(slot.box.h)
            rect = (block.ink[0] - pad_x, slot.box.y, block.ink[2] + pad_x - 1, slot.box.y + slot.box.h - 1)
            draw.rounded_rectangle(rect, radius=slot.box.h // 3, fill=hex_rgb(slot.button))
        draw_text(draw, block, hex_rgb(slot.colour), fonts)
    return image


def draw_text(draw: ImageDraw.ImageDraw, block: TextBlock, colour: RGB, fonts: FontLoader) -> None:
    font = fonts(block.size)
    for line, origin in zip(block.lines, block.origins, strict=True):
        draw.text(origin, line, font=font, fill=colour, anchor="ls")


def paint_background(size: tuple[int, int], top: RGB, bottom: RGB, seed: int) -> Image.Image:
    """A vertical ``top`` -> ``bottom`` gradient with a faint seeded pattern.

    The seed moves the gradient's midpoint slightly and places a few near-transparent discs, so the images of one
    request differ while each is reproducible from its seed. Only ``Random.random()`` is used: its sequence for an
    int seed is what the ``random`` module promises to keep across Python versions.
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
    # Light discs on a dark background, dark ones on a light background: a white canvas must vary too.
    luma = sum(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] for c in (top, bottom)) / 2
    tint = (0, 0, 0) if luma > 127 else (255, 255, 255)
    return Image.composite(Image.new("RGB", size, tint), canvas, mask)
