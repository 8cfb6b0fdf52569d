"""Template generator: a Pillow banner compositor for localized campaigns.

Templates are JSON files (a canvas, a background, text slots and a vector logo mark). Text is word-wrapped and
auto-fitted: it starts at the slot's largest font size and shrinks to the smallest; text that still does not fit
is an error naming the slot — never an overflow, never a silent truncation.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from gateway.errors import InvalidInput
from generators.base import GeneratedImage, GenerationSpec

COMPOSITOR_VERSION = "1"
Colour = tuple[int, int, int]
FontT = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _colour(value: Any, where: str) -> Colour:
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        try:
            return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))
        except ValueError:
            pass
    raise ValueError(f"{where}: colour must be '#rrggbb', got {value!r}")


@dataclass(frozen=True)
class Slot:
    name: str
    box: tuple[int, int, int, int]  # x, y, w, h
    max_size: int
    min_size: int
    colour: Colour
    align: str = "left"
    max_lines: int = 1
    required: bool = False
    max_chars: int = 120
    button: Colour | None = None  # a call-to-action slot is drawn on a rounded button of this colour


@dataclass(frozen=True)
class Template:
    id: str
    title: str
    width: int
    height: int
    background: tuple[Colour, Colour]  # top and bottom of a vertical gradient (equal for a solid fill)
    slots: tuple[Slot, ...]
    logo: Mapping[str, Any] | None
    source: Mapping[str, Any]

    def validate_fields(self, fields: Mapping[str, Any]) -> dict[str, str]:
        """Check client fields against the slots; each failure names ``fields.<slot>`` and the rule."""
        names = {s.name for s in self.slots}
        for key in fields:
            if key not in names:
                raise InvalidInput(f"fields.{key}", "unknown_field",
                                   f"template {self.id!r} has no field {key!r}; fields are {sorted(names)}")
        cleaned: dict[str, str] = {}
        for slot in self.slots:
            value = fields.get(slot.name)
            if value is None:
                if slot.required:
                    raise InvalidInput(f"fields.{slot.name}", "required",
                                       f"template {self.id!r} requires field {slot.name!r}")
                continue
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(f"fields.{slot.name}", "non_empty_string",
                                   f"field {slot.name!r} must be a non-empty string")
            if len(value) > slot.max_chars:
                raise InvalidInput(f"fields.{slot.name}", "max_chars",
                                   f"field {slot.name!r} has {len(value)} characters; the limit is {slot.max_chars}")
            cleaned[slot.name] = value.strip()
        return cleaned

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "width": self.width, "height": self.height,
            "fields": [{"name": s.name, "required": s.required, "max_chars": s.max_chars} for s in self.slots],
        }


def parse_template(data: Mapping[str, Any], where: str) -> Template:
    try:
        bg = data["background"]
        top = _colour(bg["top"] if isinstance(bg, Mapping) else bg, f"{where}: background")
        bottom = _colour(bg.get("bottom", bg["top"]) if isinstance(bg, Mapping) else bg, f"{where}: background")
        slots = tuple(
            Slot(
                name=s["name"], box=tuple(int(v) for v in s["box"]),  # type: ignore[arg-type]
                max_size=int(s["max_size"]), min_size=int(s["min_size"]),
                colour=_colour(s.get("colour", "#000000"), f"{where}: slot {s['name']}"),
                align=s.get("align", "left"), max_lines=int(s.get("max_lines", 1)),
                required=bool(s.get("required", False)), max_chars=int(s.get("max_chars", 120)),
                button=_colour(s["button"], f"{where}: slot {s['name']}") if "button" in s else None,
            )
            for s in data["slots"]
        )
        template = Template(str(data["id"]), str(data.get("title", data["id"])), int(data["width"]),
                            int(data["height"]), (top, bottom), slots, data.get("logo"), dict(data))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{where}: malformed template, missing or wrong-typed {exc}") from exc
    for slot in template.slots:
        sizes_ok = 0 < slot.min_size <= slot.max_size
        if len(slot.box) != 4 or slot.align not in ("left", "center", "right") or not sizes_ok:
            raise ValueError(f"{where}: slot {slot.name!r} needs a 4-number box, align left|center|right and "
                             f"0 < min_size <= max_size")
    return template


class TemplateLibrary:
    """Templates from several directories; a later directory overrides an earlier one's template of the same id."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self._templates: dict[str, Template] = {}
        for directory in dirs:
            for path in sorted(Path(directory).glob("*.json")) if Path(directory).is_dir() else []:
                try:
                    data = json.loads(path.read_text())
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
                template = parse_template(data, str(path))
                self._templates[template.id] = template

    @staticmethod
    def default_dir() -> Path:
        return Path(__file__).parent / "templates"

    def list(self) -> list[Template]:
        return [self._templates[k] for k in sorted(self._templates)]

    def get(self, template_id: str) -> Template | None:
        return self._templates.get(template_id)


