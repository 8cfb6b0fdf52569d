"""Packaged fonts for the template compositor: font families, per-script fallback and glyph coverage.

Every face ships in a wheel from PyPI (SIL Open Font License 1.1), so nothing is looked up on the host or fetched
at run time, and the same packages give the same pixels everywhere:

=====================  ===========================  ===============================================================
face                   package                      covers
=====================  ===========================  ===============================================================
Noto Sans / Serif      fontpkg-noto-sans / -serif   Latin (with accents), Cyrillic, Greek, Devanagari
Noto Sans Arabic       fontpkg-noto-sans-arabic     Arabic (Persian and Urdu letters too), Arabic-Indic digits
Noto Sans/Serif Hebrew pylopdf-fonts-he             Hebrew
Noto Sans CJK          noto-cjk-sans-otc            Chinese (SC, TC, HK glyph forms), Japanese, Korean
=====================  ===========================  ===============================================================

A template slot names a family (``sans`` or ``serif``); its *chain* is the family's main face followed by the script
faces. Each character is drawn with the first face of the chain that has a glyph for it (:func:`assign_faces`);
the Chinese/Japanese/Korean face is picked by the locale, because Han characters are drawn differently in each.
There is no serif Devanagari, Arabic or CJK face in the packages: the serif chain falls back to the sans ones for
those scripts.

Shaping (Arabic joining, Devanagari conjuncts, mirrored brackets) and right-to-left runs need Pillow's Raqm layout
engine (libraqm, bundled with Pillow's wheels). On a Pillow without it, text in those scripts is refused instead of
being drawn unjoined or backwards (:func:`needs_shaping`).
"""

from __future__ import annotations

import math
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import metadata, resources

from PIL import Image, ImageDraw, ImageFont, features

Font = ImageFont.FreeTypeFont
Ink = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)

FAMILIES = ("sans", "serif")
REGULAR = 400
_NOTDEF_PROBE = "\U0010fffd"  # a private-use code point no font maps, so it draws the font's "missing glyph" box
_PACKAGES = ("fontpkg-noto-sans", "fontpkg-noto-serif", "fontpkg-noto-sans-arabic", "pylopdf-fonts-he",
             "noto-cjk-sans-otc")


@dataclass(frozen=True)
class Face:
    """One font face inside an installed package: ``module``'s resource ``file``, face ``index`` of a collection.

    ``pitch`` is the baseline-to-baseline distance, as a multiple of the size, that lines set in it need: scripts
    with tall marks (Arabic) or square ideographs need more than Latin. Variable fonts are set to weight 400: the
    packaged Noto Sans Hebrew, for one, defaults to Thin.
    """

    key: str
    module: str
    file: str
    index: int = 0
    pitch: float = 1.15
    variable: bool = True  # a variable font: loaded at its Regular (400) weight whatever its default instance

    def path(self) -> str:
        return _resource_path(self.module, self.file)


@cache
def _resource_path(module: str, file: str) -> str:
    try:
        path = resources.files(module) / file
    except ModuleNotFoundError as exc:
        raise RuntimeError(f"the font package providing {module!r} is not installed; it is one of mediagate's "
                           f"dependencies ({', '.join(_PACKAGES)})") from exc
    if not path.is_file():
        raise RuntimeError(f"font file {file!r} is missing from the installed package {module!r}")
    return str(path)


NOTO_SANS = Face("noto-sans", "fontpkg_noto_sans", "files/NotoSans[wdth,wght].ttf")
NOTO_SERIF = Face("noto-serif", "fontpkg_noto_serif", "files/NotoSerif[wdth,wght].ttf")
NOTO_SANS_ARABIC = Face("noto-sans-arabic", "fontpkg_noto_sans_arabic", "files/NotoSansArabic[wdth,wght].ttf",
                        pitch=1.4)
NOTO_SANS_HEBREW = Face("noto-sans-hebrew", "pylopdf_fonts_he", "NotoSansHebrew-Variable.ttf", pitch=1.2)
NOTO_SERIF_HEBREW = Face("noto-serif-hebrew", "pylopdf_fonts_he", "NotoSerifHebrew-Variable.ttf", pitch=1.2)
# The faces of NotoSansCJK-Regular.ttc, in the collection's order.
_CJK_INDEX = {"jp": 0, "kr": 1, "sc": 2, "tc": 3, "hk": 4}
CJK = {region: Face(f"noto-sans-cjk-{region}", "noto_cjk_sans_otc", "NotoSansCJK-Regular.ttc", index, pitch=1.3,
                    variable=False) for region, index in _CJK_INDEX.items()}


def cjk_region(locale: str | None) -> str:
    """The Noto CJK region whose Han glyph forms suit ``locale`` (a BCP 47 tag); Simplified Chinese by default."""
    parts = (locale or "").lower().replace("_", "-").split("-")
    language, rest = parts[0], set(parts[1:])
    if language == "ja":
        return "jp"
    if language == "ko":
        return "kr"
    if language in ("zh", "yue"):
        if rest & {"hk", "mo"}:
            return "hk"
        if rest & {"hant", "tw"} or language == "yue":
            return "tc"
    return "sc"


