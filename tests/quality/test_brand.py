"""Brand kits load from the config directory with every problem named; palette compliance is exact CIEDE2000."""

from __future__ import annotations

import importlib.resources
import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

from quality.brand import (
    DEFAULT_MAX_DELTA_E,
    BrandKit,
    BrandKitError,
    BrandWeights,
    hex_to_lab,
    load_brand_kit,
    load_brand_kits,
    nearest_delta_e,
    palette_compliance,
)

KitFactory = Callable[..., Path]
NOTO_SANS = Path(str(importlib.resources.files("fontpkg_noto_sans") / "files/NotoSans[wdth,wght].ttf"))


def _png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (16, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


VALID: dict[str, Any] = {
    "palette": ["#FF0000", {"name": "navy", "hex": "#000080"}],
    "palette_max_delta_e": 8,
    "logo": "logo.png",
    "references": ["refs/one.png", "refs/two.png"],
    "descriptors": ["bold  flat\nillustration", "primary colours"],
    "off_brand": ["muddy pastel photo"],
    "fonts": ["NotoSans.ttf"],
    "weights": {"palette": 0.5, "text": 0.25, "references": 0.25},
}


@pytest.fixture
def make_kit(tmp_path: Path) -> KitFactory:
    """Factory: writes ``<root>/<tenant>/<brand>/brand.yaml`` (a dict is dumped, a str written as is) and the kit's
    files (the valid kit's files unless ``files`` is given); returns the brand directory."""

    def make(spec: dict[str, Any] | str | None = None, *, files: dict[str, bytes] | None = None,
             tenant: str = "acme", brand: str = "main") -> Path:
        directory = tmp_path / "brands" / tenant / brand
        (directory / "refs").mkdir(parents=True, exist_ok=True)
        if files is None:
            files = {"logo.png": _png((0, 0, 128)), "refs/one.png": _png(), "refs/two.png": _png((10, 200, 10)),
                     "NotoSans.ttf": NOTO_SANS.read_bytes()}
        for name, data in files.items():
            (directory / name).write_bytes(data)
        spec = VALID if spec is None else spec
        (directory / "brand.yaml").write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
        return directory

    return make


def test_a_valid_kit_loads_every_key(make_kit: KitFactory) -> None:
    directory = make_kit()
    kit = load_brand_kit(directory, "acme", "main")
    assert (kit.tenant, kit.brand, kit.directory) == ("acme", "main", directory.resolve())
    assert [(c.name, c.hex) for c in kit.palette] == [("#ff0000", "#ff0000"), ("navy", "#000080")]
    assert kit.palette_max_delta_e == 8.0
    assert kit.logo == (directory / "logo.png").resolve()
    assert kit.references == ((directory / "refs/one.png").resolve(), (directory / "refs/two.png").resolve())
    assert kit.descriptors == ("bold flat illustration", "primary colours")  # whitespace normalised
    assert kit.off_brand == ("muddy pastel photo",)
    assert kit.fonts == ((directory / "NotoSans.ttf").resolve(),)
    assert kit.weights == BrandWeights(palette=0.5, text=0.25, references=0.25)
    assert len(kit.image_data) == 3  # two references, then the logo
    assert kit.image_data[-1] == (directory / "logo.png").read_bytes()


def test_defaults_of_optional_keys(make_kit: KitFactory) -> None:
    kit = load_brand_kit(make_kit({"descriptors": ["calm"]}, files={}), "acme", "main")
    assert kit.palette == () and kit.logo is None and kit.references == () and kit.fonts == ()
    assert kit.palette_max_delta_e == DEFAULT_MAX_DELTA_E
    assert kit.weights == BrandWeights()


def test_load_brand_kits_maps_tenant_and_brand(make_kit: KitFactory, tmp_path: Path) -> None:
    make_kit()
    make_kit({"descriptors": ["calm"]}, files={}, tenant="acme", brand="outlet")
    make_kit({"descriptors": ["loud"]}, files={}, tenant="globex", brand="main")
    (tmp_path / "brands" / "README.md").write_text("brand kits live here")
    (tmp_path / "brands" / ".git").mkdir()
    (tmp_path / "brands" / "acme" / ".drafts").mkdir()
    kits = load_brand_kits(tmp_path / "brands")
    assert sorted(kits) == [("acme", "main"), ("acme", "outlet"), ("globex", "main")]
    assert kits[("globex", "main")].descriptors == ("loud",)
    assert len(kits) == 3 and ("acme", "main") in kits and ("acme", "nope") not in kits
    assert kits.get("acme", "outlet") is kits["acme", "outlet"]
    assert kits.get("acme", "nope") is None and kits.get("initech", "main") is None
    assert kits.names("acme") == ["main", "outlet"] and kits.names("initech") == []
    assert dict(kits.items())[("globex", "main")] is kits["globex", "main"]


def test_revision_follows_the_yaml_and_every_file(make_kit: KitFactory) -> None:
    directory = make_kit()
    first = load_brand_kit(directory, "acme", "main").revision
    assert len(first) == 12 and int(first, 16) >= 0
    assert load_brand_kit(directory, "acme", "main").revision == first
    for name, data in [("refs/two.png", _png((11, 200, 10))), ("logo.png", _png((0, 0, 129))),
                       ("NotoSans.ttf", NOTO_SANS.read_bytes() + b"\x00")]:
        original = (directory / name).read_bytes()
        (directory / name).write_bytes(data)
        assert load_brand_kit(directory, "acme", "main").revision != first, name
        (directory / name).write_bytes(original)
    (directory / "brand.yaml").write_text((directory / "brand.yaml").read_text() + "\n# a comment\n")
    assert load_brand_kit(directory, "acme", "main").revision != first


def test_kits_are_frozen(make_kit: KitFactory) -> None:
    kit = load_brand_kit(make_kit(), "acme", "main")
    with pytest.raises(AttributeError):
        kit.palette_max_delta_e = 50.0  # type: ignore[misc]


def _spec(**changes: Any) -> dict[str, Any]:
    spec = dict(VALID)
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


ERRORS: dict[str, tuple[dict[str, Any] | str, str, str]] = {
    # note: (brand.yaml, field, a fragment of the rule)
    "not yaml": ("palette: [", "brand.yaml", "valid YAML"),
    "not a mapping": ("- just\n- a list\n", "brand.yaml", "has to be a mapping"),
    "empty file": ("", "brand.yaml", "has to be a mapping"),
    "unknown key": (_spec(colours=["#ffffff"]), "colours", "not a brand kit key"),
    "palette not a list": (_spec(palette="#ffffff"), "palette", "has to be a list"),
    "hex too short": (_spec(palette=["#fff"]), "palette[0]", "\"#rrggbb\""),
    "colour name": (_spec(palette=["#ffffff", "red"]), "palette[1]", "\"#rrggbb\""),
    "bad hex digits": (_spec(palette=[{"hex": "#gg0000"}]), "palette[0]", "\"#rrggbb\""),
    "palette entry key": (_spec(palette=[{"hex": "#ff0000", "rgb": 1}]), "palette[0]", "only have the keys"),
    "palette entry name": (_spec(palette=[{"hex": "#ff0000", "name": 3}]), "palette[0].name", "a text"),
    "delta e zero": (_spec(palette_max_delta_e=0), "palette_max_delta_e", "> 0"),
    "delta e text": (_spec(palette_max_delta_e="ten"), "palette_max_delta_e", "> 0"),
    "delta e bool": (_spec(palette_max_delta_e=True), "palette_max_delta_e", "> 0"),
    "delta e inf": (_spec(palette_max_delta_e=float("inf")), "palette_max_delta_e", "finite"),
    "missing reference": (_spec(references=["refs/none.png"]), "references[0]", "does not exist"),
    "references not a list": (_spec(references="refs/one.png"), "references", "list of image files"),
    "escaping path": (_spec(references=["../../../etc/passwd"]), "references[0]", "inside"),
    "unreadable image": (_spec(references=["notes.png"]), "references[0]", "not a readable image"),
    "unreadable logo": (_spec(logo="notes.png"), "logo", "not a readable image"),
    "missing logo": (_spec(logo="gone.png"), "logo", "does not exist"),
    "nothing to compare": (_spec(descriptors=None, references=None), "descriptors", "only be empty when"),
    "empty lists": (_spec(descriptors=[], references=[]), "descriptors", "only be empty when"),
    "descriptors a string": (_spec(descriptors="bold"), "descriptors", "list of texts"),
    "blank descriptor": (_spec(descriptors=["bold", "  "]), "descriptors", "no empty texts"),
    "off brand numbers": (_spec(off_brand=[1, 2]), "off_brand", "list of texts"),
    "font not a font": (_spec(fonts=["refs/one.png"]), "fonts[0]", "not a font PIL can load"),
    "missing font": (_spec(fonts=["Nope.ttf"]), "fonts[0]", "does not exist"),
    "weights unknown": (_spec(weights={"logo": 1}), "weights", "only have the keys"),
    "weights negative": (_spec(weights={"text": -1}), "weights.text", ">= 0"),
    "weights not a map": (_spec(weights=[1, 2]), "weights", "has to be a mapping"),
    "weights all zero": (_spec(weights={"palette": 0, "text": 0, "references": 0}), "weights", "at least one term"),
    "weights only on absent terms": (
        _spec(palette=None, references=None, logo=None, weights={"palette": 1, "references": 1, "text": 0}),
        "weights", "at least one term"),
}


@pytest.mark.parametrize("note", list(ERRORS))
def test_every_problem_names_file_field_and_rule(make_kit: KitFactory, note: str) -> None:
    spec, field, rule = ERRORS[note]
    directory = make_kit(spec)
    (directory / "notes.png").write_text("not an image")
    with pytest.raises(BrandKitError) as info:
        load_brand_kit(directory, "acme", "main")
    error = info.value
    assert error.path == directory / "brand.yaml"
    assert error.field == field
    assert rule in error.rule
    assert str(error).startswith(f"{directory / 'brand.yaml'}: `{field}`")


def test_a_brand_directory_without_brand_yaml_is_an_error(make_kit: KitFactory, tmp_path: Path) -> None:
    make_kit()
    (tmp_path / "brands" / "acme" / "forgotten").mkdir()
    with pytest.raises(BrandKitError, match="forgotten/brand.yaml: `brand.yaml` is missing"):
        load_brand_kits(tmp_path / "brands")


def test_a_missing_brands_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BrandKitError, match="has to be an existing directory"):
        load_brand_kits(tmp_path / "none")


