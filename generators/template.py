"""The template generator: localized campaign banners composited with Pillow from JSON template files.

A template fixes the canvas, a background, shape layers, an optional vector logo mark, named text slots and named
image slots; a request supplies the slot texts and, for image slots, the images (a diffusion render in production).
Texts are auto-fitted (the largest font size at which they wrap into their slot) and refused when they do not fit,
so a banner never overflows and never silently loses words. Text is set in fonts that ship as Python packages
(Noto: Latin, Cyrillic, Greek, Devanagari, Arabic, Hebrew, Chinese, Japanese, Korean; see
:mod:`generators.template_fonts`), right-to-left scripts right to left; nothing is downloaded at run time.
:meth:`TemplateGenerator.render_locales` renders one template for many locales in one call.

Template file format (unknown keys are errors, so a typo cannot silently fall back to a default)::

    {"id": "spring-sale", "title": "Spring sale banner", "width": 1024, "height": 512,
     "background": {"top": "#fde68a", "bottom": "#f472b6"},          # or {"colour": "#e0f2fe"} for a solid fill
     "layers": [{"kind": "rect", "box": [0, 640, 1080, 440], "colour": "#0f172a", "opacity": 85, "radius": 0}],
     "logo": {"shape": "circle", "x": 824, "y": 56, "size": 136,     # shape: circle | rounded_square
              "colour": "#111827", "text": "MG", "text_colour": "#ffffff"},            # logo is optional
     "slots": [{"name": "hero", "kind": "image", "box": [0, 0, 1080, 640], "fit": "cover", "required": false},
               {"name": "headline", "box": [64, 96, 640, 160], "max_size": 72, "min_size": 32,
                "colour": "#1f2937", "align": "start", "max_lines": 2, "required": true, "max_chars": 60,
                "font": "sans"},
               {"name": "cta", "box": [64, 384, 400, 64], "max_size": 32, "min_size": 18, "colour": "#ffffff",
                "button": "#111827", "required": true, "max_chars": 24}]}

Boxes are ``[x, y, w, h]`` in whole pixels inside the canvas. Text slot (``"kind": "text"``, the default) defaults:
``align`` left (left | center | right | start | end; start and end follow the text's direction), ``max_lines`` 1,
``required`` false, ``max_chars`` 120, no ``button``, ``font`` sans (sans | serif). Image slot defaults: ``fit``
cover (cover | contain), ``required`` false. Layer defaults: ``opacity`` 100 (percent), ``radius`` 0. Drawing order:
background, image slots, layers, logo, text slots (file order within each), so text always stays on top.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from gateway.errors import InvalidInput
from generators.base import GeneratedImage, GenerationSpec
from generators.template_file import TemplateLibrary, load_template_file, parse_template
from generators.template_fonts import Fonts, fingerprint
from generators.template_layout import TextBlock, draw_slots
from generators.template_model import Template

__all__ = ["COMPOSITOR_VERSION", "LocalizedBanner", "Template", "TemplateGenerator", "TemplateLibrary",
           "library_revision", "load_template_file", "parse_template"]

# Bump whenever the compositor would draw any template differently: it is hashed into every image's revision.
COMPOSITOR_VERSION = "mediagate-template-compositor-2"
LOCALE_RE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,6}")
MAX_LOCALES = 1000


def library_revision(library: TemplateLibrary) -> str:
    """``tpl-`` and 16 hex digits of SHA-256 over the compositor version, the font packages and layout libraries,
    and every template (defaults filled in)."""
    canonical = json.dumps({"fonts": fingerprint(), "templates": [t.to_dict() for t in library.list()]},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(COMPOSITOR_VERSION.encode("utf-8") + b"\0" + canonical.encode("utf-8"))
    return "tpl-" + digest.hexdigest()[:16]


@dataclass(frozen=True)
class LocalizedBanner:
    """One locale's banner from :meth:`TemplateGenerator.render_locales`: the locale, its cleaned texts, the image."""

    locale: str
    fields: Mapping[str, str]
    generated: GeneratedImage


