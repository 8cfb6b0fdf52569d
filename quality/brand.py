"""Brand kits: a tenant's palette, logo, reference images, descriptors and fonts, read from the config directory,
and the palette compliance of an image.

Layout: ``<brands_dir>/<tenant>/<brand>/brand.yaml`` plus the files it names, relative to its own directory and
inside it. Every problem raises :class:`BrandKitError` naming the file, the field and the rule, so a broken kit is
refused at load time rather than scored wrongly at request time.

Palette compliance is the share of an image's pixels whose CIEDE2000 colour difference (CIE 142-2001; formulas and
test data: Sharma, Wu & Dalal 2005, "The CIEDE2000 color-difference formula: implementation notes, supplementary
test data, and mathematical observations", Color Res. Appl. 30(1)) to the nearest palette colour is at most
``palette_max_delta_e``. Colours are compared in CIELAB from sRGB under D65 (scikit-image's ``rgb2lab``).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from PIL import Image, ImageFont, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

    from quality.clip_model import ClipModel

KIT_FILE = "brand.yaml"
DEFAULT_MAX_DELTA_E = 10.0
# Images are measured at most this many pixels on their longest side. Nearest-neighbour downscaling keeps a sample
# of the image's own pixels; an averaging filter would invent blended colours that are in neither image nor palette.
# 128 gives up to 16384 samples (a share to within about +-0.8% at 95%) and costs ~25-50 ms for a noisy 512x512
# image with a 5-colour palette on one loaded CPU core (CIEDE2000 per distinct colour x palette colour).
PALETTE_MAX_SIDE = 128
# The anchor the descriptors are contrasted with when a kit names no off-brand texts: "a generic picture".
DEFAULT_OFF_BRAND = ("an image", "a photo", "a picture")
_KEYS = ("palette", "palette_max_delta_e", "logo", "references", "descriptors", "off_brand", "fonts", "weights")
_HEX = re.compile(r"#[0-9a-fA-F]{6}")
_DOMAIN = b"mediagate-brand-kit-v1\x00"  # domain separation: a kit revision is never any other file's hash


class BrandKitError(ValueError):
    """A brand kit is unusable; ``path``, ``field`` and ``rule`` say where and why."""

    def __init__(self, path: Path, field: str, rule: str) -> None:
        super().__init__(f"{path}: `{field}` {rule}")
        self.path = path
        self.field = field
        self.rule = rule


@dataclass(frozen=True)
class PaletteColour:
    name: str
    hex: str  # "#rrggbb", lower case
    lab: tuple[float, float, float]


@dataclass(frozen=True)
class BrandWeights:
    """How the brand score mixes its terms (see ``quality.brand_score``); terms a kit lacks drop out."""

    palette: float = 0.3
    text: float = 0.35
    references: float = 0.35


def hex_to_lab(value: str) -> tuple[float, float, float]:
    """CIELAB (D65) of an sRGB ``#rrggbb`` colour."""
    from skimage.color import rgb2lab

    rgb = np.array([[[int(value[i:i + 2], 16) for i in (1, 3, 5)]]], dtype=np.float64) / 255.0
    lab = rgb2lab(rgb)[0, 0]
    return float(lab[0]), float(lab[1]), float(lab[2])


def nearest_delta_e(image: Image.Image, palette_lab: np.ndarray, *, max_side: int = PALETTE_MAX_SIDE) -> np.ndarray:
    """CIEDE2000 distance from each pixel of ``image`` (downscaled to ``max_side``) to its nearest palette colour.

    Each distinct colour is converted and compared once, so flat images cost almost nothing.
    """
    from skimage.color import deltaE_ciede2000, rgb2lab

    if palette_lab.ndim != 2 or palette_lab.shape[0] == 0 or palette_lab.shape[1] != 3:
        raise ValueError(f"`palette_lab` has to be a non-empty (colours, 3) array but has shape {palette_lab.shape}")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.NEAREST)
    pixels = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    if pixels.size == 0:
        raise ValueError(f"`image` has to be non-empty but is {image.width}x{image.height}")
    packed = (pixels[:, 0].astype(np.int32) << 16) | (pixels[:, 1].astype(np.int32) << 8) | pixels[:, 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    unique_rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=-1) / 255.0
    lab = rgb2lab(unique_rgb[None, :, :])[0]
    nearest = deltaE_ciede2000(lab[:, None, :], palette_lab[None, :, :]).min(axis=1)
    return np.asarray(nearest[inverse.reshape(-1)], dtype=np.float64)


def palette_compliance(
    image: Image.Image, palette_lab: np.ndarray, max_delta_e: float, *, max_side: int = PALETTE_MAX_SIDE
) -> tuple[float, float]:
    """(share of pixels within ``max_delta_e`` of the palette, mean distance to the nearest palette colour)."""
    distances = nearest_delta_e(image, palette_lab, max_side=max_side)
    return float(np.count_nonzero(distances <= max_delta_e) / distances.size), float(distances.mean())


