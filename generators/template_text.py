"""Text for the template compositor: line breaking, per-script runs, auto-fit and drawing.

A slot's text is broken into lines at spaces and, in Chinese and Japanese, between characters (with the usual
kinsoku rules: no line starts with a closing mark or ends with an opening one; Korean, which spaces its words,
breaks at spaces only). Each line is cut into runs of one embedding level and one face (see
:mod:`generators.template_bidi` and :mod:`generators.template_fonts`); runs are measured and drawn by Pillow with
the Raqm layout engine, right-to-left runs with ``direction="rtl"``. Words are never broken and text is never cut:
text that does not fit is reported (``None``) so the caller can refuse it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import ImageDraw

from generators.template_bidi import embedding_levels, paragraph_level, visual_order
from generators.template_fonts import Face, Fonts, Ink, assign_faces

RGB = tuple[int, int, int]

_NO_START = set("、。，．・：；？！ー）」』】〉》〕］｝〗〙〟’”"  # closing marks, small kana, iteration marks
                "ゝゞヽヾぁぃぅぇぉっゃゅょゎゕゖァィゥェォッャュョヮヵヶ々〻‐゠–〜～!%),.:;?]}")
_NO_END = set("（「『【〈《〔［｛〖〘〝‘“([{")


@dataclass(frozen=True)
class Box:
    """A rectangle on the canvas: top-left corner and size in pixels."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Run:
    """Part of a line in one face and one direction, and where its drawing origin (left baseline) lies."""

    text: str
    face: Face
    direction: str  # "ltr" | "rtl"
    origin: tuple[int, int]


@dataclass(frozen=True)
class TextBlock:
    """Wrapped lines (logical order) at one font size, the runs that draw them, and the ink box of them all."""

    size: int
    lines: tuple[str, ...]
    origins: tuple[tuple[int, int], ...]  # each line's left baseline
    ink: Ink  # left, top, right, bottom (right and bottom exclusive)
    runs: tuple[Run, ...] = ()
    direction: str = "ltr"  # the paragraph's direction


def is_wide(char: str) -> bool:
    """Han, kana and CJK punctuation: scripts written without spaces, so a line may break between characters."""
    code = ord(char)
    return (0x2E80 <= code <= 0x303F or 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF
            or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF
            or 0xFF00 <= code <= 0xFF60 or 0x20000 <= code <= 0x3FFFF)


def break_units(text: str) -> list[tuple[int, int]]:
    """The unbreakable pieces of ``text`` as ``(start, end)`` spans: words, and single characters in CJK text."""
    units: list[tuple[int, int]] = []
    start = None
    for i, char in enumerate(text):
        if char == " ":
            if start is not None:
                units.append((start, i))
            start = None
            continue
        if start is None:
            start = i
        elif _breaks_between(text[i - 1], char):
            units.append((start, i))
            start = i
    if start is not None:
        units.append((start, len(text)))
    return units


def _breaks_between(before: str, after: str) -> bool:
    if not (is_wide(before) or is_wide(after)):
        return False
    # Latin words and numbers inside CJK text stay whole (neither side is wide there).
    return not (after in _NO_START or before in _NO_END or unicodedata.category(after).startswith("M"))


class Paragraph:
    """One slot text with its bidi levels and faces resolved once, measured at any size."""

    def __init__(self, text: str, faces: tuple[Face, ...], fonts: Fonts) -> None:
        self.text = text
        self.faces = faces
        self.fonts = fonts
        self.base = paragraph_level(text)
        self.levels = embedding_levels(text, self.base)
        assigned = assign_faces(text, faces)
        self.face_of = [f or faces[0] for f in assigned]  # callers refuse uncovered text before laying it out
        self.pitch = max(f.pitch for f in dict.fromkeys(self.face_of)) if text else faces[0].pitch

    def runs(self, start: int, end: int) -> list[tuple[str, Face, str]]:
        """The line ``text[start:end]`` as runs of one level and face, in visual order (left to right)."""
        pieces: list[tuple[int, int]] = []
        for i in range(start, end):
            same = pieces and (self.levels[i], self.face_of[i]) == (self.levels[i - 1], self.face_of[i - 1])
            if same:
                pieces[-1] = (pieces[-1][0], i + 1)
            else:
                pieces.append((i, i + 1))
        order = visual_order([self.levels[a] for a, _ in pieces])
        return [(self.text[pieces[k][0]:pieces[k][1]], self.face_of[pieces[k][0]],
                 "rtl" if self.levels[pieces[k][0]] % 2 else "ltr") for k in order]

    def line(self, start: int, end: int, size: int) -> tuple[list[tuple[str, Face, str, int]], Ink]:
        """Runs with their pen offsets, and the line's ink box, for the line drawn at the origin."""
        placed = []
        pen = 0.0
        left = top = 1 << 30
        right = bottom = -(1 << 30)
        runs = self.runs(start, end)
        for i, (text, face, direction) in enumerate(runs):
            x = round(pen)
            a, b, c, d = self.fonts.ink(face, size, text, direction)
            left, top, right, bottom = min(left, a + x), min(top, b), max(right, c + x), max(bottom, d)
            placed.append((text, face, direction, x))
            if i + 1 < len(runs):  # only a following run needs the advance
                pen += self.fonts.length(face, size, text, direction)
        return placed, (left, top, right, bottom)

    def width(self, start: int, end: int, size: int) -> int:
        _, (left, _, right, _) = self.line(start, end, size)
        return right - left