def test_a_symlink_out_of_the_kit_is_refused(make_kit: KitFactory, tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(_png())
    directory = make_kit(_spec(references=["link.png"]))
    (directory / "link.png").symlink_to(outside)
    with pytest.raises(BrandKitError, match="inside"):
        load_brand_kit(directory, "acme", "main")


# -- palette compliance --------------------------------------------------------------------------------------------

# Sharma, Wu & Dalal 2005, Table 1 (pairs 1, 7, 13, 17, 25): Lab 1, Lab 2, CIEDE2000.
SHARMA_PAIRS = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
]


@pytest.mark.parametrize(("lab1", "lab2", "expected"), SHARMA_PAIRS)
def test_the_ciede2000_we_rely_on_matches_sharmas_test_data(lab1: tuple[float, ...], lab2: tuple[float, ...],
                                                            expected: float) -> None:
    assert float(deltaE_ciede2000(np.array(lab1), np.array(lab2))) == pytest.approx(expected, abs=5e-5)
    assert float(deltaE_ciede2000(np.array(lab2), np.array(lab1))) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize(("hex_value", "lab"), [("#ffffff", (100.0, 0.0, 0.0)), ("#000000", (0.0, 0.0, 0.0)),
                                                 ("#ff0000", (53.2408, 80.0925, 67.2032))])
