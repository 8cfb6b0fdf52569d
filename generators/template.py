"""The template generator: localized campaign banners composited with Pillow from JSON templates.

A template fixes the canvas, a background, an optional vector logo mark and named text slots; a request supplies
only the slot texts. Texts are auto-fitted (the largest font size at which they wrap into their slot) and refused
when they do not fit, so a banner never overflows and never silently loses words. Nothing is downloaded and no
binary asset is needed: the font is the one embedded in Pillow (see :mod:`generators.template_layout`).

Template file format (unknown keys are errors, so a typo cannot silently fall back to a default)::

    {"id": "spring-sale", "title": "Spring sale banner", "width": 1024, "height": 512,
     "background": {"top": "#fde68a", "bottom": "#f472b6"},          # or {"colour": "#e0f2fe"} for a solid fill
     "logo": {"shape": "circle", "x": 824, "y": 56, "size": 136,     # shape: circle | rounded_square
              "colour": "#111827", "text": "MG", "text_colour": "#ffffff"},            # logo is optional
     "slots": [{"name": "headline", "box": [64, 96, 640, 160], "max_size": 72, "min_size": 32,
                "colour": "#1f2937", "align": "left", "max_lines": 2, "required": true, "max_chars": 60},
               {"name": "cta", "box": [64, 384, 400, 64], "max_size": 32, "min_size": 18, "colour": "#ffffff",
                "button": "#111827", "required": true, "max_chars": 24}]}

Slot defaults: ``align`` left (left | center | right), ``max_lines`` 1, ``required`` false, ``max_chars`` 120,
no ``button``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from gateway.errors import InvalidInput
from generators.base import GeneratedImage, GenerationSpec
from generators.template_layout import (
    Background,
    Box,
    FontLoader,
    Logo,
    Slot,
    TextBlock,
    fit_slot,
    font_loader,
    logo_text,
    missing_glyphs,
    render_banner,
)

log = logging.getLogger(__name__)

# Bump whenever the compositor would draw any template differently: it is hashed into every image's revision.
COMPOSITOR_VERSION = "mediagate-template-compositor-1"


@dataclass(frozen=True)
class Template:
    """A banner layout loaded from a template file: the canvas, its background, an optional logo and text slots."""

    id: str
    title: str
    width: int
    height: int
    background: Background
    slots: tuple[Slot, ...]
    logo: Logo | None = None

    def to_dict(self) -> dict[str, Any]:
        """The template with every default filled in: what the generator's revision hashes."""
        return asdict(self)

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/templates`` shows a client: the canvas and the fields it may fill."""
        return {
            "id": self.id, "title": self.title, "width": self.width, "height": self.height,
            "fields": [{"name": s.name, "required": s.required, "max_chars": s.max_chars} for s in self.slots],
        }

    def validate_fields(self, fields: Mapping[str, Any]) -> dict[str, str]:
        """Check a request's slot texts; return them cleaned (NFC, whitespace runs collapsed to one space, stripped).

        Besides the field rules (``unknown_field``, ``required``, ``non_empty_string``, ``max_chars``) this refuses
        text the font cannot draw (``font_coverage``) and text that does not fit its slot (``text_fits``), so the
        edge answers 422 before the policy runs or anything is generated.
        """
        names = [s.name for s in self.slots]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise InvalidInput(f"fields.{unknown[0]}", "unknown_field",
                               f"template {self.id!r} has no field {unknown[0]!r}; its fields are {', '.join(names)}")
        cleaned: dict[str, str] = {}
        for slot in self.slots:
            if slot.name in fields:
                cleaned[slot.name] = _clean(slot, fields[slot.name])
            elif slot.required:
                raise InvalidInput(f"fields.{slot.name}", "required",
                                   f"template {self.id!r} requires the field {slot.name!r}")
        self.layout(cleaned)
        return cleaned

    def layout(self, fields: Mapping[str, str], fonts: FontLoader | None = None) -> dict[str, TextBlock]:
        """Fit every given slot text; raises ``InvalidInput`` (rule ``text_fits``) for the first that does not fit."""
        fonts = fonts or font_loader()
        blocks: dict[str, TextBlock] = {}
        for slot in self.slots:
            if slot.name not in fields:
                continue
            block = fit_slot(slot, fields[slot.name], fonts)
            if block is None:
                area = slot.text_box()
                lines = "1 line" if slot.max_lines == 1 else f"{slot.max_lines} lines"
                raise InvalidInput(f"fields.{slot.name}", "text_fits", f"text for slot {slot.name!r} does not fit its "
                                   f"{area.w}x{area.h} box in {lines} at {slot.min_size}px or larger")
            blocks[slot.name] = block
        return blocks

    def render(self, fields: Mapping[str, str], seed: int) -> Image.Image:
        """Draw the banner for validated ``fields`` (absent slots stay empty); same fields and seed, same pixels."""
        fonts = font_loader()
        return render_banner((self.width, self.height), self.background, self.logo, self.slots,
                             self.layout(fields, fonts), seed, fonts)


def _clean(slot: Slot, value: Any) -> str:
    where = f"fields.{slot.name}"
    text = " ".join(unicodedata.normalize("NFC", value).split()) if isinstance(value, str) else ""
    if not text:
        raise InvalidInput(where, "non_empty_string", f"field {slot.name!r} must be a non-empty string but is "
                           f"{value!r}"[:200])
    if len(text) > slot.max_chars:
        raise InvalidInput(where, "max_chars",
                           f"field {slot.name!r} has {len(text)} characters, more than its maximum of {slot.max_chars}")
    missing = missing_glyphs(text)
    if missing:
        # Empty boxes in a published banner would be a silent failure: refuse, naming the characters.
        chars = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in missing[:5])
        raise InvalidInput(where, "font_coverage", f"text for slot {slot.name!r} uses characters the template font "
                           f"cannot draw: {chars}; it covers basic Latin (printable ASCII) only")
    return text


ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
SLOT_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
COLOUR_RE = re.compile(r"#[0-9a-fA-F]{6}")
MAX_SIDE = 4096
_REQUIRED: Any = object()


def parse_template(data: Any) -> Template:
    """Build a template from a file's parsed JSON; a ``ValueError`` names the key path and the rule broken."""
    top = _Obj(data, "")
    tid = top.string("id", pattern=ID_RE, rule="lower-case letters, digits and '-' (at most 64)")
    title = top.string("title", rule="a non-empty string of at most 200 characters", max_len=200)
    width, height = top.integer("width", 16, MAX_SIDE), top.integer("height", 16, MAX_SIDE)
    background = _background(_Obj(top.get("background"), "background"))
    logo_data = top.get("logo", None)
    logo = None if logo_data is None else _logo(_Obj(logo_data, "logo"), width, height)
    slots_data = top.get("slots")
    if not isinstance(slots_data, list) or not slots_data:
        raise ValueError(f"slots must be a non-empty list of slot objects but is {slots_data!r}"[:200])
    slots = tuple(_slot(_Obj(s, f"slots[{i}]"), width, height) for i, s in enumerate(slots_data))
    names = [s.name for s in slots]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"slot name {name!r} is used more than once")
    top.done()
    return Template(tid, title, width, height, background, slots, logo)


