"""An invisible watermark in every released image whose payload names the image's audit record.

C2PA manifests live in metadata, which re-encoding and most upload pipelines strip; this mark lives in the pixels, so
an auditor can go from a re-encoded, resized copy back to the audit entry that stores its ``mark_id``.

Method: the DWT-DCT-SVD scheme of ``invisible-watermark`` 0.2.0 (``imwatermark.dwtDctSvd``; ShieldMnt, the
"dwtDctSvd" method), a combined DWT-DCT watermark (Al-Haj 2007, "Combined DWT-DCT Digital Image Watermarking",
J. Computer Science 3(9)) with quantisation index modulation (Chen and Wornell 2001, "Quantization Index Modulation",
IEEE Trans. Inf. Theory 47(4)): one Haar DWT level; the LL band in 4x4 blocks (8x8 pixels); each block's DCT; the
block's largest singular value quantised to a lattice of step ``SCALE``, the lattice offset carrying one bit. The
payload repeats over all blocks in raster order and is read back by majority vote.

We run the package's block coder (``EmbedDwtDctSvd.encode_frame`` / ``decode_frame``) batched over all blocks
with numpy (``embed_band`` / ``read_band``, tested equal to the package's loops, about 10x faster), but not its
image-level wrapper, which swaps the horizontal and vertical detail bands when it inverts the DWT (25-33 dB PSNR on
textured images, most of it not the mark), truncates instead of rounding back to 8 bits and refuses images under 256x256
pixels; and we move each value to the nearest reachable lattice point (``_quantise``), which gains about 2 dB PSNR
over the package's rule and lets white and saturated areas carry the mark. We mark luma only (chroma marks did not
survive 4:2:0 JPEG at quality 75 in our measurements). Not used: ``dwtDct`` (0.58-0.86 bit accuracy with no attack
at all; it lacks its DCT step, upstream issue #39) and ``rivaGan`` (32-bit payloads only, 0.7-0.8 bit accuracy with
no attack on gradients and noise, ~3.5 s per 1024x1024 image on a CPU).

Payload, 80 bits: a random 48-bit mark id, Reed-Solomon RS(10, 6) over GF(256) (``reedsolo``), XOR-whitened with a
fixed mask so that the constant words of blank or flat images are not code words. The reader accepts at most one
corrected byte (bounded-distance decoding of a distance-5 code), which keeps the rest of the code for detection: a
random word passes with probability (1 + 10 * 255) / 2**32, about 6e-7 per size tried, so an unmarked or destroyed
image reads as "no watermark", not as a wrong id. Against a 64-bit id + CRC-16 word, the code also reads more of the
small images back after JPEG and resizing (one wrong byte is corrected) and lets 25x fewer random words through.

Measured (``benchmarks/watermark.py``), from 192x192 pixels up every image came back after JPEG 50, 75 and 90,
resizes to 0.5 and 0.75, and JPEG 75 with a 0.75 resize in either order; at 128x128, 70-100% did. PSNR is about
43.7 dB; on flat colour a faint 8x8 block texture shows under zoom. The mark sits on the original pixel grid, so a
resized copy is read by scaling it back: pass the sizes the gateway produced as ``original_sizes``. Not survived:
crops (they shift the grid and the bit order), brightness or contrast changes (QIM is gain-sensitive), rotation, and
nearest-neighbour or box downscaling of textured images. Images under 128x128 pixels (256 blocks) are refused.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import reedsolo
from PIL import Image

# Recorded with each mark id. Bump it on any change to the constants below: old marks need the old reader.
SCHEME = "mediagate-wm-1"
MARK_ID_BYTES = 6
PARITY_BYTES = 4
PAYLOAD_BITS = 8 * (MARK_ID_BYTES + PARITY_BYTES)
# QIM lattice step on each block's largest singular value, chosen by measurement (benchmarks/watermark.py): 36, the
# package's default, (45.6 dB PSNR) loses flat-colour banners to JPEG 50; 40 loses some images resized to 0.75 and
# then saved as JPEG 75; 44 (43.7 dB) keeps every case but crops and brightness changes from 192 px up.
SCALE = 44.0
BLOCK = 4  # LL-band block side: 8x8 image pixels
MIN_BLOCKS = 256  # about three copies of the payload; 128x128 pixels
MAX_CORRECTED = 1  # RS(10, 6) could correct 2 bytes, but at 2 a random word would pass with probability ~7e-4
_MASK = hashlib.sha256(b"mediagate watermark whitening v1").digest()[: MARK_ID_BYTES + PARITY_BYTES]
# The largest singular value of a block's DCT is at most its Frobenius norm: 4x4 LL values of at most 2 * 255.
_MAX_VALUE = 4 * 2 * 255.0
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as in imwatermark's YUV conversion
_MODES = ("RGB", "RGBA", "L")


@dataclass(frozen=True)
class DecodeResult:
    """What ``decode`` read. ``mark_id`` is None when no valid watermark was found (the only negative answer)."""

    mark_id: bytes | None
    size: tuple[int, int]  # the size the image was read at: its own, or the original size it was scaled back to
    corrected: int  # Reed-Solomon bytes corrected in that read (0 or 1 when a mark was found)
    confidence: float  # mean |2 * vote - 1| over the payload bits: 0 is coin flips, 1 unanimous blocks
    raw_bits: bytes  # the 80 payload bits as read (de-whitened, before correction), 10 bytes

    @property
    def found(self) -> bool:
        return self.mark_id is not None


def new_mark_id() -> bytes:
    """A random 48-bit mark id. Ids are not checked for uniqueness here: among n images, a repeat has probability
    about n**2 / 2**49, so the audit store should hold them under a unique constraint and draw again on a clash."""
    return secrets.token_bytes(MARK_ID_BYTES)


def embed(image: Image.Image, mark_id: bytes) -> Image.Image:
    """A copy of ``image`` (same size, mode and ``info``) carrying ``mark_id``; RGB, RGBA (alpha kept) or L.

    Fails closed: if the mark cannot be read back from the clean result (an almost blank or saturated image has too
    few blocks whose value can move), this raises ``ValueError`` rather than return an image nobody could trace.
    """
    if len(mark_id) != MARK_ID_BYTES:
        raise ValueError(f"`mark_id` has to be {MARK_ID_BYTES} bytes but is {len(mark_id)}")
    if image.mode not in _MODES:
        raise ValueError(f"cannot watermark a {image.mode} image; convert it to one of {', '.join(_MODES)} first")
    _check_size(image.size)
    luma, rebuild = _split(image)
    bits = np.unpackbits(np.frombuffer(_encode_payload(mark_id), dtype=np.uint8))
    h4, w4 = (luma.shape[0] // 4) * 4, (luma.shape[1] // 4) * 4
    pywt = _pywt()
    band, details = pywt.dwt2(luma[:h4, :w4], "haar")
    embed_band(band, bits)
    marked_luma = luma.copy()
    marked_luma[:h4, :w4] = pywt.idwt2((band, details), "haar")
    marked = rebuild(marked_luma)
    marked.info = dict(image.info)
    check = decode(marked)
    if check.mark_id != mark_id:
        raise ValueError(f"the watermark could not be read back from the marked {image.width}x{image.height} image "
                         f"(confidence {check.confidence:.2f}): too few of its 8x8 blocks can carry it (blank or "
                         f"saturated areas)")
    return marked


def decode(image: Image.Image, original_sizes: Iterable[tuple[int, int]] = ()) -> DecodeResult:
    """Read the mark of ``image`` (any mode), at its own size and then scaled back to each of ``original_sizes``
    that has its aspect ratio (to within a pixel). The first read that passes the code wins; when none does, the
    result (``mark_id`` None) describes the most confident read.

    Each size tried adds about 6e-7 to the chance that an unmarked image passes, so pass the few sizes the gateway
    produced, not a sweep. Raises ``ValueError`` when no size to try is large enough to hold the mark.
    """
    w, h = image.size
    tried = dict.fromkeys([(w, h), *((int(ow), int(oh)) for ow, oh in original_sizes)])
    sizes = [s for s in tried if _same_shape((w, h), s)]
    usable = [s for s in sizes if _blocks(s) >= MIN_BLOCKS]
    if not usable:
        raise ValueError(f"a {w}x{h} image is too small to carry the watermark, which needs {_minimum()}; if it was "
                         f"scaled down, pass its original size in `original_sizes`")
    if image.mode not in _MODES:
        image = image.convert("RGB")
    luma = _split(image)[0].astype(np.float32)
    reads = []
    for size in usable:
        plane = luma if size == (w, h) else np.asarray(
            Image.fromarray(luma, "F").resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
        result = _read(plane.astype(np.float64), size)
        if result.found:
            return result
        reads.append(result)
    return max(reads, key=lambda r: r.confidence)  # for diagnosis: the read nearest to a mark


def _read(luma: np.ndarray, size: tuple[int, int]) -> DecodeResult:
    h4, w4 = (luma.shape[0] // 4) * 4, (luma.shape[1] // 4) * 4
    band, _ = _pywt().dwt2(luma[:h4, :w4], "haar")
    votes = read_band(band)
    word = bytes(a ^ b for a, b in zip(np.packbits(votes > 0.5).tobytes(), _MASK, strict=True))
    confidence = float(np.mean(np.abs(2 * votes - 1)))
    try:
        message, _, errata = _codec().decode(word)
    except reedsolo.ReedSolomonError:
        return DecodeResult(None, size, 0, confidence, word)
    if len(errata) > MAX_CORRECTED:
        return DecodeResult(None, size, len(errata), confidence, word)
    return DecodeResult(bytes(message), size, len(errata), confidence, word)


def _encode_payload(mark_id: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(bytes(_codec().encode(mark_id)), _MASK, strict=True))


def _split(image: Image.Image) -> tuple[np.ndarray, Callable[[np.ndarray], Image.Image]]:
    """The image's luma plane (float) and a function that rebuilds the image from a changed plane.

    For colour images the luma change is added to R, G and B alike, which moves luma by exactly that much and leaves
    both colour differences (B - Y, R - Y) as they were; where a channel would clip, the others take its share (a
    slight shift of saturated colours, without which a pure red could not carry the mark).
    """
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode == "L":
        return pixels, lambda luma: Image.fromarray(_to_uint8(luma), "L")
    rgb = pixels[..., :3]
    luma = rgb @ _LUMA

    def rebuild(new_luma: np.ndarray) -> Image.Image:
        out = rgb + (new_luma - luma)[..., None]
        for _ in range(3):  # a channel that clips passes its share of the change to those that can still move
            np.clip(out, 0, 255, out=out)
            missing = new_luma - out @ _LUMA
            room = np.where(missing[..., None] > 0, out < 255, out > 0)
            weight = room @ _LUMA
            share = np.divide(missing, weight, out=np.zeros_like(missing), where=weight > 0)
            out += room * share[..., None]
        result = pixels.copy()
        result[..., :3] = out
        return Image.fromarray(_to_uint8(result), image.mode)

    return luma, rebuild


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.rint(values), 0, 255), dtype=np.uint8)


def _check_size(size: tuple[int, int]) -> None:
    if _blocks(size) < MIN_BLOCKS:
        raise ValueError(f"a {size[0]}x{size[1]} image is too small to carry the watermark, which needs {_minimum()}")


def _blocks(size: tuple[int, int]) -> int:
    return (size[0] // 8) * (size[1] // 8)


def _minimum() -> str:
    return f"at least {MIN_BLOCKS} whole 8x8-pixel blocks (128x128 pixels or the same area)"


def _same_shape(seen: tuple[int, int], original: tuple[int, int]) -> bool:
    """Could ``seen`` be ``original`` scaled by one factor, to within rounding (a pixel either way)?"""
    (w, h), (ow, oh) = seen, original
    return ow > 0 and oh > 0 and abs(oh * w / ow - h) <= 1 and abs(ow * h / oh - w) <= 1


@lru_cache(maxsize=1)
def _codec() -> Any:
    return reedsolo.RSCodec(PARITY_BYTES)


def _quantise(value: float, bit: int, scale: float) -> float:
    """The point nearest ``value`` of the lattice ``(m + 1/4 + bit/2) * scale`` that a block can reach (QIM).

    The package moves to the point at or above ``floor(value / scale) * scale`` instead, which changes the value by up
    to 3/4 of a step rather than 1/2 and asks saturated blocks for values they cannot take (a white block cannot get
    brighter): we take the nearer of the two points around ``value`` that lies in ``[0, _MAX_VALUE]``. The reader's
    rule (``value mod scale > scale / 2`` means 1) is unchanged.
    """
    offset = (0.25 + 0.5 * bit) * scale
    below = np.floor((value - offset) / scale) * scale + offset
    candidates = [c for c in (below, below + scale) if 0 <= c <= _MAX_VALUE]
    return float(min(candidates, key=lambda c: abs(c - value)))


# The orthonormal 4x4 DCT-II matrix: cv2.dct(block) == _DCT @ block @ _DCT.T (to 1e-13).
_DCT = np.array([[(np.sqrt(1 / BLOCK) if k == 0 else np.sqrt(2 / BLOCK)) * np.cos(np.pi * (2 * i + 1) * k / (2 * BLOCK))
                  for i in range(BLOCK)] for k in range(BLOCK)])


def _block_view(band: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The band's whole 4x4 blocks as (n, 4, 4), in the package's raster order (row by row)."""
    rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
    blocks = band[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3)
    return blocks.reshape(-1, BLOCK, BLOCK), rows, cols


