"""One template for many locales in one call: same pixels as one call per banner, errors naming locale and slot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gateway.errors import InvalidInput
from generators.base import GenerationSpec
from generators.template import TemplateGenerator, TemplateLibrary
from generators.template_samples import SAMPLES, UNCOVERED, cycle

MakeGenerator = Callable[[], TemplateGenerator]


@pytest.fixture
def make_generator() -> MakeGenerator:
    return lambda: TemplateGenerator(TemplateLibrary([TemplateLibrary.default_dir()]))


def _hero() -> Image.Image:
    """A stand-in for a diffusion render: 1024x768 with structure, so a wrong crop or scale shows."""
    y, x = np.mgrid[0:768, 0:1024]
    pixels = np.stack([(x * 255 // 1023), (y * 255 // 767), (x ^ y) & 0xFF], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def test_a_batch_of_100_locales_matches_one_call_per_banner(make_generator: MakeGenerator) -> None:
    generator, hero = make_generator(), _hero()
    pairs = cycle(100)
    banners = generator.render_locales("global-launch", pairs, images={"hero": hero}, seed=5)
    assert len(banners) == 100
    assert [b.locale for b in banners] == [locale for locale, _ in pairs]
    assert len({b.locale for b in banners}) == 100
    for i, (banner, (locale, fields)) in enumerate(zip(banners, pairs, strict=True)):
        assert banner.fields == fields
        assert (banner.generated.index, banner.generated.seed) == (i, 5)
        assert banner.generated.model_revision == generator.revision
        alone = generator.generate(GenerationSpec(model="template", width=64, height=64, template="global-launch",
                                                  fields=fields, locale=locale, seed=5), images={"hero": hero})
        assert banner.generated.image.tobytes() == alone[0].image.tobytes(), locale
    # The batch shares one base: banners differ only where their texts are.
    a, b = (np.asarray(banners[i].generated.image) for i in (0, 1))
    assert np.array_equal(a[:600], b[:600]) and not np.array_equal(a, b)


def test_batches_are_deterministic(make_generator: MakeGenerator) -> None:
    pairs = list(SAMPLES.items())
    first = make_generator().render_locales("global-launch", pairs, images={"hero": _hero()}, seed=1)
    again = make_generator().render_locales("global-launch", pairs, images={"hero": _hero()}, seed=1)
    assert [b.generated.image.tobytes() for b in first] == [b.generated.image.tobytes() for b in again]
    other = make_generator().render_locales("global-launch", pairs[:1], images={"hero": _hero()}, seed=2)
    assert other[0].generated.image.tobytes() != first[0].generated.image.tobytes()


@pytest.mark.parametrize(
    ("bad", "field", "rule"),
    [
        ({"headline": "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichen"}, "fields.headline",
         "text_fits"),  # one word wider than the slot
        ({"cta": "Jetzt einkaufen, solange der Vorrat reicht"}, "fields.cta", "max_chars"),
        ({"subline": UNCOVERED["th"]["subline"]}, "fields.subline", "font_coverage"),
        ({"headline": None}, "fields.headline", "non_empty_string"),
        ({"footer": "x"}, "fields.footer", "unknown_field"),
    ],
)
def test_an_error_names_the_locale_and_the_slot(make_generator: MakeGenerator, bad: dict, field: str,
                                                rule: str) -> None:
    pairs: list[tuple[str, Any]] = cycle(60)
    pairs[41] = ("de-AT", {**SAMPLES["de"], **bad})
    with pytest.raises(InvalidInput) as caught:
        make_generator().render_locales("global-launch", pairs)
    error = caught.value
    assert (error.field, error.rule) == (f"locales.de-AT.{field}", rule)
    assert error.detail.startswith("locale 'de-AT': ") and error.extensions["locale"] == "de-AT"
    assert error.to_problem()["locale"] == "de-AT"


@pytest.mark.parametrize(
    ("pairs", "field", "rule"),
    [
        ([], "locales", "non_empty"),
        ([("en", SAMPLES["en"]), ("EN", SAMPLES["en"])], "locales[1]", "unique_locale"),
        ([("english please", SAMPLES["en"])], "locales[0]", "locale_tag"),
        ([(None, SAMPLES["en"])], "locales[0]", "locale_tag"),
    ],
)
def test_bad_locale_lists_are_refused(make_generator: MakeGenerator, pairs: list, field: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        make_generator().render_locales("global-launch", pairs)
    assert (caught.value.field, caught.value.rule) == (field, rule)


def test_unknown_template_is_refused(make_generator: MakeGenerator) -> None:
    with pytest.raises(InvalidInput) as caught:
        make_generator().render_locales("nope", [("en", SAMPLES["en"])])
    assert (caught.value.field, caught.value.rule) == ("template", "known_template")


def test_without_a_hero_image_the_background_shows(make_generator: MakeGenerator) -> None:
    banner = make_generator().render_locales("global-launch", [("en", SAMPLES["en"])])[0].generated.image
    with_hero = make_generator().render_locales("global-launch", [("en", SAMPLES["en"])],
                                                images={"hero": _hero()})[0].generated.image
    top, hero_top = np.asarray(banner)[:600], np.asarray(with_hero)[:600]
    assert not np.array_equal(top, hero_top)
    assert np.array_equal(np.asarray(banner)[900:], np.asarray(with_hero)[900:])  # text and panel unchanged