def _wrap(text: str, font: FontT, width: int, max_lines: int) -> list[str] | None:
    """Greedy word wrap; None when the text needs more lines or a word is wider than the box."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if font.getlength(word) > width:
            return None
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= width:
            current = candidate
        else:
            lines.append(current)
            current = word
    lines.append(current)
    return lines if len(lines) <= max_lines else None


_PROBE = ImageFont.load_default(size=24)
_NOTDEF = _PROBE.getmask("\U0010fffd")
_coverage: dict[str, bool] = {}


def _covered(ch: str) -> bool:
    """A character the font has no glyph for renders as the .notdef box: tell the two apart once per character."""
    if ch not in _coverage:
        mask = _PROBE.getmask(ch)
        _coverage[ch] = ch.isspace() or mask.size != _NOTDEF.size or bytes(mask) != bytes(_NOTDEF)
    return _coverage[ch]


def fit_text(text: str, slot: Slot) -> tuple[FontT, list[str]]:
    missing = sorted({ch for ch in text if not _covered(ch)})
    if missing:
        # Tofu boxes in a published banner are a silent failure: refuse instead, naming the characters.
        raise InvalidInput(f"fields.{slot.name}", "glyph_coverage",
                           f"the template font has no glyphs for {''.join(missing)!r} in field {slot.name!r}")
    _, _, width, height = slot.box
    pad = 12 if slot.button else 0
    for size in range(slot.max_size, slot.min_size - 1, -1):
        font = ImageFont.load_default(size=size)
        lines = _wrap(text, font, width - 2 * pad, slot.max_lines)
        if lines is not None and len(lines) * size * 1.2 <= height:
            return font, lines
    raise InvalidInput(
        f"fields.{slot.name}", "text_fits",
        f"text for slot {slot.name!r} does not fit its {width}x{height} box in {slot.max_lines} line(s) at "
        f"{slot.min_size}px or larger",
    )


class TemplateGenerator:
    """``Generator`` for template requests. The revision covers the compositor and every loaded template."""

    name = "template"

    def __init__(self, library: TemplateLibrary) -> None:
        self.library = library
        digest = hashlib.sha256(COMPOSITOR_VERSION.encode())
        for template in library.list():
            digest.update(json.dumps(template.source, sort_keys=True).encode())
        self.revision = "tpl-" + digest.hexdigest()[:16]

    def generate(self, spec: GenerationSpec) -> list[GeneratedImage]:
        template = self.library.get(spec.template or "")
        if template is None:
            raise InvalidInput("template", "known_template", f"unknown template {spec.template!r}")
        fields = template.validate_fields(spec.fields)
        fitted = {s.name: fit_text(fields[s.name], s) for s in template.slots if s.name in fields}
        return [
            GeneratedImage(self._render(template, fitted, spec.seed + i), i, spec.seed + i, self.name, self.revision)
            for i in range(spec.n)
        ]

    def _render(self, template: Template, fitted: Mapping[str, tuple[FontT, list[str]]], seed: int) -> Image.Image:
        (r0, g0, b0), (r1, g1, b1) = template.background
        # The seed varies only a subtle detail (where the gradient starts), so variants stay on-brand.
        offset = random.Random(seed).uniform(-0.15, 0.15)
        column = Image.new("RGB", (1, template.height))
        for y in range(template.height):
            t = min(max(y / max(template.height - 1, 1) + offset, 0.0), 1.0)
            column.putpixel((0, y), (round(r0 + (r1 - r0) * t), round(g0 + (g1 - g0) * t), round(b0 + (b1 - b0) * t)))
        image = column.resize((template.width, template.height), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(image)
        for slot in template.slots:
            if slot.name in fitted:
                self._draw_slot(draw, slot, *fitted[slot.name])
        if template.logo:
            self._draw_logo(draw, template.logo)
        return image

    @staticmethod
    def _draw_slot(draw: ImageDraw.ImageDraw, slot: Slot, font: FontT, lines: list[str]) -> None:
        x, y, width, height = slot.box
        size = int(getattr(font, "size", slot.min_size))
        line_h = round(size * 1.2)
        if slot.button is not None:
            text_w = max(font.getlength(line) for line in lines)
            bw, bh = min(width, int(text_w) + 24), min(height, line_h * len(lines) + 12)
            bx = x + {"left": 0, "center": (width - bw) // 2, "right": width - bw}[slot.align]
            draw.rounded_rectangle((bx, y, bx + bw, y + bh), radius=bh // 3, fill=slot.button)
            x, width, y = bx + 12, bw - 24, y + 6
        for i, line in enumerate(lines):
            lw = font.getlength(line)
            lx = x + {"left": 0, "center": (width - lw) / 2, "right": width - lw}[slot.align]
            draw.text((lx, y + i * line_h), line, font=font, fill=slot.colour)

    @staticmethod
    def _draw_logo(draw: ImageDraw.ImageDraw, logo: Mapping[str, Any]) -> None:
        x, y, size = int(logo["x"]), int(logo["y"]), int(logo["size"])
        fill = _colour(logo.get("colour", "#000000"), "logo")
        if logo.get("shape", "circle") == "circle":
            draw.ellipse((x, y, x + size, y + size), fill=fill)
        else:
            draw.rounded_rectangle((x, y, x + size, y + size), radius=size // 5, fill=fill)
        font = ImageFont.load_default(size=max(size // 3, 8))
        draw.text((x + size / 2, y + size / 2), str(logo.get("text", ""))[:3], font=font,
                  fill=_colour(logo.get("text_colour", "#ffffff"), "logo"), anchor="mm")
