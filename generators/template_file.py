"""Template files: the strict JSON schema (see :mod:`generators.template` for the format) and the library.

Unknown keys are errors, so a typo cannot silently fall back to a default; every problem is a ``ValueError`` that
names the file and the key path.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from generators.template_fonts import FAMILIES, Fonts, chain, missing_glyphs
from generators.template_layout import Background, Box, ImageSlot, Layer, Logo, Slot, fit_slot, logo_text
from generators.template_model import Template

log = logging.getLogger(__name__)

ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
SLOT_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
COLOUR_RE = re.compile(r"#[0-9a-fA-F]{6}")
MAX_SIDE = 4096
ALIGNS = ("left", "center", "right", "start", "end")
FITS = ("cover", "contain")
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
    layers_data = top.get("layers", [])
    if not isinstance(layers_data, list):
        raise ValueError(f"layers must be a list of layer objects but is {layers_data!r}"[:200])
    layers = tuple(_layer(_Obj(d, f"layers[{i}]"), width, height) for i, d in enumerate(layers_data))
    slots_data = top.get("slots")
    if not isinstance(slots_data, list) or not slots_data:
        raise ValueError(f"slots must be a non-empty list of slot objects but is {slots_data!r}"[:200])
    parsed = [_any_slot(_Obj(s, f"slots[{i}]"), width, height) for i, s in enumerate(slots_data)]
    names = [s.name for s in parsed]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"slot name {name!r} is used more than once")
    slots = tuple(s for s in parsed if isinstance(s, Slot))
    if not slots:
        raise ValueError("slots must hold at least one text slot")
    top.done()
    return Template(tid, title, width, height, background, slots, logo,
                    tuple(s for s in parsed if isinstance(s, ImageSlot)), layers)


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


def _box(obj: _Obj, width: int, height: int) -> Box:
    raw = obj.get("box")
    if not (isinstance(raw, list) and len(raw) == 4 and all(type(v) is int for v in raw)):
        raise ValueError(f"{obj.where('box')} must be [x, y, w, h] in whole pixels but is {raw!r}"[:200])
    box = Box(*raw)
    if box.x < 0 or box.y < 0 or box.w < 1 or box.h < 1 or box.x + box.w > width or box.y + box.h > height:
        raise ValueError(f"{obj.where('box')} {raw} does not lie inside the {width}x{height} canvas")
    return box


def _any_slot(obj: _Obj, width: int, height: int) -> Slot | ImageSlot:
    name = obj.string("name", pattern=SLOT_NAME_RE, rule="a lower-case identifier of at most 32 characters")
    obj.path = f"slots.{name}"
    kind = obj.string("kind", choices=("text", "image"), default="text")
    return _image_slot(obj, name, width, height) if kind == "image" else _slot(obj, name, width, height)


def _slot(obj: _Obj, name: str, width: int, height: int) -> Slot:
    box = _box(obj, width, height)
    max_size = obj.integer("max_size", 6, 512)
    slot = Slot(
        name=name, box=box, max_size=max_size, min_size=obj.integer("min_size", 6, max_size),
        colour=obj.colour("colour"), align=obj.string("align", choices=ALIGNS, default="left"),
        max_lines=obj.integer("max_lines", 1, 20, default=1), required=obj.flag("required", default=False),
        max_chars=obj.integer("max_chars", 1, 1000, default=120), button=obj.colour("button", default=None),
        font=obj.string("font", choices=FAMILIES, default="sans"),
    )
    obj.done()
    area = slot.text_box()
    if area.w < 1 or area.h < 1 or fit_slot(slot, "Hg", Fonts()) is None:
        raise ValueError(f"{obj.path}: its text area ({area.w}x{area.h}) cannot hold one line at min_size "
                         f"{slot.min_size}px")
    return slot


def _image_slot(obj: _Obj, name: str, width: int, height: int) -> ImageSlot:
    slot = ImageSlot(name=name, box=_box(obj, width, height), fit=obj.string("fit", choices=FITS, default="cover"),
                     required=obj.flag("required", default=False))
    obj.done()
    return slot


def _layer(obj: _Obj, width: int, height: int) -> Layer:
    obj.string("kind", choices=("rect",))  # the one shape so far; naming it leaves room for others
    box = _box(obj, width, height)
    layer = Layer(box=box, colour=obj.colour("colour"), opacity=obj.integer("opacity", 1, 100, default=100),
                  radius=obj.integer("radius", 0, min(box.w, box.h) // 2, default=0))
    obj.done()
    return layer


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
    if missing_glyphs(logo.text, chain("sans")) or logo_text(logo, Fonts()) is None:
        raise ValueError(f"logo.text {logo.text!r} cannot be drawn in a {logo.size}px mark with the packaged fonts")
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
    except RecursionError as exc:  # a nesting bomb ("[[[[..."): refused like any malformed file, not a crash
        raise ValueError(f"template file {str(path)!r}: JSON nested too deeply") from exc
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
