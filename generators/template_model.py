"""A loaded banner template: its field and image rules, text layout, and rendering (see :mod:`generators.template`)."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

from gateway.errors import InvalidInput
from generators.template_fonts import Fonts, chain, missing_glyphs, needs_shaping
from generators.template_layout import (
    Background,
    ImageSlot,
    Layer,
    Logo,
    Slot,
    TextBlock,
    draw_slots,
    fit_image,
    fit_slot,
    render_base,
)

FittedImages = list[tuple[Image.Image, tuple[int, int]]]
SCRIPTS = "Latin, Cyrillic, Greek, Devanagari, Arabic, Hebrew, Chinese, Japanese and Korean"


@dataclass(frozen=True)
class Template:
    """A banner layout loaded from a template file: canvas, background, image slots, shape layers, an optional logo
    and text slots."""

    id: str
    title: str
    width: int
    height: int
    background: Background
    slots: tuple[Slot, ...]
    logo: Logo | None = None
    images: tuple[ImageSlot, ...] = ()
    layers: tuple[Layer, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The template with every default filled in: what the generator's revision hashes."""
        return asdict(self)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/templates`` shows a client: the canvas, the fields it may fill and the images it takes."""
        return {
            "id": self.id, "title": self.title, "width": self.width, "height": self.height,
            "fields": [{"name": s.name, "required": s.required, "max_chars": s.max_chars} for s in self.slots],
            "images": [{"name": s.name, "required": s.required, "width": s.box.w, "height": s.box.h, "fit": s.fit}
                       for s in self.images],
        }

    def validate_fields(self, fields: Mapping[str, Any], locale: str | None = None) -> dict[str, str]:
        """Check a request's slot texts; return them cleaned (NFC, whitespace runs collapsed to one space, stripped).

        Besides the field rules (``unknown_field``, ``required``, ``non_empty_string``, ``max_chars``) this refuses
        text no packaged font can draw (``font_coverage``), right-to-left or shaped text on a Pillow without Raqm
        (``text_shaping``) and text that does not fit its slot (``text_fits``), so the edge answers 422 before the
        policy runs or anything is generated. ``locale`` picks the CJK glyph forms the text is measured in.
        """
        return self.check_fields(fields, locale, Fonts())[0]

    def check_fields(self, fields: Mapping[str, Any], locale: str | None,
                     fonts: Fonts) -> tuple[dict[str, str], dict[str, TextBlock]]:
        """:meth:`validate_fields`, also returning the laid-out text blocks (so that rendering need not redo them)."""
        names = [s.name for s in self.slots]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            is_image = unknown[0] in {s.name for s in self.images}
            hint = " (an image slot: images are passed separately)" if is_image else ""
            raise InvalidInput(f"fields.{unknown[0]}", "unknown_field", f"template {self.id!r} has no field "
                               f"{unknown[0]!r}{hint}; its fields are {', '.join(names)}")
        cleaned: dict[str, str] = {}
        for slot in self.slots:
            if slot.name in fields:
                cleaned[slot.name] = _clean(slot, fields[slot.name], locale, fonts)
            elif slot.required:
                raise InvalidInput(f"fields.{slot.name}", "required",
                                   f"template {self.id!r} requires the field {slot.name!r}")
        return cleaned, self.layout(cleaned, fonts, locale)

    def layout(self, fields: Mapping[str, str], fonts: Fonts | None = None,
               locale: str | None = None) -> dict[str, TextBlock]:
        """Fit every given slot text; raises ``InvalidInput`` (rule ``text_fits``) for the first that does not fit."""
        fonts = fonts or Fonts()
        blocks: dict[str, TextBlock] = {}
        for slot in self.slots:
            if slot.name not in fields:
                continue
            block = fit_slot(slot, fields[slot.name], fonts, locale)
            if block is None:
                area = slot.text_box()
                lines = "1 line" if slot.max_lines == 1 else f"{slot.max_lines} lines"
                raise InvalidInput(f"fields.{slot.name}", "text_fits", f"text for slot {slot.name!r} does not fit its "
                                   f"{area.w}x{area.h} box in {lines} at {slot.min_size}px or larger")
            blocks[slot.name] = block
        return blocks

    def fit_images(self, images: Mapping[str, Any] | None) -> FittedImages:
        """Check the images handed in for the image slots and scale each to its box.

        Refuses (``InvalidInput`` naming ``images.<slot>``) a name that is no image slot (``unknown_image_slot``),
        something that is not a PIL image (``image_type``) and a required slot without an image (``required``).
        """
        images = images or {}
        names = {s.name for s in self.images}
        unknown = sorted(set(images) - names)
        if unknown:
            raise InvalidInput(f"images.{unknown[0]}", "unknown_image_slot", f"template {self.id!r} has no image "
                               f"slot {unknown[0]!r}; its image slots are {', '.join(sorted(names)) or 'none'}")
        fitted: FittedImages = []
        for slot in self.images:
            image = images.get(slot.name)
            if image is None:
                if slot.required:
                    raise InvalidInput(f"images.{slot.name}", "required",
                                       f"template {self.id!r} requires an image for slot {slot.name!r}")
                continue
            if not isinstance(image, Image.Image) or image.width < 1 or image.height < 1:
                raise InvalidInput(f"images.{slot.name}", "image_type", f"the image for slot {slot.name!r} must be a "
                                   f"non-empty PIL image but is {type(image).__name__}")
            fitted.append(fit_image(image, slot.box, slot.fit))
        return fitted

    def render_base(self, seed: int, fitted: FittedImages, fonts: Fonts) -> Image.Image:
        """The banner without its text slots: what every locale of a batch shares."""
        return render_base((self.width, self.height), self.background, fitted, self.layers, self.logo, seed, fonts)

    def render(self, fields: Mapping[str, str], seed: int, images: Mapping[str, Any] | None = None,
               locale: str | None = None) -> Image.Image:
        """Draw the banner for validated ``fields`` (absent slots stay empty) and ``images`` (slot name -> PIL
        image); same input, same pixels."""
        fonts = Fonts()
        image = self.render_base(seed, self.fit_images(images), fonts)
        draw_slots(image, self.slots, self.layout(fields, fonts, locale), fonts)
        return image


def _clean(slot: Slot, value: Any, locale: str | None, fonts: Fonts) -> str:
    where = f"fields.{slot.name}"
    text = " ".join(unicodedata.normalize("NFC", value).split()) if isinstance(value, str) else ""
    if not text:
        raise InvalidInput(where, "non_empty_string", f"field {slot.name!r} must be a non-empty string but is "
                           f"{value!r}"[:200])
    if len(text) > slot.max_chars:
        raise InvalidInput(where, "max_chars",
                           f"field {slot.name!r} has {len(text)} characters, more than its maximum of {slot.max_chars}")
    missing = missing_glyphs(text, chain(slot.font, locale))
    if missing:
        # Empty boxes in a published banner would be a silent failure: refuse, naming the characters.
        chars = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in missing[:5])
        raise InvalidInput(where, "font_coverage", f"text for slot {slot.name!r} uses characters no packaged font "
                           f"can draw: {chars}; the fonts cover {SCRIPTS}")
    if not fonts.shapes and any(needs_shaping(c) for c in text):
        # Without Raqm, Arabic would be drawn unjoined and backwards: refuse rather than publish it.
        raise InvalidInput(where, "text_shaping", f"text for slot {slot.name!r} needs right-to-left layout or "
                           "shaping, which this Pillow cannot do (it was built without libraqm)")
    return text
