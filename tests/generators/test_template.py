"""The template compositor with real Pillow rendering: library loading, field rules, auto-fit, seeds, revisions."""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gateway.errors import InvalidInput
from generators.base import GenerationSpec, Generator
from generators.template import Template, TemplateGenerator, TemplateLibrary
from generators.template_layout import hex_rgb

MakeLibrary = Callable[..., TemplateLibrary]
MakeSpec = Callable[..., GenerationSpec]
WriteTemplate = Callable[..., Path]

SPRING = {"headline": "Spring sale", "subline": "Up to 30% off everything", "cta": "Shop now"}
SQUARE = {"headline": "The new trail runner", "cta": "Buy now"}

# A small user template whose slots are all optional, so a slot can be rendered empty and filled.
USER_TEMPLATE: dict[str, Any] = {
    "id": "user-card", "title": "User card", "width": 256, "height": 128,
    "background": {"colour": "#203040"},
    "slots": [
        {"name": "title", "box": [16, 16, 224, 48], "max_size": 32, "min_size": 12, "colour": "#ffffff",
         "max_lines": 2},
        {"name": "cta", "box": [16, 80, 160, 36], "max_size": 20, "min_size": 10, "colour": "#ffffff",
         "button": "#e11d48", "align": "right"},
    ],
}


@pytest.fixture
def make_library() -> MakeLibrary:
    """Factory: ``make_library(*extra_dirs)`` -> the packaged templates, overridden by ``extra_dirs`` in order."""

    def make(*dirs: Path) -> TemplateLibrary:
        return TemplateLibrary([TemplateLibrary.default_dir(), *dirs])

    return make


@pytest.fixture
def make_spec() -> MakeSpec:
    def make(**overrides: Any) -> GenerationSpec:
        values: dict[str, Any] = {"model": "template", "width": 64, "height": 64, "template": "spring-sale",
                                  "fields": SPRING, "seed": 7}
        return GenerationSpec(**{**values, **overrides})

    return make


@pytest.fixture
def write_template(tmp_path: Path) -> WriteTemplate:
    """Factory: ``write_template(data, name=..., directory=...)`` writes ``data`` (a dict, or raw text) as JSON."""

    def write(data: Any = USER_TEMPLATE, name: str = "user-card.json", directory: Path | None = None) -> Path:
        folder = directory or tmp_path / "templates"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        return path

    return write


@pytest.fixture
def user_template(write_template: WriteTemplate) -> Template:
    path = write_template()
    template = TemplateLibrary([path.parent]).get("user-card")
    assert template is not None
    return template


def _diff_box(a: Image.Image, b: Image.Image) -> tuple[int, int, int, int] | None:
    changed = np.any(np.asarray(a) != np.asarray(b), axis=2)
    if not changed.any():
        return None
    ys, xs = np.nonzero(changed)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _inside(inner: tuple[int, int, int, int], box: list[int]) -> bool:
    x, y, w, h = box
    return x <= inner[0] and y <= inner[1] and inner[2] <= x + w and inner[3] <= y + h


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_library_loads_the_packaged_templates(make_library: MakeLibrary) -> None:
    library = make_library()
    assert [t.id for t in library.list()] == ["global-launch", "product-square", "spring-sale"]
    spring, square = library.get("spring-sale"), library.get("product-square")
    assert spring is not None and (spring.width, spring.height) == (1024, 512)
    assert spring.background.top != spring.background.bottom  # a gradient
    assert square is not None and (square.width, square.height) == (512, 512)
    assert spring.logo is not None and square.logo is not None
    assert library.get("nope") is None
    assert (TemplateLibrary.default_dir() / "spring-sale.json").is_file()


@pytest.mark.parametrize(
    ("template_id", "fields"),
    [
        ("spring-sale", [("headline", True, 60), ("subline", False, 120), ("cta", True, 24)]),
        ("product-square", [("headline", True, 120), ("cta", True, 24)]),
    ],
)
def test_describe_lists_the_fields(make_library: MakeLibrary, template_id: str, fields: list[tuple]) -> None:
    template = make_library().get(template_id)
    assert template is not None
    described = template.describe()
    assert {k: described[k] for k in ("id", "width", "height")} == {
        "id": template_id, "width": template.width, "height": template.height}
    assert described["title"]
    assert described["fields"] == [{"name": n, "required": r, "max_chars": m} for n, r, m in fields]
    json.dumps(described)  # the listing is served as JSON as is


