"""Watermark benchmark: how often the mark id comes back after common edits, how visible the mark is, how long it takes.

Images are made offline: the two packaged banner templates (a flat and a gradient background, with text), a smooth
colour gradient, a texture with the 1/f^2 power spectrum of natural photographs (van der Schaaf and van Hateren
1996) and a blurred-noise texture; all square, at each size. Each image is marked with ``--trials`` random ids
(rotated by 90 degrees between trials) and then edited:

- JPEG at quality 50, 75, 90 (Pillow, 4:2:0 chroma subsampling);
- resize by 0.5 and 0.75 (bicubic); the reader is given the original size (``original_sizes``) to scale back to;
- a centre crop to 90% of each side; brightness +20% and -20% (``ImageEnhance.Brightness``);
- JPEG 75 then resize 0.75, and resize 0.75 then JPEG 75.

"bits" is the share of the 80 payload bits read right after scaling the edited image back to its original size;
"ids" is the share of images whose exact id ``decode`` returned; "wrong" counts ids returned that were not the one
embedded (and ids read from the unmarked originals), which must stay 0. ms are medians on this machine.
``--compare-methods`` prints the bit accuracy of the package's three methods through its own wrapper instead.

    python benchmarks/watermark.py --sizes 128,192,256,512,1024 --trials 2
    python benchmarks/watermark.py --compare-methods --sizes 512 --trials 1
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import reedsolo
from PIL import Image, ImageEnhance, ImageFilter

from audit.watermark import PARITY_BYTES, PAYLOAD_BITS, SCALE, SCHEME, decode, embed, new_mark_id
from generators.template import TemplateLibrary

Attack = Callable[[Image.Image], Image.Image]


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def resize(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.BICUBIC)


def crop(image: Image.Image, share: float = 0.9) -> Image.Image:
    w, h = round(image.width * share), round(image.height * share)
    left, top = (image.width - w) // 2, (image.height - h) // 2
    return image.crop((left, top, left + w, top + h))


def brightness(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


ATTACKS: dict[str, Attack] = {
    "none": lambda im: im,
    "JPEG 90": lambda im: jpeg(im, 90),
    "JPEG 75": lambda im: jpeg(im, 75),
    "JPEG 50": lambda im: jpeg(im, 50),
    "resize 0.75": lambda im: resize(im, 0.75),
    "resize 0.5": lambda im: resize(im, 0.5),
    "crop 90% (centre)": crop,
    "brightness +20%": lambda im: brightness(im, 1.2),
    "brightness -20%": lambda im: brightness(im, 0.8),
    "JPEG 75 + resize 0.75": lambda im: resize(jpeg(im, 75), 0.75),
    "resize 0.75 + JPEG 75": lambda im: jpeg(resize(im, 0.75), 75),
}


def banner(template_id: str, fields: dict[str, str], side: int) -> Image.Image:
    template = TemplateLibrary([TemplateLibrary.default_dir()]).get(template_id)
    assert template is not None, template_id
    return template.render(fields, seed=3).resize((side, side), Image.Resampling.LANCZOS)


def gradient(side: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    waves = [np.sin(2 * np.pi * (a * x + b * y) + p) for a, b, p in rng.uniform(0.3, 1.5, (3, 3))]
    return Image.fromarray(np.clip(np.stack(waves, -1) * 100 + 128, 0, 255).astype(np.uint8), "RGB")


def natural(side: int, seed: int) -> Image.Image:
    """Colour noise shaped to a 1/f^2 power spectrum, the average spectrum of natural photographs."""
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(side)[:, None], np.fft.rfftfreq(side)[None, :])
    f[0, 0] = 1.0
    shared = rng.standard_normal((side, side))
    planes = []
    for _ in range(3):
        spectrum = np.fft.rfft2(0.7 * shared + 0.3 * rng.standard_normal((side, side))) / f
        spectrum[0, 0] = 0
        plane = np.fft.irfft2(spectrum, s=(side, side))
        planes.append((plane - plane.mean()) / plane.std())
    return Image.fromarray(np.clip(np.stack(planes, -1) * 45 + 128, 0, 255).astype(np.uint8), "RGB")


def noise(side: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB").filter(ImageFilter.GaussianBlur(0.8))


def images(side: int) -> dict[str, Image.Image]:
    return {
        "banner, flat": banner("product-square", {"headline": "The new trail runner", "cta": "Buy now"}, side),
        "banner, gradient": banner("spring-sale", {"headline": "Spring sale", "subline": "Up to 30% off everything",
                                                   "cta": "Shop now"}, side),
        "gradient": gradient(side, 1),
        "1/f texture": natural(side, 2),
        "noise texture": noise(side, 3),
    }


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def compare_methods(sides: list[int], trials: int) -> None:
    """The package's own three methods through its own wrapper (``WatermarkEncoder``/``WatermarkDecoder``), payload
    bits without error correction: the measurements behind choosing ``dwtDctSvd`` and not using the wrapper."""
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    WatermarkEncoder.loadModel()  # rivaGan's ONNX models, shipped inside the wheel
    rng = np.random.default_rng(0)
    print("| method, size | PSNR dB | embed / decode ms | " + " | ".join(ATTACKS) + " |")
    print("|---|---|---|" + "---|" * len(ATTACKS))
    for method, n_bits in (("dwtDct", 64), ("dwtDctSvd", 64), ("rivaGan", 32)):
        for side in sides:
            accuracy: dict[str, list[float]] = {name: [] for name in ATTACKS}
            quality, embed_ms, decode_ms = [], [], []
            for original in images(side).values():
                for trial in range(trials):
                    image = original.rotate(90 * trial)
                    bits = rng.integers(0, 2, n_bits)
                    encoder = WatermarkEncoder()
                    encoder.set_watermark("bits", [int(b) for b in bits])
                    start = time.perf_counter()
                    bgr = encoder.encode(np.ascontiguousarray(np.asarray(image)[..., ::-1]), method)
                    embed_ms.append(1000 * (time.perf_counter() - start))
                    marked = Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))
                    quality.append(psnr(image, marked))
                    for name, attack in ATTACKS.items():
                        edited = attack(marked)
                        if edited.size != image.size:
                            edited = edited.resize(image.size, Image.Resampling.BICUBIC)
                        start = time.perf_counter()
                        read = WatermarkDecoder("bits", n_bits).decode(
                            np.ascontiguousarray(np.asarray(edited)[..., ::-1]), method)
                        decode_ms.append(1000 * (time.perf_counter() - start))
                        accuracy[name].append(float(np.mean(np.asarray(read, dtype=int) == bits)))
            cells = " | ".join(f"{statistics.mean(accuracy[name]):.2f}" for name in ATTACKS)
            print(f"| {method} ({n_bits} bits), {side} px | {statistics.mean(quality):.1f} | "
                  f"{statistics.median(embed_ms):.0f} / {statistics.median(decode_ms):.0f} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,256,512,1024", help="comma-separated square sides in pixels")
    parser.add_argument("--trials", type=int, default=2, help="random ids per image (each on a rotated copy)")
    parser.add_argument("--compare-methods", action="store_true",
                        help="instead, bit accuracy of the package's dwtDct, dwtDctSvd and rivaGan through its own "
                             "wrapper (it needs 256x256 or more; rivaGan takes seconds per 1024 px image)")
    args = parser.parse_args()
    sides = [int(s) for s in args.sizes.split(",")]
    if args.compare_methods:
        compare_methods([s for s in sides if s >= 256], args.trials)
        return

    bits: dict[tuple[str, int], list[float]] = {}
    ids: dict[tuple[str, int], list[bool]] = {}
    wrong = 0
    codec = reedsolo.RSCodec(PARITY_BYTES)  # raw_bits are the code word before whitening
    quality: dict[int, list[float]] = {}
    embed_ms: dict[int, list[float]] = {}
    decode_ms: dict[int, list[float]] = {}
    for side in sides:
        quality[side], embed_ms[side], decode_ms[side] = [], [], []
        for original in images(side).values():
            wrong += decode(original).found  # an unmarked image must read as "no watermark"
            for trial in range(args.trials):
                image = original.rotate(90 * trial)
                mark_id = new_mark_id()
                start = time.perf_counter()
                marked = embed(image, mark_id)
                embed_ms[side].append(1000 * (time.perf_counter() - start))
                quality[side].append(psnr(image, marked))
                truth = np.unpackbits(np.frombuffer(bytes(codec.encode(mark_id)), np.uint8))
                for name, attack in ATTACKS.items():
                    edited = attack(marked)
                    start = time.perf_counter()
                    result = decode(edited, original_sizes=[image.size])
                    if name == "none":
                        decode_ms[side].append(1000 * (time.perf_counter() - start))
                    wrong += result.found and result.mark_id != mark_id
                    ids.setdefault((name, side), []).append(result.mark_id == mark_id)
                    back = edited.resize(image.size, Image.Resampling.BICUBIC) if edited.size != image.size else edited
                    read = np.unpackbits(np.frombuffer(decode(back).raw_bits, np.uint8))
                    bits.setdefault((name, side), []).append(float(np.mean(read == truth)))

    cases = len(images(sides[0])) * args.trials
    print(f"Scheme `{SCHEME}` (dwtDctSvd on luma, QIM step {SCALE:g}, {PAYLOAD_BITS}-bit RS(10,6) payload); "
          f"{cases} marked images per size; {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}.\n")
    header = " | ".join(f"{s} px bits / ids" for s in sides)
    print(f"| edit | {header} |")
    print("|---|" + "---|" * len(sides))
    for name in ATTACKS:
        cells = " | ".join(f"{statistics.mean(bits[(name, s)]):.3f} / {statistics.mean(ids[(name, s)]):.2f}"
                           for s in sides)
        print(f"| {name} | {cells} |")
    print(f"\nWrong ids returned (marked and unmarked images): {wrong}\n")
    print("| size | PSNR mean (min) dB | embed ms (median) | decode ms (median) |")
    print("|---|---|---|---|")
    for s in sides:
        print(f"| {s}x{s} | {statistics.mean(quality[s]):.1f} ({min(quality[s]):.1f}) | "
              f"{statistics.median(embed_ms[s]):.0f} | {statistics.median(decode_ms[s]):.0f} |")


if __name__ == "__main__":
    main()
