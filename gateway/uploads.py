"""Images clients upload (``POST /v1/score``, ``POST /v1/provenance/verify``): read them safely or refuse clearly.

Pillow decodes lazily, so an image is opened, its declared size checked against a pixel limit *before* its pixels
are decoded (a decompression bomb declares a huge canvas in a few bytes), and then fully loaded to catch truncated
data. Every refusal names the field and the rule, and nothing is kept.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from gateway.errors import InvalidInput, PayloadTooLarge

# What scoring accepts: 8-bit greyscale or RGB. Everything else is refused rather than silently converted, because
# the conversion changes what is scored: alpha needs a background, CMYK an ICC profile, 16-bit a tone curve, and a
# palette image is usually a screenshot or GIF the caller should convert on purpose. (An alpha channel that is
# opaque everywhere, as design tools often save, is accepted: dropping it changes nothing.)
SCORABLE_MODES = ("RGB", "L")
_MODE_PROBLEMS = {
    "RGBA": "has an alpha channel", "LA": "has an alpha channel", "PA": "has an alpha channel",
    "RGBa": "has an alpha channel", "La": "has an alpha channel",
    "CMYK": "is CMYK", "YCbCr": "is YCbCr", "LAB": "is CIELAB", "HSV": "is HSV",
    "P": "is a palette image", "1": "is 1-bit",
    "I": "is 32-bit integer", "F": "is 32-bit float",
    "I;16": "is 16-bit", "I;16B": "is 16-bit", "I;16L": "is 16-bit", "I;16N": "is 16-bit",
}


def open_image(data: bytes, *, field: str, max_pixels: int) -> Image.Image:
    """Decode an uploaded image, refusing empty, unreadable, truncated, zero-size and over-limit ones."""
    if not data:
        raise InvalidInput(field, "non_empty", f"`{field}` is empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) between its own limit and twice it; our limit decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width == 0 or height == 0:
                raise InvalidInput(field, "non_empty_image", f"`{field}` is {width}x{height}: it has no pixels")
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"`{field}` is {width}x{height} ({width * height} pixels); the limit is {max_pixels} pixels",
                    field=field, rule="max_pixels", limit=max_pixels)
            image.load()
    except Image.DecompressionBombError as exc:  # Pillow's own guard, at twice its limit: refused before decoding
        raise PayloadTooLarge(f"`{field}` declares more pixels than any limit allows: {exc}", field=field,
                              rule="max_pixels", limit=max_pixels) from exc
    except UnidentifiedImageError as exc:  # Pillow's message names only the BytesIO object
        raise InvalidInput(field, "image_format", f"`{field}` is not an image this gateway can read: no known "
                           "image format (PNG, JPEG, WebP, GIF, BMP, TIFF...) recognises it, or its header is "
                           "corrupt or declares a zero size") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt data
        raise InvalidInput(field, "image_integrity", f"`{field}` is truncated or corrupt: {exc}") from exc
    return image


def scorable(image: Image.Image, *, field: str) -> Image.Image:
    """The image as RGB if it is 8-bit greyscale or RGB; otherwise a 422 naming its mode and what is accepted."""
    if image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema() == (255, 255):
        return image.convert("RGB")  # an alpha channel that is opaque everywhere changes nothing
    if image.mode not in SCORABLE_MODES:
        problem = _MODE_PROBLEMS.get(image.mode, f"has the colour mode {image.mode!r}")
        raise InvalidInput(
            field, "color_mode",
            f"`{field}` {problem} (mode {image.mode}); send 8-bit RGB or greyscale without alpha "
            "(flatten transparency and convert CMYK, 16-bit and palette images before scoring)",
            mode=image.mode)
    return image if image.mode == "RGB" else image.convert("RGB")