@dataclass(frozen=True)
class BrandKit:
    """One brand of one tenant, as its ``brand.yaml`` describes it. ``revision`` hashes the yaml and every file it
    names, for the audit entry. Reference and logo embeddings are computed on first use and kept per CLIP model
    revision; the image bytes were read (and hashed) at load time, so the embeddings match ``revision``."""

    tenant: str
    brand: str
    directory: Path
    revision: str
    palette: tuple[PaletteColour, ...] = ()
    palette_max_delta_e: float = DEFAULT_MAX_DELTA_E
    logo: Path | None = None
    references: tuple[Path, ...] = ()
    descriptors: tuple[str, ...] = ()
    off_brand: tuple[str, ...] = ()
    fonts: tuple[Path, ...] = ()
    weights: BrandWeights = BrandWeights()
    image_data: tuple[bytes, ...] = field(default=(), repr=False, compare=False)  # references, then the logo
    _embeddings: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @property
    def palette_lab(self) -> np.ndarray:
        return np.array([c.lab for c in self.palette], dtype=np.float64).reshape(-1, 3)

    def palette_compliance(self, image: Image.Image, *, max_side: int = PALETTE_MAX_SIDE) -> tuple[float, float]:
        """(compliance, mean CIEDE2000 distance) of ``image`` against this kit's palette and tolerance."""
        return palette_compliance(image, self.palette_lab, self.palette_max_delta_e, max_side=max_side)

    def image_embeddings(self, model: ClipModel) -> torch.Tensor:
        """Unit-length embeddings of the reference images and then the logo; ``(0, dim)`` when the kit has none."""
        with self._lock:
            cached = self._embeddings.get(model.revision)
            if cached is None:
                images = [Image.open(io.BytesIO(data)).convert("RGB") for data in self.image_data]
                cached = model.encode_images(images)
                self._embeddings[model.revision] = cached
            return cached


class BrandKits:
    """Every loaded kit, read-only, by ``(tenant, brand)``: ``kits[tenant, brand]``, ``in``, iteration and ``len``
    as a mapping has them; ``get`` and ``names`` in the shape the gateway's ``BrandDirectory`` asks for."""

    def __init__(self, kits: Mapping[tuple[str, str], BrandKit]) -> None:
        self._kits = dict(kits)

    def __getitem__(self, key: tuple[str, str]) -> BrandKit:
        return self._kits[key]

    def __contains__(self, key: object) -> bool:
        return key in self._kits

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._kits)

    def __len__(self) -> int:
        return len(self._kits)

    def items(self) -> Iterator[tuple[tuple[str, str], BrandKit]]:
        return iter(self._kits.items())

    def get(self, tenant: str, brand: str) -> BrandKit | None:
        """The tenant's kit named ``brand``, or None."""
        return self._kits.get((tenant, brand))

    def names(self, tenant: str) -> list[str]:
        """The tenant's brand names, sorted."""
        return sorted(brand for t, brand in self._kits if t == tenant)