def fit_text(text: str, box: Box, *, max_lines: int, max_size: int, min_size: int, align: str,
             faces: tuple[Face, ...], fonts: Fonts) -> TextBlock | None:
    """Lay ``text`` out in ``box`` at the largest size from ``max_size`` down to ``min_size`` that fits.

    Fitting means at most ``max_lines`` greedily wrapped lines whose ink boxes, as FreeType reports them (never
    smaller than the drawn pixels), lie inside the box; the block is centred vertically. ``align`` is left, center,
    right, or start/end (left/right for left-to-right text, right/left for right-to-left text). Returns None when
    even ``min_size`` does not fit.

    Whether text fits shrinks with the size (glyph widths scale with it), so the size is found by bisection: a
    handful of trial layouts instead of one per size. Any block returned was laid out and checked at its size.
    """
    paragraph = Paragraph(text, faces, fonts)
    units = break_units(text)
    best = _layout_at(paragraph, units, box, max_size, max_lines, align)
    if best is not None:  # most texts fit at the largest size: one trial
        return best
    best = _layout_at(paragraph, units, box, min_size, max_lines, align)
    low, high = min_size + 1, max_size - 1
    while best is not None and low <= high:
        middle = (low + high) // 2
        block = _layout_at(paragraph, units, box, middle, max_lines, align)
        if block is None:
            high = middle - 1
        else:
            best, low = block, middle + 1
    return best


def _layout_at(paragraph: Paragraph, units: Sequence[tuple[int, int]], box: Box, size: int, max_lines: int,
               align: str) -> TextBlock | None:
    """The text block at one font size, or None if it does not fit the box there."""
    spans = _wrap(paragraph, units, size, box.w, max_lines)
    if spans is None:
        return None
    fonts, primary = paragraph.fonts, paragraph.faces[0]
    pitch = round(size * paragraph.pitch)
    lines = [paragraph.line(a, b, size) for a, b in spans]
    # The nominal extent (cap height to descent) keeps the baseline steady whatever letters a text has.
    top = min(fonts.ink(primary, size, "H", "ltr")[1], *(ink[1] + i * pitch for i, (_, ink) in enumerate(lines)))
    descent = fonts.font(primary, size).getmetrics()[1]
    bottom = max((len(lines) - 1) * pitch + descent, *(ink[3] + i * pitch for i, (_, ink) in enumerate(lines)))
    if bottom - top > box.h:
        return None
    baseline = box.y + (box.h - (bottom - top)) // 2 - top
    side = {"start": "right" if paragraph.base else "left", "end": "left" if paragraph.base else "right"}
    align = side.get(align, align)
    origins: list[tuple[int, int]] = []
    runs: list[Run] = []
    for i, (placed, (left, _, right, _)) in enumerate(lines):
        offset = {"left": 0, "center": (box.w - (right - left)) // 2, "right": box.w - (right - left)}[align]
        origin = (box.x + offset - left, baseline + i * pitch)
        origins.append(origin)
        runs.extend(Run(text, face, direction, (origin[0] + x, origin[1])) for text, face, direction, x in placed)
    ink_left = min(o[0] + ink[0] for o, (_, ink) in zip(origins, lines, strict=True))
    ink_right = max(o[0] + ink[2] for o, (_, ink) in zip(origins, lines, strict=True))
    return TextBlock(size, tuple(paragraph.text[a:b] for a, b in spans), tuple(origins),
                     (ink_left, baseline + top, ink_right, baseline + bottom), tuple(runs),
                     "rtl" if paragraph.base else "ltr")


def _wrap(paragraph: Paragraph, units: Sequence[tuple[int, int]], size: int, width: int,
          max_lines: int) -> list[tuple[int, int]] | None:
    """Greedy wrap to ``width`` pixels as line spans; None if a unit alone is too wide or too many lines are needed."""
    lines: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for start, end in units:
        if current is not None and paragraph.width(current[0], end, size) <= width:
            current = (current[0], end)
            continue
        if paragraph.width(start, end, size) > width or (current is not None and len(lines) + 1 >= max_lines):
            return None
        if current is not None:
            lines.append(current)
        current = (start, end)
    if current is not None:
        lines.append(current)
    return lines or None


def draw_text(draw: ImageDraw.ImageDraw, block: TextBlock, colour: RGB, fonts: Fonts) -> None:
    for run in block.runs:
        draw.text(run.origin, run.text, font=fonts.font(run.face, block.size), fill=colour, anchor="ls",
                  direction=fonts.direction(run.direction))
