"""Image slots of the template compositor, with real rendering: cover and contain geometry, transparency, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gateway.errors import InvalidInput
from generators.base import GenerationSpec
from generators.template import Template, TemplateGenerator, TemplateLibrary

MakeTemplate = Callable[..., Template]
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
BOX = [40, 20, 120, 120]  # x, y, w, h of the image slot


@pytest.fixture
def make_template(tmp_path: Path) -> MakeTemplate:
    """Factory: a 256x160 template with an image slot ``hero`` at BOX (``image`` overrides its settings)."""

    def make(**image: Any) -> Template:
        data = {"id": "pic", "title": "Picture", "width": 256, "height": 160, "background": {"colour": "#808080"},
                "slots": [{"name": "hero", "kind": "image", "box": BOX, **image},
                          {"name": "title", "box": [170, 20, 80, 40], "max_size": 20, "min_size": 8,
                           "colour": "#ffffff"}]}
        folder = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "pic.json").write_text(json.dumps(data), encoding="utf-8")
        template = TemplateLibrary([folder]).get("pic")
        assert template is not None
        return template

    return make


def _bands(width: int, height: int, vertical: bool = True) -> Image.Image:
    """Three equal bands, red | green | blue, side by side (``vertical``) or stacked."""
    pixels = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate((RED, GREEN, BLUE)):
        if vertical:
            pixels[:, i * width // 3:(i + 1) * width // 3] = colour
        else:
            pixels[i * height // 3:(i + 1) * height // 3] = colour
    return Image.fromarray(pixels, "RGB")


def _region(image: Image.Image) -> np.ndarray:
    x, y, w, h = BOX
    return np.asarray(image)[y:y + h, x:x + w].astype(np.int16)


def _outside_unchanged(with_image: Image.Image, without: Image.Image) -> bool:
    a, b = np.asarray(with_image).copy(), np.asarray(without).copy()
    x, y, w, h = BOX
    a[y:y + h, x:x + w] = 0
    b[y:y + h, x:x + w] = 0
    return np.array_equal(a, b)


@pytest.mark.parametrize("vertical", [True, False])
def test_cover_fills_the_box_with_the_centre_of_the_image(make_template: MakeTemplate, vertical: bool) -> None:
    template = make_template(fit="cover")
    source = _bands(360, 120) if vertical else _bands(120, 360, vertical=False)
    image = template.render({}, seed=0, images={"hero": source})
    region = _region(image)
    # The box's aspect is square: the middle third (green) is what remains; the edges are cropped evenly.
    assert np.abs(region - GREEN).max() <= 2
    assert _outside_unchanged(image, template.render({}, seed=0))


def test_cover_scales_up_a_small_image(make_template: MakeTemplate) -> None:
    template = make_template(fit="cover")
    region = _region(template.render({}, seed=0, images={"hero": _bands(30, 10)}))
    assert np.abs(region[:, 20:100] - GREEN).max() <= 8  # away from the resampled band edges


@pytest.mark.parametrize("vertical", [True, False])
def test_contain_fits_the_whole_image_centred(make_template: MakeTemplate, vertical: bool) -> None:
    template = make_template(fit="contain")
    source = _bands(360, 120) if vertical else _bands(120, 360, vertical=False)
    without = template.render({}, seed=0)
    image = template.render({}, seed=0, images={"hero": source})
    region, empty = _region(image), _region(without)
    # 360x120 in 120x120: 120x40, centred, rows 40..80 (columns for the stacked image); all three bands visible.
    inner = region[40:80] if vertical else region[:, 40:80]
    thirds = [inner[:, 2:38], inner[:, 42:78], inner[:, 82:118]] if vertical else \
        [inner[2:38], inner[42:78], inner[82:118]]
    for part, colour in zip(thirds, (RED, GREEN, BLUE), strict=True):
        assert np.abs(part - colour).max() <= 2
    bars = (region[:40], region[80:]) if vertical else (region[:, :40], region[:, 80:])
    expected = (empty[:40], empty[80:]) if vertical else (empty[:, :40], empty[:, 80:])
    for bar, before in zip(bars, expected, strict=True):
        assert np.array_equal(bar, before)  # the background stays visible around a contained image
    assert _outside_unchanged(image, without)


def test_transparent_pixels_show_what_lies_beneath(make_template: MakeTemplate) -> None:
    template = make_template(fit="cover")
    source = Image.new("RGBA", (120, 120), (*RED, 255))
    source.paste((0, 0, 0, 0), (0, 0, 60, 120))  # left half fully transparent
    region, empty = _region(template.render({}, seed=0, images={"hero": source})), _region(template.render({}, seed=0))
    assert np.array_equal(region[:, :58], empty[:, :58])
    assert np.abs(region[:, 62:] - RED).max() <= 1


def test_text_is_drawn_over_images(make_template: MakeTemplate, tmp_path: Path) -> None:
    template = make_template()
    data = json.loads((next(tmp_path.glob("t*/pic.json"))).read_text())
    data["slots"][1]["box"] = BOX  # text over the picture
    folder = tmp_path / "over"
    folder.mkdir()
    (folder / "pic.json").write_text(json.dumps(data), encoding="utf-8")
    over = TemplateLibrary([folder]).get("pic")
    assert over is not None and template is not None
    green = Image.new("RGB", (120, 120), GREEN)
    region = _region(over.render({"title": "Hi"}, seed=0, images={"hero": green}))
    assert (np.abs(region - (255, 255, 255)).max(axis=2) <= 2).sum() > 20  # white glyph pixels on the green image


def test_missing_required_image_is_refused_naming_the_slot(make_template: MakeTemplate, tmp_path: Path) -> None:
    template = make_template(required=True)
    with pytest.raises(InvalidInput) as caught:
        template.render({}, seed=0)
    assert (caught.value.field, caught.value.rule) == ("images.hero", "required")
    assert "'hero'" in caught.value.detail
    folder = next(tmp_path.glob("t*"))
    generator = TemplateGenerator(TemplateLibrary([folder]))
    spec = GenerationSpec(model="template", width=64, height=64, template="pic", fields={"title": "Hi"})
    for call in (lambda: generator.generate(spec), lambda: generator.render_locales("pic", [("en", {"title": "x"})])):
        with pytest.raises(InvalidInput) as again:
            call()
        assert (again.value.field, again.value.rule) == ("images.hero", "required")
    assert generator.generate(spec, images={"hero": _bands(30, 30)})[0].image.size == (256, 160)


@pytest.mark.parametrize(
    ("images", "field", "rule"),
    [
        ({"poster": Image.new("RGB", (8, 8))}, "images.poster", "unknown_image_slot"),
        ({"hero": b"\x89PNG"}, "images.hero", "image_type"),
        ({"hero": "hero.png"}, "images.hero", "image_type"),
    ],
)
def test_bad_images_are_refused(make_template: MakeTemplate, images: dict, field: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        make_template().render({}, seed=0, images=images)
    assert (caught.value.field, caught.value.rule) == (field, rule)


def test_an_image_slot_is_not_a_text_field(make_template: MakeTemplate) -> None:
    with pytest.raises(InvalidInput, match="an image slot: images are passed separately") as caught:
        make_template().validate_fields({"hero": "a picture"})
    assert (caught.value.field, caught.value.rule) == ("fields.hero", "unknown_field")


def test_describe_lists_the_image_slots() -> None:
    template = TemplateLibrary([TemplateLibrary.default_dir()]).get("global-launch")
    assert template is not None
    described = template.describe()
    assert described["images"] == [{"name": "hero", "required": False, "width": 1080, "height": 600, "fit": "cover"}]
    assert [f["name"] for f in described["fields"]] == ["headline", "subline", "cta"]
    json.dumps(described)


@pytest.mark.parametrize(
    ("slot", "problem"),
    [
        ({"fit": "stretch"}, "slots.hero.fit must be cover | contain"),
        ({"box": [200, 0, 120, 120]}, "slots.hero.box [200, 0, 120, 120] does not lie inside"),
        ({"max_size": 20}, "slots.hero.max_size is not a known key"),
        ({"kind": "video"}, "slots.hero.kind must be text | image"),
    ],
)
def test_malformed_image_slots_are_refused(make_template: MakeTemplate, slot: dict, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        make_template(**slot)
    assert problem in str(caught.value)


def test_layers_are_drawn_over_images_at_their_opacity(tmp_path: Path) -> None:
    data = {"id": "layered", "title": "Layered", "width": 200, "height": 100, "background": {"colour": "#000000"},
            "layers": [{"kind": "rect", "box": [0, 0, 100, 100], "colour": "#000000", "opacity": 50},
                       {"kind": "rect", "box": [100, 0, 100, 100], "colour": "#0000ff", "radius": 20}],
            "slots": [{"name": "hero", "kind": "image", "box": [0, 0, 200, 100]},
                      {"name": "title", "box": [10, 10, 80, 30], "max_size": 20, "min_size": 8, "colour": "#ffffff"}]}
    (tmp_path / "layered.json").write_text(json.dumps(data), encoding="utf-8")
    template = TemplateLibrary([tmp_path]).get("layered")
    assert template is not None
    pixels = np.asarray(template.render({}, seed=0, images={"hero": Image.new("RGB", (200, 100), (200, 100, 40))}))
    assert np.abs(pixels[50, 50].astype(int) - (100, 50, 20)).max() <= 2  # half-transparent black over the image
    assert tuple(pixels[50, 150]) == BLUE  # an opaque panel
    assert np.abs(pixels[1, 198].astype(int) - (200, 100, 40)).max() <= 3  # outside its rounded corner