def embed_band(band: np.ndarray, bits: np.ndarray) -> None:
    """``EmbedDwtDctSvd.encode_frame`` with ``_quantise``, on every block at once (in place).

    The same maths as the package's per-block loop (block DCT, SVD, the largest singular value moved to the QIM
    lattice, back), batched with numpy: about 10x faster at 1024 px, where the loop made the watermark the slowest
    stage of the flow. ``tests/audit/test_watermark.py`` checks it against the package's embedder.
    """
    blocks, rows, cols = _block_view(band)
    u, s, vt = np.linalg.svd(_DCT @ blocks @ _DCT.T)
    wanted = np.resize(np.asarray(bits, dtype=np.float64), len(blocks))
    offset = (0.25 + 0.5 * wanted) * SCALE
    below = np.floor((s[:, 0] - offset) / SCALE) * SCALE + offset
    above = below + SCALE
    below_ok, above_ok = (below >= 0) & (below <= _MAX_VALUE), (above >= 0) & (above <= _MAX_VALUE)
    nearer_above = np.abs(above - s[:, 0]) < np.abs(below - s[:, 0])  # ties go below, as min() does
    s[:, 0] = np.where(above_ok & (nearer_above | ~below_ok), above, below)
    marked = _DCT.T @ (u @ (s[:, :, None] * vt)) @ _DCT
    band[: rows * BLOCK, : cols * BLOCK] = marked.reshape(rows, cols, BLOCK, BLOCK).transpose(0, 2, 1, 3).reshape(
        rows * BLOCK, cols * BLOCK)