@pytest.mark.parametrize(("template_id", "fields", "size"),
                         [("spring-sale", SPRING, (1024, 512)), ("product-square", SQUARE, (512, 512))])
def test_generate_renders_the_template_canvas(
    make_library: MakeLibrary, make_spec: MakeSpec, template_id: str, fields: dict, size: tuple[int, int]
) -> None:
    generator = TemplateGenerator(make_library())
    assert isinstance(generator, Generator)
    images = generator.generate(make_spec(template=template_id, fields=fields, n=3, seed=40, width=64, height=64))
    assert [(g.index, g.seed) for g in images] == [(0, 40), (1, 41), (2, 42)]
    for item in images:
        assert item.image.mode == "RGB" and item.image.size == size  # the spec's 64x64 is ignored
        assert item.model == "template" and item.model_revision == generator.revision
    assert re.fullmatch(r"tpl-[0-9a-f]{16}", generator.revision)


@pytest.mark.parametrize(
    ("template_id", "fields", "slot"),
    [
        ("spring-sale", SPRING, "headline"),
        ("spring-sale", SPRING, "subline"),
        ("spring-sale", SPRING, "cta"),
        ("spring-sale", {**SPRING, "headline": "Everything must go before the summer arrives"}, "headline"),
        ("product-square", SQUARE, "headline"),
        ("product-square", SQUARE, "cta"),
    ],
)
def test_slot_text_is_drawn_inside_its_box(make_library: MakeLibrary, template_id: str, fields: dict,
                                           slot: str) -> None:
    template = make_library().get(template_id)
    assert template is not None
    with_text = template.render(template.validate_fields(fields), seed=1)
    without = template.render({k: v for k, v in fields.items() if k != slot}, seed=1)
    box = next(s.box for s in template.slots if s.name == slot)
    changed = _diff_box(with_text, without)
    assert changed is not None, "the slot's text drew nothing"
    assert _inside(changed, [box.x, box.y, box.w, box.h]), (changed, box)
    region = np.asarray(with_text)[box.y:box.y + box.h, box.x:box.x + box.w]
    assert len(np.unique(region.reshape(-1, 3), axis=0)) > 10  # anti-aliased glyphs, not a flat fill


def test_cta_is_drawn_on_a_button_of_its_fill_colour(user_template: Template) -> None:
    image = np.asarray(user_template.render({"cta": "Go"}, seed=0))
    cta = user_template.slots[1]
    assert cta.button is not None
    region = image[cta.box.y:cta.box.y + cta.box.h, cta.box.x:cta.box.x + cta.box.w]
    button = np.all(region == hex_rgb(cta.button), axis=2)
    assert button.sum() > 200
    columns = np.nonzero(button.any(axis=0))[0]
    assert columns.max() > cta.box.w - 10 and columns.min() > 40  # right-aligned and hugging the short text


@pytest.mark.parametrize(
    "text",
    ["A", "Short", "A somewhat longer title that wraps", "Words words words words words words words words"],
)
def test_layout_never_leaves_the_slot(user_template: Template, text: str) -> None:
    block = user_template.layout({"title": text})["title"]
    box = user_template.slots[0].box
    left, top, right, bottom = block.ink
    assert box.x <= left and box.y <= top and right <= box.x + box.w and bottom <= box.y + box.h
    assert " ".join(block.lines) == text  # wrapped, never cut
    changed = _diff_box(user_template.render({"title": text}, seed=0), user_template.render({}, seed=0))
    assert changed is not None and _inside(changed, [box.x, box.y, box.w, box.h])


@pytest.mark.parametrize(
    ("text", "shrinks", "lines"),
    [
        ("Spring sale", False, 1),
        ("Spring sale on all shoes", False, 2),
        ("Spring sale: everything in the store is now half price", True, 2),
    ],
)
def test_auto_fit_shrinks_long_text_instead_of_failing(
    make_library: MakeLibrary, text: str, shrinks: bool, lines: int
) -> None:
    template = make_library().get("spring-sale")
    assert template is not None
    headline = template.slots[0]
    block = template.layout(template.validate_fields({**SPRING, "headline": text}))["headline"]
    assert (block.size < headline.max_size) is shrinks
    assert headline.min_size <= block.size <= headline.max_size
    assert len(block.lines) == lines and " ".join(block.lines) == text


