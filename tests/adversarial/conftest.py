"""Fixtures of the gate-target tests: sample images (photographs bundled in scikit-image, synthetic frames; nothing
downloaded, nothing explicit), the targets themselves (built once: open_nsfw converts in ~1-3 s), a tiny seeded CLIP
and brand kits written to a temporary directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
import yaml
from PIL import Image, ImageFilter

from quality.brand import BrandKit, load_brand_kit
from quality.clip_model import ClipModel, build_tiny_clip

# Photographs inside the scikit-image wheel (read from its folder, so nothing can be downloaded): a portrait, food,
# a cat, a night scene, a microscope slide and a fundus photograph, from 300x451 to 1411x1411 pixels.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "ihc", "retina")

KitFactory = Callable[..., BrandKit]


def photo(name: str) -> Image.Image:
    folder = Path(skimage.data.__file__).parent
    path = next(folder / f"{name}{ext}" for ext in (".png", ".jpg") if (folder / f"{name}{ext}").is_file())
    with Image.open(path) as image:
        return image.convert("RGB")


def synthetic() -> dict[str, Image.Image]:
    """Frames with the defects and edge cases the scorers care about, each at its own size."""
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0, 255, 120)[None, :, None], (80, 1, 3)).astype(np.uint8)
    skin = np.clip(np.array([224, 172, 140])[None, None, :] + rng.normal(0, 12, (160, 200, 3)), 0, 255)
    return {
        "noise": Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)),
        "grey": Image.new("RGB", (64, 64), (128, 128, 128)),
        "black": Image.new("RGB", (64, 48), (0, 0, 0)),
        "red": Image.new("RGB", (64, 48), (255, 0, 0)),
        "ramp": Image.fromarray(ramp),
        "skin": Image.fromarray(skin.astype(np.uint8)),
        "blurred": photo("astronaut").resize((300, 300)).filter(ImageFilter.GaussianBlur(6)),
    }


@pytest.fixture(scope="session")
def sample_images() -> dict[str, Image.Image]:
    """Every sample image by name, at its own size."""
    return {**{name: photo(name) for name in PHOTOS}, **synthetic()}


@pytest.fixture(scope="session")
def sample_batch(sample_images: dict[str, Image.Image]) -> list[Image.Image]:
    """The sample images at one size (256x256, the NSFW preprocessing's own), so they stack into one tensor."""
    return [image.resize((256, 256), Image.Resampling.BICUBIC) for image in sample_images.values()]


@pytest.fixture(scope="session")
def nsfw_target() -> Any:
    from adversarial.target_nsfw import NsfwTarget

    return NsfwTarget()


@pytest.fixture(scope="session")
def quality_target() -> Any:
    from adversarial.target_quality import QualityTarget

    return QualityTarget()


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny")


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir: Path) -> ClipModel:
    return ClipModel(tiny_clip_dir, device="cpu")


@pytest.fixture(scope="session")
def make_brand_kit(tmp_path_factory: pytest.TempPathFactory) -> KitFactory:
    """Factory: a loaded kit from ``spec`` (brand.yaml content), with ``references`` (names of sample photographs)
    copied into its directory."""
    root = tmp_path_factory.mktemp("brands")

    def make(spec: dict[str, Any], *, references: tuple[str, ...] = (), tenant: str = "acme") -> BrandKit:
        directory = root / tenant / f"kit{len(list(root.glob('*/kit*')))}"
        directory.mkdir(parents=True)
        for name in references:
            photo(name).resize((96, 96)).save(directory / f"{name}.png")
        names = {"references": [f"{name}.png" for name in references]} if references else {}
        (directory / "brand.yaml").write_text(yaml.safe_dump({**spec, **names}))
        return load_brand_kit(directory, tenant, directory.name)

    return make


@pytest.fixture(scope="session")
def brand_kit(make_brand_kit: KitFactory) -> BrandKit:
    """A kit with all three terms: a warm palette, descriptors, and the coffee photograph as reference."""
    return make_brand_kit({"palette": ["#ff0000", "#202020", "#f0e0d0"], "descriptors": ["bold red", "warm coffee"],
                     "off_brand": ["dull grey"]}, references=("coffee",))


@pytest.fixture(scope="session")
def brand_target(tiny_clip: ClipModel, brand_kit: BrandKit) -> Any:
    from adversarial.target_brand import BrandTarget

    return BrandTarget(tiny_clip, brand_kit)