def _background(obj: _Obj) -> Background:
    if "colour" in obj.data:
        if obj.data.keys() & {"top", "bottom"}:
            raise ValueError("background takes either `colour` (solid) or `top` and `bottom` (gradient), not both")
        colour = obj.colour("colour")
        background = Background(colour, colour)
    else:
        background = Background(obj.colour("top"), obj.colour("bottom"))
    obj.done()
    return background


def _slot(obj: _Obj, width: int, height: int) -> Slot:
    name = obj.string("name", pattern=SLOT_NAME_RE, rule="a lower-case identifier of at most 32 characters")
    obj.path = f"slots.{name}"
    raw = obj.get("box")
    if not (isinstance(raw, list) and len(raw) == 4 and all(type(v) is int for v in raw)):
        raise ValueError(f"{obj.path}.box must be [x, y, w, h] in whole pixels but is {raw!r}"[:200])
    box = Box(*raw)
    if box.x < 0 or box.y < 0 or box.w < 1 or box.h < 1 or box.x + box.w > width or box.y + box.h > height:
        raise ValueError(f"{obj.path}.box {raw} does not lie inside the {width}x{height} canvas")
    max_size = obj.integer("max_size", 6, 512)
    slot = Slot(
        name=name, box=box, max_size=max_size, min_size=obj.integer("min_size", 6, max_size),
        colour=obj.colour("colour"), align=obj.string("align", choices=("left", "center", "right"), default="left"),
        max_lines=obj.integer("max_lines", 1, 20, default=1), required=obj.flag("required", default=False),
        max_chars=obj.integer("max_chars", 1, 1000, default=120), button=obj.colour("button", default=None),
    )
    obj.done()
    area = slot.text_box()
    if area.w < 1 or area.h < 1 or fit_slot(slot, "Hg", font_loader()) is None:
        raise ValueError(f"{obj.path}: its text area ({area.w}x{area.h}) cannot hold one line at min_size "
                         f"{slot.min_size}px")
    return slot