@pytest.mark.parametrize(
    ("template_id", "fields", "field", "detail"),
    [
        ("spring-sale", {**SPRING, "headline": "W" * 40}, "fields.headline",  # one word wider than the box
         "slot 'headline' does not fit its 640x160 box in 2 lines at 32px or larger"),
        ("product-square", {**SQUARE, "headline": "Supercalifragilisticexpialidocious" * 3}, "fields.headline",
         "slot 'headline' does not fit its 432x160 box in 2 lines at 24px or larger"),
        ("product-square", {**SQUARE, "headline": "Big " * 29 + "end"}, "fields.headline",  # needs 3+ lines
         "slot 'headline' does not fit its 432x160 box in 2 lines at 24px or larger"),
        ("spring-sale", {**SPRING, "cta": "W" * 24}, "fields.cta",  # the button's padding narrows the text area
         "slot 'cta' does not fit its 358x48 box in 1 line at 18px or larger"),
    ],
)
def test_text_that_cannot_fit_is_refused(
    make_library: MakeLibrary, make_spec: MakeSpec, template_id: str, fields: dict, field: str, detail: str
) -> None:
    library = make_library()
    template = library.get(template_id)
    assert template is not None
    with pytest.raises(InvalidInput) as early:  # the edge's check already lays the text out
        template.validate_fields(fields)
    with pytest.raises(InvalidInput) as caught:
        TemplateGenerator(library).generate(make_spec(template=template_id, fields=fields))
    for error in (early.value, caught.value):
        assert (error.field, error.rule, error.status) == (field, "text_fits", 422)
        assert error.detail == f"text for {detail}"


@pytest.mark.parametrize(
    ("fields", "field", "rule"),
    [
        ({**SPRING, "colour": "red"}, "fields.colour", "unknown_field"),
        ({"subline": "x", "cta": "Go"}, "fields.headline", "required"),
        ({"headline": "Hi", "subline": "x"}, "fields.cta", "required"),
        ({**SPRING, "headline": ""}, "fields.headline", "non_empty_string"),
        ({**SPRING, "subline": " \n\t "}, "fields.subline", "non_empty_string"),
        ({**SPRING, "headline": 5}, "fields.headline", "non_empty_string"),
        ({**SPRING, "cta": None}, "fields.cta", "non_empty_string"),
        ({**SPRING, "headline": "a" * 61}, "fields.headline", "max_chars"),
        ({**SPRING, "cta": "Go " * 9}, "fields.cta", "max_chars"),
        # Cyrillic, Greek and accented Latin are covered now (see test_template_scripts.py); these scripts are not.
        ({**SPRING, "headline": "ลดราคาฤดูใบไม้ผลิ"}, "fields.headline", "font_coverage"),  # Thai
        ({**SPRING, "subline": "საგაზაფხულო ფასდაკლება"}, "fields.subline", "font_coverage"),  # Georgian
        ({**SPRING, "cta": "Shop now 🎉"}, "fields.cta", "font_coverage"),  # emoji
    ],
)
def test_bad_fields_name_the_field_and_rule(
    make_library: MakeLibrary, make_spec: MakeSpec, fields: dict, field: str, rule: str
) -> None:
    template = make_library().get("spring-sale")
    assert template is not None
    with pytest.raises(InvalidInput) as caught:
        template.validate_fields(fields)
    assert (caught.value.field, caught.value.rule) == (field, rule)
    assert field.split(".")[1] in caught.value.detail
    with pytest.raises(InvalidInput) as again:  # the generator applies the same rules
        TemplateGenerator(make_library()).generate(make_spec(fields=fields))
    assert (again.value.field, again.value.rule) == (field, rule)