def chain(family: str, locale: str | None = None) -> tuple[Face, ...]:
    """The faces a slot of ``family`` draws with, in fallback order, for ``locale``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown font family {family!r}; known: {', '.join(FAMILIES)}")
    cjk = CJK[cjk_region(locale)]
    if family == "serif":
        return NOTO_SERIF, NOTO_SANS, NOTO_SANS_ARABIC, NOTO_SERIF_HEBREW, cjk  # Noto Sans: for Devanagari
    return NOTO_SANS, NOTO_SANS_ARABIC, NOTO_SANS_HEBREW, cjk


def default_engine() -> ImageFont.Layout:
    """Raqm (shaping and bidi) where this Pillow has it, else the basic engine, which can only do simple scripts."""
    return ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC


def load(face: Face, size: int, engine: ImageFont.Layout) -> Font:
    font = ImageFont.truetype(face.path(), size, index=face.index, layout_engine=engine)
    if face.variable:
        axes = font.get_variation_axes()
        font.set_variation_by_axes([float(REGULAR if axis["name"] in (b"Weight", "Weight") else axis["default"] or 0)
                                    for axis in axes])
    return font


_probe = threading.local()  # per thread: a FreeType face must not be used by two threads at once


@lru_cache(maxsize=65536)
def covers(face: Face, char: str) -> bool:
    """Whether ``face`` has a glyph for ``char``: a character it does not map draws its "missing glyph" box."""
    return _glyph_pixels(face, char) != _notdef_pixels(face)


@lru_cache(maxsize=64)
def _notdef_pixels(face: Face) -> bytes:
    return _glyph_pixels(face, _NOTDEF_PROBE)


def _glyph_pixels(face: Face, char: str) -> bytes:
    fonts: dict[Face, Font] = _probe.__dict__.setdefault("fonts", {})
    if face not in fonts:
        fonts[face] = load(face, 24, ImageFont.Layout.BASIC)  # one glyph: no shaping needed, same on every Pillow
    image = Image.new("L", (64, 64))
    ImageDraw.Draw(image).text((16, 44), char, font=fonts[face], fill=255, anchor="ls")
    return image.tobytes()


def assign_faces(text: str, faces: tuple[Face, ...]) -> list[Face | None]:
    """The face each character of ``text`` is drawn with (None: no face has it).

    Letters pick the first face of the chain with a glyph. Marks stay with their base letter; spaces, digits and
    punctuation stay with the face of the letter before them (or else after them) when it has them, so an Arabic
    price or the digits in a Japanese line stay in one run of one face rather than a patchwork of fallbacks.
    """
    own: list[Face | None] = []
    for char in text:
        if unicodedata.category(char)[0] == "L":
            own.append(next((f for f in faces if covers(f, char)), None))
        else:
            own.append(None)
    result: list[Face | None] = []
    for i, char in enumerate(text):
        if own[i] is not None:
            result.append(own[i])
            continue
        before = next((result[j] for j in range(i - 1, -1, -1) if result[j] is not None), None)
        after = next((own[j] for j in range(i + 1, len(text)) if own[j] is not None), None)
        # A letter here is one no face has; anything else tries its neighbours' faces first.
        neighbours = () if unicodedata.category(char)[0] == "L" else tuple(f for f in (before, after) if f)
        result.append(next((f for f in (*neighbours, *faces) if covers(f, char)), None))
    return result


def missing_glyphs(text: str, faces: tuple[Face, ...]) -> list[str]:
    """The distinct characters of ``text`` that no face of the chain can draw, in order of first use."""
    return [c for c in dict.fromkeys(text) if c != " " and not any(covers(f, c) for f in faces)]


def needs_shaping(char: str) -> bool:
    """Right-to-left letters and scripts whose letters change shape in context: only Raqm draws these right."""
    return unicodedata.bidirectional(char) in ("R", "AL") or 0x0900 <= ord(char) <= 0x097F


def fingerprint() -> dict[str, str]:
    """What decides the glyphs: font package versions and the layout libraries (hashed into the revision)."""
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "missing"
    for feature in ("freetype2", "raqm", "harfbuzz", "fribidi"):
        versions[feature] = str(features.version(feature))
    return versions


class Fonts:
    """Loaded faces and text measurements for one render call or one batch.

    A FreeType face must not be used by two threads at once, so a ``Fonts`` is never shared between calls; a batch
    keeps one for all its banners, which is much of what the batch saves.
    """

    def __init__(self, engine: ImageFont.Layout | None = None) -> None:
        self.engine = default_engine() if engine is None else engine
        self._fonts: dict[tuple[Face, int], Font] = {}
        self._lengths: dict[tuple[Face, int, str, str], float] = {}
        self._inks: dict[tuple[Face, int, str, str], Ink] = {}

    @property
    def shapes(self) -> bool:
        return self.engine == ImageFont.Layout.RAQM

    def font(self, face: Face, size: int) -> Font:
        key = (face, size)
        if key not in self._fonts:
            self._fonts[key] = load(face, size, self.engine)
        return self._fonts[key]

    def direction(self, direction: str) -> str | None:
        return direction if self.shapes else None  # the basic engine takes no direction (and draws only LTR)

    def length(self, face: Face, size: int, text: str, direction: str) -> float:
        """The advance of ``text`` set in one direction."""
        key = (face, size, text, direction)
        if key not in self._lengths:
            self._lengths[key] = self.font(face, size).getlength(text, direction=self.direction(direction))
        return self._lengths[key]

    def ink(self, face: Face, size: int, text: str, direction: str) -> Ink:
        """The ink box of ``text`` drawn at the origin (left baseline), rounded outwards to whole pixels."""
        key = (face, size, text, direction)
        if key not in self._inks:
            left, top, right, bottom = self.font(face, size).getbbox(text, anchor="ls",
                                                                     direction=self.direction(direction))
            self._inks[key] = (math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom))
        return self._inks[key]
