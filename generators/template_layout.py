"""Geometry and drawing for the template compositor: slots, image slots, shape layers, background, button, logo.

A banner is drawn in a fixed order, so that text always stays readable on top: the background gradient, the image
slots (each image scaled to ``cover`` or ``contain`` its box), the shape layers (e.g. a panel behind the text), the
logo mark, then the text slots (a CTA's button behind its text). Text is set in the packaged fonts (see
:mod:`generators.template_fonts`) by :mod:`generators.template_text`. Everything but the text is the banner's *base*:
a batch of locales draws it once and only the text per locale (:func:`render_base`, :func:`draw_slots`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from generators.template_fonts import Fonts, chain
from generators.template_text import RGB, Box, TextBlock, draw_text, fit_text

__all__ = ["RGB", "Background", "Box", "ImageSlot", "Layer", "Logo", "Slot", "TextBlock", "button_padding",
           "fit_image", "fit_slot", "hex_rgb", "logo_text", "paint_background", "render_base", "draw_slots"]

GRADIENT_SHIFT = 0.08  # the seed moves the gradient's midpoint by at most this share of the height
PATTERN_DISCS = 5
PATTERN_ALPHA = (3, 8)  # opacity (of 255) of the faint seed-placed discs: plain to a diff, barely to a viewer
LOGO_FAMILY = "sans"


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
    """A text slot: where its text may go, how large it may be, its font family, and (``button``, a fill colour)
    whether it is a CTA."""

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
    font: str = "sans"  # a family of generators.template_fonts

    def text_box(self) -> Box:
        """The area the text must fit in: the box, less the padding of a button."""
        b = self.box
        if self.button is None:
            return b
        pad_x, pad_y = button_padding(b.h)
        return Box(b.x + pad_x, b.y + pad_y, b.w - 2 * pad_x, b.h - 2 * pad_y)


def button_padding(height: int) -> tuple[int, int]:
    """Horizontal and vertical padding between a button's edge and its text."""
    return max(12, height // 3), max(4, height // 8)


def hex_rgb(colour: str) -> RGB:
    """``#rrggbb`` (validated by the template loader) as an RGB tuple."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@dataclass(frozen=True)
class ImageSlot:
    """A box filled with an image handed to the generator (a diffusion render in production).

    ``fit``: ``cover`` scales the image to fill the box and crops the overflow evenly from both sides; ``contain``
    scales it to fit inside the box and centres it, leaving what lies beneath visible around it.
    """

    name: str
    box: Box
    fit: str = "cover"
    required: bool = False


@dataclass(frozen=True)
class Layer:
    """A filled rectangle (``radius`` rounds its corners) at ``opacity`` percent: a panel, a scrim, a stripe."""

    box: Box
    colour: str
    opacity: int = 100
    radius: int = 0


def fit_slot(slot: Slot, text: str, fonts: Fonts, locale: str | None = None) -> TextBlock | None:
    return fit_text(text, slot.text_box(), max_lines=slot.max_lines, max_size=slot.max_size,
                    min_size=slot.min_size, align=slot.align, faces=chain(slot.font, locale), fonts=fonts)


def logo_text(logo: Logo, fonts: Fonts) -> TextBlock | None:
    """The initials' layout: one centred line in the middle 70% of the mark, at most 45% of its size tall."""
    inset = round(logo.size * 0.15)
    box = Box(logo.x + inset, logo.y + inset, logo.size - 2 * inset, logo.size - 2 * inset)
    return fit_text(logo.text, box, max_lines=1, max_size=max(6, round(logo.size * 0.45)), min_size=6,
                    align="center", faces=chain(LOGO_FAMILY), fonts=fonts)


def fit_image(image: Image.Image, box: Box, fit: str) -> tuple[Image.Image, tuple[int, int]]:
    """``image`` scaled (Lanczos) to ``cover`` or ``contain`` ``box``, and where to paste it.

    The result is RGB, or RGBA when the image has transparency (pasted through its alpha). For ``cover`` only the
    part of the source that stays visible is resampled, so a large render is not scaled whole and then cropped.
    """
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    source = image if image.mode == ("RGBA" if has_alpha else "RGB") else image.convert("RGBA" if has_alpha else "RGB")
    width, height = source.size
    if fit == "cover":
        scale = max(box.w / width, box.h / height)
        crop_w, crop_h = box.w / scale, box.h / scale
        left, top = (width - crop_w) / 2, (height - crop_h) / 2
        fitted = source.resize((box.w, box.h), Image.Resampling.LANCZOS, box=(left, top, left + crop_w, top + crop_h))
        return fitted, (box.x, box.y)
    scale = min(box.w / width, box.h / height)
    size = (max(1, min(box.w, round(width * scale))), max(1, min(box.h, round(height * scale))))
    fitted = source.resize(size, Image.Resampling.LANCZOS)
    return fitted, (box.x + (box.w - size[0]) // 2, box.y + (box.h - size[1]) // 2)


def render_base(size: tuple[int, int], background: Background, images: Sequence[tuple[Image.Image, tuple[int, int]]],
                layers: Sequence[Layer], logo: Logo | None, seed: int, fonts: Fonts) -> Image.Image:
    """Everything but the text slots: the background, the fitted images, the shape layers and the logo mark."""
    image = paint_background(size, hex_rgb(background.top), hex_rgb(background.bottom), seed)
    for fitted, at in images:
        image.paste(fitted, at, fitted if fitted.mode == "RGBA" else None)
    for layer in layers:
        b = layer.box
        mask = Image.new("L", (b.w, b.h), 0)
        ImageDraw.Draw(mask).rounded_rectangle((0, 0, b.w - 1, b.h - 1), radius=layer.radius,
                                               fill=round(255 * layer.opacity / 100))
        image.paste(hex_rgb(layer.colour), (b.x, b.y, b.x + b.w, b.y + b.h), mask)
    if logo is not None:
        initials = logo_text(logo, fonts)
        if initials is None:  # the loader checked that the initials fit: this is a broken invariant, not bad input
            raise ValueError(f"logo initials {logo.text!r} do not fit a {logo.size}px mark")
        draw = ImageDraw.Draw(image)
        bounds = (logo.x, logo.y, logo.x + logo.size - 1, logo.y + logo.size - 1)
        if logo.shape == "circle":
            draw.ellipse(bounds, fill=hex_rgb(logo.colour))
        else:
            draw.rounded_rectangle(bounds, radius=logo.size // 5, fill=hex_rgb(logo.colour))
        draw_text(draw, initials, hex_rgb(logo.text_colour), fonts)
    return image


def draw_slots(image: Image.Image, slots: Sequence[Slot], blocks: Mapping[str, TextBlock], fonts: Fonts) -> None:
    """Draw each slot that has a laid-out text block onto ``image`` (buttons behind their text)."""
    draw = ImageDraw.Draw(image)
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