def test_hex_to_lab_is_srgb_d65(hex_value: str, lab: tuple[float, float, float]) -> None:
    # 1e-2: scikit-image's D65 white point is rounded, so white lands 0.005 off the axis.
    assert hex_to_lab(hex_value) == pytest.approx(lab, abs=1e-2)


def _stripes(colours: list[tuple[int, int, int]], size: tuple[int, int] = (600, 400)) -> Image.Image:
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    for i, colour in enumerate(colours):
        pixels[:, i * size[0] // len(colours):(i + 1) * size[0] // len(colours)] = colour
    return Image.fromarray(pixels)


PALETTE = np.array([hex_to_lab("#ff0000"), hex_to_lab("#000080"), hex_to_lab("#f0e68c")])


def test_an_image_of_palette_colours_complies_fully() -> None:
    compliance, mean = palette_compliance(_stripes([(255, 0, 0), (0, 0, 128), (240, 230, 140)]), PALETTE, 1.0)
    assert compliance == 1.0
    assert mean == pytest.approx(0.0, abs=1e-9)


def test_a_fine_checkerboard_of_palette_colours_still_complies() -> None:
    # Nearest-neighbour downscaling samples the image's own pixels; averaging would blend red and navy into purple.
    grid = (np.indices((512, 512)).sum(axis=0) % 2).astype(bool)
    pixels = np.where(grid[..., None], np.array([255, 0, 0], np.uint8), np.array([0, 0, 128], np.uint8))
    assert palette_compliance(Image.fromarray(pixels.astype(np.uint8)), PALETTE, 1.0)[0] == 1.0


def _distance(rgb: tuple[int, int, int], lab: tuple[float, float, float]) -> float:
    return float(deltaE_ciede2000(rgb2lab(np.array([[rgb]], dtype=np.float64) / 255.0)[0, 0], np.array(lab)))


def test_the_tolerance_is_a_sharp_line() -> None:
    colour = (255, 40, 20)  # near the palette's red
    distance = _distance(colour, tuple(PALETTE[0]))
    image = Image.new("RGB", (64, 64), colour)
    assert palette_compliance(image, PALETTE, distance * 0.999) == (0.0, pytest.approx(distance))
    assert palette_compliance(image, PALETTE, distance * 1.001) == (1.0, pytest.approx(distance))


def test_compliance_is_the_share_of_pixels() -> None:
    image = _stripes([(255, 0, 0), (0, 255, 0), (0, 255, 0), (0, 0, 128)], size=(512, 256))
    compliance, mean = palette_compliance(image, PALETTE, DEFAULT_MAX_DELTA_E)
    assert compliance == 0.5
    green = min(_distance((0, 255, 0), tuple(lab)) for lab in PALETTE)
    assert mean == pytest.approx(green / 2)


def test_each_pixel_is_measured_against_its_nearest_colour() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    expected = [min(_distance(tuple(int(c) for c in px), tuple(lab)) for lab in PALETTE)
                for px in pixels.reshape(-1, 3)]
    assert nearest_delta_e(Image.fromarray(pixels), PALETTE) == pytest.approx(np.array(expected), abs=1e-9)


def test_large_images_are_downscaled_to_the_bound() -> None:
    assert nearest_delta_e(Image.new("RGB", (1024, 512)), PALETTE).shape == (128 * 64,)
    assert nearest_delta_e(Image.new("RGB", (1024, 512)), PALETTE, max_side=32).shape == (32 * 16,)
    assert nearest_delta_e(Image.new("RGB", (20, 10)), PALETTE).shape == (200,)


def test_other_modes_are_read_as_rgb() -> None:
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert palette_compliance(rgba, PALETTE, 1.0)[0] == 1.0
    assert palette_compliance(Image.new("L", (8, 8), 255), np.array([hex_to_lab("#ffffff")]), 0.5)[0] == 1.0


def test_an_empty_palette_is_refused() -> None:
    with pytest.raises(ValueError, match="`palette_lab`"):
        nearest_delta_e(Image.new("RGB", (8, 8)), np.zeros((0, 3)))


def test_the_kit_measures_with_its_own_palette_and_tolerance(make_kit: KitFactory) -> None:
    kit = load_brand_kit(make_kit(_spec(palette_max_delta_e=25)), "acme", "main")
    orange = Image.new("RGB", (16, 16), (255, 60, 0))
    assert _distance((255, 60, 0), hex_to_lab("#ff0000")) < 25
    assert kit.palette_compliance(orange)[0] == 1.0


# -- reference embeddings ------------------------------------------------------------------------------------------


class _CountingModel:
    """Stands in for a ClipModel: counts the images it is asked to encode."""

    def __init__(self, revision: str) -> None:
        self.revision = revision
        self.calls: list[int] = []

    def encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        self.calls.append(len(images))
        return torch.eye(4)[: len(images)]


def test_image_embeddings_are_computed_once_per_model_revision(make_kit: KitFactory) -> None:
    kit = load_brand_kit(make_kit(), "acme", "main")
    first, second = _CountingModel("aaa"), _CountingModel("bbb")
    embeddings = kit.image_embeddings(first)  # type: ignore[arg-type]
    assert embeddings.shape == (3, 4)
    kit.image_embeddings(first)  # type: ignore[arg-type]
    kit.image_embeddings(second)  # type: ignore[arg-type]
    assert first.calls == [3] and second.calls == [3]


def test_images_are_the_bytes_read_at_load_time(make_kit: KitFactory) -> None:
    directory = make_kit()
    kit = load_brand_kit(directory, "acme", "main")
    shutil.rmtree(directory / "refs")  # the kit no longer needs its files once loaded
    assert isinstance(kit, BrandKit)
    assert kit.image_embeddings(_CountingModel("c")).shape == (3, 4)  # type: ignore[arg-type]