def _texts(path: Path, name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BrandKitError(path, name, f"has to be a list of texts but is {value!r}")
    texts = tuple(" ".join(v.split()) for v in value)
    if not all(texts):
        raise BrandKitError(path, name, "has to contain no empty texts")
    return texts


def _palette(path: Path, value: Any) -> tuple[PaletteColour, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BrandKitError(path, "palette", f"has to be a list of \"#rrggbb\" colours or {{name, hex}} but is "
                                             f"{value!r}")
    colours = []
    for i, entry in enumerate(value):
        where = f"palette[{i}]"
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - {"name", "hex"})
            if unknown:
                raise BrandKitError(path, where, f"may only have the keys name and hex, not {', '.join(unknown)}")
            hex_value, name = entry.get("hex"), entry.get("name")
            if name is not None and not isinstance(name, str):
                raise BrandKitError(path, f"{where}.name", f"has to be a text but is {name!r}")
        else:
            hex_value, name = entry, None
        if not isinstance(hex_value, str) or not _HEX.fullmatch(hex_value):
            raise BrandKitError(path, where, f"has to be a hex colour \"#rrggbb\" but is {hex_value!r}")
        hex_value = hex_value.lower()
        colours.append(PaletteColour(name or hex_value, hex_value, hex_to_lab(hex_value)))
    return tuple(colours)


def _positive_number(path: Path, name: str, value: Any, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        rule = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise BrandKitError(path, name, f"has to be {rule} but is {value!r}")
    return float(value)


def _file(path: Path, name: str, value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise BrandKitError(path, name, f"has to be a file name relative to {path.parent} but is {value!r}")
    root = path.parent.resolve()
    target = (root / value).resolve()
    if not target.is_relative_to(root):
        raise BrandKitError(path, name, f"has to name a file inside {path.parent}, but {value!r} is outside it")
    if not target.is_file():
        raise BrandKitError(path, name, f"names {value!r}, which does not exist")
    return target


def _image(path: Path, name: str, file: Path) -> bytes:
    data = file.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise BrandKitError(path, name, f"names {file.name!r}, which is not a readable image: {exc}") from exc
    return data


def _weights(path: Path, value: Any) -> BrandWeights:
    if value is None:
        return BrandWeights()
    if not isinstance(value, dict):
        raise BrandKitError(path, "weights", f"has to be a mapping of palette/text/references to numbers but is "
                                             f"{value!r}")
    unknown = sorted(set(value) - {"palette", "text", "references"})
    if unknown:
        raise BrandKitError(path, "weights", f"may only have the keys palette, text and references, not "
                                             f"{', '.join(map(str, unknown))}")
    return BrandWeights(**{k: _positive_number(path, f"weights.{k}", v, allow_zero=True) for k, v in value.items()})


def _revision(path: Path, raw: bytes, files: Sequence[Path]) -> str:
    digest = hashlib.sha256(_DOMAIN)
    for name, data in [(KIT_FILE, raw), *((f.relative_to(path.parent.resolve()).as_posix(), f.read_bytes())
                                          for f in dict.fromkeys(files))]:
        encoded = name.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
        digest.update(len(data).to_bytes(8, "big") + hashlib.sha256(data).digest())
    return digest.hexdigest()[:12]


def load_brand_kit(directory: Path, tenant: str, brand: str) -> BrandKit:
    """The kit described by ``directory/brand.yaml``."""
    path = Path(directory) / KIT_FILE
    if not path.is_file():
        raise BrandKitError(path, KIT_FILE, "is missing: every brand directory needs one")
    raw = path.read_bytes()
    try:
        spec = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise BrandKitError(path, KIT_FILE, f"has to be valid YAML: {exc}") from exc
    if not isinstance(spec, dict):
        raise BrandKitError(path, KIT_FILE, f"has to be a mapping of {', '.join(_KEYS)} but is {spec!r}")
    unknown = sorted(str(k) for k in spec if k not in _KEYS)
    if unknown:
        raise BrandKitError(path, unknown[0], f"is not a brand kit key (known: {', '.join(_KEYS)})")

    palette = _palette(path, spec.get("palette"))
    max_delta_e = _positive_number(path, "palette_max_delta_e", spec.get("palette_max_delta_e", DEFAULT_MAX_DELTA_E))
    references_spec = spec.get("references") or []
    if not isinstance(references_spec, list):
        raise BrandKitError(path, "references", f"has to be a list of image files but is {references_spec!r}")
    references = tuple(_file(path, f"references[{i}]", v) for i, v in enumerate(references_spec))
    image_data = [_image(path, f"references[{i}]", f) for i, f in enumerate(references)]
    logo = None if spec.get("logo") is None else _file(path, "logo", spec["logo"])
    if logo is not None:
        image_data.append(_image(path, "logo", logo))
    descriptors = _texts(path, "descriptors", spec.get("descriptors"))
    off_brand = _texts(path, "off_brand", spec.get("off_brand"))
    if not descriptors and not references:
        # Fail closed: with nothing to compare an image with, the brand score would measure nothing.
        raise BrandKitError(path, "descriptors", "may only be empty when `references` names at least one image")
    fonts_spec = spec.get("fonts") or []
    if not isinstance(fonts_spec, list):
        raise BrandKitError(path, "fonts", f"has to be a list of font files but is {fonts_spec!r}")
    fonts = tuple(_file(path, f"fonts[{i}]", v) for i, v in enumerate(fonts_spec))
    for i, font in enumerate(fonts):
        try:
            ImageFont.truetype(str(font), size=16)
        except OSError as exc:
            raise BrandKitError(path, f"fonts[{i}]", f"names {font.name!r}, which is not a font PIL can load: "
                                                     f"{exc}") from exc
    weights = _weights(path, spec.get("weights"))
    present = (weights.palette if palette else 0.0) + (weights.text if descriptors else 0.0) + (
        weights.references if references or logo else 0.0)
    if present <= 0:
        raise BrandKitError(path, "weights", "has to give a weight > 0 to at least one term the kit has (palette, "
                                             "text for descriptors, references for references/logo)")
    revision = _revision(path, raw, [*references, *([logo] if logo else []), *fonts])
    return BrandKit(tenant, brand, path.parent.resolve(), revision, palette, max_delta_e, logo, references, descriptors,
                    off_brand, fonts, weights, tuple(image_data))


def load_brand_kits(brands_dir: Path) -> BrandKits:
    """Every kit under ``brands_dir/<tenant>/<brand>/``. Hidden entries and plain files at the tenant and brand
    levels (a README) are skipped; a brand directory without ``brand.yaml`` is an error, not a silent skip."""
    root = Path(brands_dir)
    if not root.is_dir():
        raise BrandKitError(root, "brands_dir", "has to be an existing directory")
    kits: dict[tuple[str, str], BrandKit] = {}
    for tenant_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for brand_dir in sorted(p for p in tenant_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            kits[(tenant_dir.name, brand_dir.name)] = load_brand_kit(brand_dir, tenant_dir.name, brand_dir.name)
    return BrandKits(kits)