def _logo(obj: _Obj, width: int, height: int) -> Logo:
    logo = Logo(
        shape=obj.string("shape", choices=("circle", "rounded_square")), x=obj.integer("x", 0, width - 1),
        y=obj.integer("y", 0, height - 1), size=obj.integer("size", 16, min(width, height)),
        colour=obj.colour("colour"), text=obj.string("text", rule="1 to 3 characters", max_len=3),
        text_colour=obj.colour("text_colour", default="#ffffff"),
    )
    obj.done()
    if logo.x + logo.size > width or logo.y + logo.size > height:
        raise ValueError(f"logo ({logo.size}px at {logo.x},{logo.y}) does not lie inside the {width}x{height} canvas")
    if missing_glyphs(logo.text) or logo_text(logo, font_loader()) is None:
        raise ValueError(f"logo.text {logo.text!r} cannot be drawn in a {logo.size}px mark with the template font")
    return logo


class _Obj:
    """One JSON object of a template file, read key by key; errors name the key's path (``slots.cta.box``)."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{path or 'the template'} must be a JSON object but is {data!r}"[:200])
        self.data: dict[str, Any] = data
        self.path = path
        self._read: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any = _REQUIRED) -> Any:
        self._read.add(key)
        if key in self.data:
            return self.data[key]
        if default is _REQUIRED:
            raise ValueError(f"{self.where(key)} is required")
        return default

    def integer(self, key: str, lo: int, hi: int, default: Any = _REQUIRED) -> int:
        value = self.get(key, default)
        if type(value) is not int or not lo <= value <= hi:
            raise ValueError(f"{self.where(key)} must be an integer from {lo} to {hi} but is {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise ValueError(f"{self.where(key)} must be true or false but is {value!r}")
        return value

    def string(self, key: str, *, pattern: re.Pattern[str] | None = None, choices: tuple[str, ...] = (),
               rule: str = "", max_len: int = 10_000, default: Any = _REQUIRED) -> str:
        value = self.get(key, default)
        ok = isinstance(value, str) and 0 < len(value.strip()) and len(value) <= max_len
        ok = ok and (pattern is None or pattern.fullmatch(value) is not None) and (not choices or value in choices)
        if not ok:
            rule = rule or (" | ".join(choices) if choices else "a non-empty string")
            raise ValueError(f"{self.where(key)} must be {rule} but is {value!r}"[:300])
        return str(value)

    def colour(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self.get(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str) or not COLOUR_RE.fullmatch(value):
            raise ValueError(f"{self.where(key)} must be a colour '#rrggbb' but is {value!r}")
        return value.lower()

    def done(self) -> None:
        """Refuse keys nobody read: a misspelt optional key would otherwise fall back to its default unnoticed."""
        unknown = sorted(self.data.keys() - self._read)
        if unknown:
            raise ValueError(f"{self.where(unknown[0])} is not a known key (known: {', '.join(sorted(self._read))})")


class TemplateLibrary:
    """Every ``*.json`` template in ``dirs``; a template in a later directory replaces one with the same id.

    A directory that does not exist is skipped (an operator's template directory is optional). A malformed file
    raises ``ValueError`` naming it: a half-loaded library would silently change what clients can render.
    """

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = [Path(d) for d in dirs]
        self._templates: dict[str, Template] = {}
        for directory in self.dirs:
            if not directory.exists():
                log.info("template directory %s does not exist; skipped", directory)
                continue
            if not directory.is_dir():
                raise ValueError(f"template directory {str(directory)!r} is not a directory")
            here: dict[str, Path] = {}
            for path in sorted(directory.glob("*.json")):
                template = load_template_file(path)
                if template.id in here:
                    raise ValueError(f"template file {str(path)!r}: id {template.id!r} is also used by "
                                     f"{str(here[template.id])!r} in the same directory")
                here[template.id] = path
                if template.id in self._templates:
                    log.info("template %r from %s overrides an earlier one", template.id, path)
                self._templates[template.id] = template

    @staticmethod
    def default_dir() -> Path:
        """The demo templates shipped inside the package."""
        return Path(__file__).resolve().parent / "templates"

    def list(self) -> list[Template]:
        return [self._templates[k] for k in sorted(self._templates)]

    def get(self, template_id: str) -> Template | None:
        return self._templates.get(template_id)


def load_template_file(path: Path) -> Template:
    """Read and check one template file; every problem is a ``ValueError`` whose message starts with the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
        return parse_template(data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"template file {str(path)!r}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                         f"{exc.msg}") from exc
    except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError too
        raise ValueError(f"template file {str(path)!r}: {exc}") from exc


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON allows repeated keys and keeps the last; in a template that is almost surely a mistake."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen.add(key)
    return dict(pairs)


def library_revision(library: TemplateLibrary) -> str:
    """``tpl-`` and 16 hex digits of SHA-256 over the compositor version and every template (defaults filled in)."""
    canonical = json.dumps([t.to_dict() for t in library.list()], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    digest = hashlib.sha256(COMPOSITOR_VERSION.encode("utf-8") + b"\0" + canonical.encode("utf-8"))
    return "tpl-" + digest.hexdigest()[:16]


class TemplateGenerator:
    """A :class:`generators.base.Generator` that renders banners from a :class:`TemplateLibrary`.

    The output size is the template's canvas (``spec.width`` and ``spec.height`` are ignored). Image ``i`` is drawn
    with seed ``spec.seed + i``, which moves only a faint background detail.
    """

    name = "template"

    def __init__(self, library: TemplateLibrary) -> None:
        self.library = library
        self.revision = library_revision(library)

    def generate(self, spec: GenerationSpec) -> list[GeneratedImage]:
        """Validate ``spec.template`` and ``spec.fields`` and render ``spec.n`` images of the template."""
        if spec.template is None:
            raise InvalidInput("template", "required", "the template generator needs a `template` id")
        template = self.library.get(spec.template)
        if template is None:
            raise InvalidInput("template", "known_template", f"unknown template {spec.template!r}")
        if spec.n < 1:
            raise InvalidInput("n", "n_range", f"`n` has to be at least 1 but is {spec.n}")
        fields = template.validate_fields(spec.fields)
        return [
            GeneratedImage(image=template.render(fields, spec.seed + i), index=i, seed=spec.seed + i,
                           model=self.name, model_revision=self.revision)
            for i in range(spec.n)
        ]