class TemplateGenerator:
    """A :class:`generators.base.Generator` that renders banners from a :class:`TemplateLibrary`.

    The output size is the template's canvas (``spec.width`` and ``spec.height`` are ignored). Image ``i`` is drawn
    with seed ``spec.seed + i``, which moves only a faint background detail.
    """

    name = "template"

    def __init__(self, library: TemplateLibrary) -> None:
        self.library = library
        self.revision = library_revision(library)

    def template(self, template_id: str | None) -> Template:
        """The library's template ``template_id``; ``InvalidInput`` (field ``template``) when there is none."""
        if template_id is None:
            raise InvalidInput("template", "required", "the template generator needs a `template` id")
        template = self.library.get(template_id)
        if template is None:
            raise InvalidInput("template", "known_template", f"unknown template {template_id!r}")
        return template

    def generate(self, spec: GenerationSpec, images: Mapping[str, Image.Image] | None = None
                 ) -> list[GeneratedImage]:
        """Validate ``spec.template``, ``spec.fields`` and ``images`` and render ``spec.n`` images of the template.

        ``images`` maps image slot names to PIL images (e.g. diffusion renders); ``spec.locale`` picks the CJK
        glyph forms. Errors are ``InvalidInput`` naming ``fields.<slot>`` or ``images.<slot>``.
        """
        template = self.template(spec.template)
        if spec.n < 1:
            raise InvalidInput("n", "n_range", f"`n` has to be at least 1 but is {spec.n}")
        fonts = Fonts()
        _, blocks = template.check_fields(spec.fields, spec.locale, fonts)
        fitted = template.fit_images(images)
        return [self._image(template, template.render_base(spec.seed + i, fitted, fonts), blocks, fonts, i,
                            spec.seed + i) for i in range(spec.n)]

    def render_locales(self, template_id: str, locales: Sequence[tuple[str, Mapping[str, Any]]], *,
                       images: Mapping[str, Image.Image] | None = None, seed: int = 0) -> list[LocalizedBanner]:
        """Render ``template_id`` once per ``(locale, fields)`` pair, in order, in one call.

        Every locale's fields are validated (and laid out) before anything is drawn; an ``InvalidInput`` names the
        locale and the slot (field ``locales.<locale>.fields.<slot>``, extension ``locale``). All banners share
        ``seed`` and ``images``, so the background, images, layers and logo are drawn once and copied, and fonts
        are loaded once for the batch; each banner is pixel-identical to ``generate`` with that locale, fields and
        seed. Locale tags are BCP 47 (``de-DE``, ``zh-Hant-TW``), each at most once.
        """
        template = self.template(template_id)
        if not locales:
            raise InvalidInput("locales", "non_empty", "render_locales needs at least one (locale, fields) pair")
        if len(locales) > MAX_LOCALES:
            raise InvalidInput("locales", "max_locales", f"{len(locales)} locales are more than {MAX_LOCALES}")
        fonts = Fonts()
        checked: list[tuple[str, dict[str, str], dict[str, TextBlock]]] = []
        seen: set[str] = set()
        for i, (locale, fields) in enumerate(locales):
            if not isinstance(locale, str) or not LOCALE_RE.fullmatch(locale):
                raise InvalidInput(f"locales[{i}]", "locale_tag", f"locale {locale!r} is not a BCP 47 tag"[:200])
            if locale.lower() in seen:
                raise InvalidInput(f"locales[{i}]", "unique_locale", f"locale {locale!r} is given more than once")
            seen.add(locale.lower())
            try:
                cleaned, blocks = template.check_fields(fields, locale, fonts)
            except InvalidInput as exc:
                raise InvalidInput(f"locales.{locale}.{exc.field}", exc.rule, f"locale {locale!r}: {exc.detail}",
                                   locale=locale) from exc
            checked.append((locale, cleaned, blocks))
        base = template.render_base(seed, template.fit_images(images), fonts)
        return [LocalizedBanner(locale, cleaned, self._image(template, base.copy(), blocks, fonts, i, seed))
                for i, (locale, cleaned, blocks) in enumerate(checked)]

    def _image(self, template: Template, base: Image.Image, blocks: Mapping[str, TextBlock], fonts: Fonts,
               index: int, seed: int) -> GeneratedImage:
        draw_slots(base, template.slots, blocks, fonts)
        return GeneratedImage(image=base, index=index, seed=seed, model=self.name, model_revision=self.revision)