def test_fields_are_cleaned(make_library: MakeLibrary) -> None:
    template = make_library().get("spring-sale")
    assert template is not None
    cleaned = template.validate_fields({"cta": "  Shop\n now ", "headline": "Spring\t\tsale"})
    assert cleaned == {"headline": "Spring sale", "cta": "Shop now"}
    # The font's extra punctuation is accepted, and a run of spaces counts once towards max_chars.
    fancy = template.validate_fields({**SPRING, "headline": "“Spring” sale… © 2026™", "cta": "Go" + " " * 40 + "now"})
    assert (fancy["headline"], fancy["cta"]) == ("“Spring” sale… © 2026™", "Go now")
    # NFC: an "e" with a combining accent and a precomposed "é" are one text (the packaged fonts draw both).
    assert template.validate_fields({**SPRING, "cta": "Cafe\u0301"})["cta"] == "Caf\u00e9"


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"template": "nope"}, "template", "known_template"),
        ({"template": None}, "template", "required"),
        ({"n": 0}, "n", "n_range"),
    ],
)
def test_bad_specs_are_refused(make_library: MakeLibrary, make_spec: MakeSpec, overrides: dict, field: str,
                               rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        TemplateGenerator(make_library()).generate(make_spec(**overrides))
    assert (caught.value.field, caught.value.rule) == (field, rule)


def test_same_seed_same_bytes_other_seed_other_background(make_library: MakeLibrary, make_spec: MakeSpec) -> None:
    generator = TemplateGenerator(make_library())
    first = generator.generate(make_spec(seed=11, n=2))
    again = TemplateGenerator(make_library()).generate(make_spec(seed=11, n=2))
    assert [_png(g.image) for g in first] == [_png(g.image) for g in again]
    alone = generator.generate(make_spec(seed=12))[0]  # image 1 of seed 11 is reproducible on its own
    assert alone.image.tobytes() == first[1].image.tobytes()
    a, b = (np.asarray(g.image, dtype=np.int16) for g in first)
    assert not np.array_equal(a, b)
    assert np.abs(a - b).mean() < 8  # a subtle background detail, not a different banner


@pytest.mark.parametrize("colour", ["#ffffff", "#000000", "#808080"])
def test_seeds_vary_even_a_plain_background(write_template: WriteTemplate, colour: str) -> None:
    path = write_template({**USER_TEMPLATE, "background": {"colour": colour}})
    template = TemplateLibrary([path.parent]).get("user-card")
    assert template is not None
    renders = [np.asarray(template.render({"title": "Hi"}, seed=s), dtype=np.int16) for s in (0, 1, 0)]
    assert np.array_equal(renders[0], renders[2])
    assert not np.array_equal(renders[0], renders[1])
    assert np.abs(renders[0] - renders[1]).max() <= 8  # faint: at most a few levels


def test_concurrent_renders_match_serial_ones(make_library: MakeLibrary, make_spec: MakeSpec) -> None:
    generator = TemplateGenerator(make_library())
    specs = [make_spec(seed=s, template=t, fields=f) for s in range(4)
             for t, f in (("spring-sale", SPRING), ("product-square", SQUARE))]
    serial = [generator.generate(s)[0].image.tobytes() for s in specs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda s: generator.generate(s)[0].image.tobytes(), specs))
    assert parallel == serial