def read_band(band: np.ndarray) -> np.ndarray:
    """Per payload bit, the share of blocks voting 1 (``EmbedDwtDctSvd.decode_frame``, batched)."""
    blocks, _, _ = _block_view(band)
    s0 = np.linalg.svd(_DCT @ blocks @ _DCT.T, compute_uv=False)[:, 0]
    ones = (np.mod(s0, SCALE) > SCALE * 0.5).astype(np.float64)
    slots = np.arange(len(blocks)) % PAYLOAD_BITS
    return np.bincount(slots, weights=ones, minlength=PAYLOAD_BITS) / np.bincount(slots, minlength=PAYLOAD_BITS)


@lru_cache(maxsize=1)
def _pywt() -> Any:
    import pywt

    return pywt


@lru_cache(maxsize=1)
def _backend() -> tuple[Any, Any]:
    """PyWavelets and the package's block embedder (the reference ``embed_band`` and ``read_band`` are tested
    against), imported on first use: ``imwatermark`` imports torch and cv2."""
    import cv2
    import pywt
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    class Embedder(EmbedDwtDctSvd):
        """The package's block embedder with the nearest reachable lattice point (``_quantise``)."""

        def diffuse_dct_svd(self, block: np.ndarray, bit: int, scale: float) -> np.ndarray:
            u, s, v = np.linalg.svd(cv2.dct(block))
            s[0] = _quantise(float(s[0]), int(bit), scale)
            return np.asarray(cv2.idct(u @ np.diag(s) @ v))

    return pywt, Embedder