def _edit(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(USER_TEMPLATE)
    for path, value in changes.items():
        target = data
        *parents, last = path.split("__")
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is ...:
            del target[last]
        else:
            target[last] = value
    return data


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("{not json", "invalid JSON at line 1"),
        ('{"id": "a", "id": "b"}', "duplicate key 'id'"),
        ("[1, 2]", "must be a JSON object"),
        (_edit(id=...), "id is required"),
        (_edit(id="Has Spaces"), "id must be lower-case"),
        (_edit(width=True), "width must be an integer"),
        (_edit(background={"colour": "red"}), "background.colour must be a colour '#rrggbb'"),
        (_edit(background={"colour": "#000000", "top": "#ffffff"}), "either `colour`"),
        (_edit(slots=[]), "slots must be a non-empty list"),
        (_edit(slots__0__requierd=True), "slots.title.requierd is not a known key"),
        (_edit(slots__0__box=[200, 16, 224, 48]), "does not lie inside the 256x128 canvas"),
        (_edit(slots__0__box=[16, 16, 224]), "slots.title.box must be [x, y, w, h]"),
        (_edit(slots__0__min_size=40), "slots.title.min_size must be an integer from 6 to 32"),
        (_edit(slots__0__align="justify"), "left | center | right"),
        (_edit(slots__0__box=[16, 16, 224, 8]), "cannot hold one line at min_size 12px"),
        (_edit(slots__1__name="title"), "slot name 'title' is used more than once"),
        (_edit(logo={"shape": "circle", "x": 0, "y": 0, "size": 32, "colour": "#000000", "text": "ფფ"}),
         "logo.text 'ფფ' cannot be drawn"),  # Georgian: no packaged font has it
        (_edit(logo={"shape": "star", "x": 0, "y": 0, "size": 32, "colour": "#000000", "text": "A"}),
         "logo.shape must be circle | rounded_square"),
    ],
)
def test_malformed_template_file_is_a_value_error_naming_it(
    write_template: WriteTemplate, data: Any, problem: str
) -> None:
    path = write_template(data, name="broken.json")
    with pytest.raises(ValueError) as caught:
        TemplateLibrary([TemplateLibrary.default_dir(), path.parent])
    message = str(caught.value)
    assert message.startswith(f"template file {str(path)!r}: ")
    assert problem in message


@pytest.mark.parametrize("data", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000])
def test_a_json_nesting_bomb_is_refused_like_any_malformed_file(tmp_path: Path, data: bytes) -> None:
    """Found by the poisoning suite: json's RecursionError escaped the loader as a crash instead of a refusal."""
    path = tmp_path / "bomb.json"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"bomb\.json.*nested too deeply"):
        TemplateLibrary([tmp_path])


def test_two_files_with_one_id_in_a_directory_are_refused(write_template: WriteTemplate) -> None:
    first = write_template(name="a.json")
    write_template(name="b.json")
    with pytest.raises(ValueError, match=r"b\.json.*also used by.*a\.json"):
        TemplateLibrary([first.parent])


def test_user_directory_overrides_a_packaged_template(
    make_library: MakeLibrary, write_template: WriteTemplate, make_spec: MakeSpec
) -> None:
    packaged = make_library()
    user_dir = write_template({**USER_TEMPLATE, "id": "spring-sale", "title": "Our spring"}, name="mine.json").parent
    library = make_library(user_dir)
    spring = library.get("spring-sale")
    assert spring is not None and (spring.title, spring.width, spring.height) == ("Our spring", 256, 128)
    assert [t.id for t in library.list()] == ["global-launch", "product-square", "spring-sale"]
    generator = TemplateGenerator(library)
    assert generator.revision != TemplateGenerator(packaged).revision
    image = generator.generate(make_spec(fields={"title": "Hello"}))[0].image
    assert image.size == (256, 128)
    # Order matters: listed first, the user directory is overridden by the packaged one.
    reversed_library = TemplateLibrary([user_dir, TemplateLibrary.default_dir()])
    assert reversed_library.get("spring-sale") == packaged.get("spring-sale")


def test_missing_directories_are_skipped_and_files_are_not_directories(
    make_library: MakeLibrary, tmp_path: Path, write_template: WriteTemplate
) -> None:
    packaged = ["global-launch", "product-square", "spring-sale"]
    assert [t.id for t in make_library(tmp_path / "absent").list()] == packaged
    with pytest.raises(ValueError, match="is not a directory"):
        make_library(write_template())


def test_revision_is_stable_and_covers_every_drawing_setting(
    make_library: MakeLibrary, write_template: WriteTemplate, tmp_path: Path
) -> None:
    base = TemplateGenerator(make_library(write_template().parent)).revision
    assert TemplateGenerator(make_library(write_template().parent)).revision == base
    defaults_spelled_out = _edit(slots__0__align="left", slots__0__required=False)
    same = write_template(defaults_spelled_out, directory=tmp_path / "same")
    assert TemplateGenerator(make_library(same.parent)).revision == base  # defaults are part of the hash
    changed = write_template(_edit(slots__0__colour="#fffffe"), directory=tmp_path / "changed")
    assert TemplateGenerator(make_library(changed.parent)).revision != base
