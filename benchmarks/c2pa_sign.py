"""C2PA benchmark: milliseconds to sign and to verify one image, PNG and JPEG, 512x512 and 1024x1024.

Keys come from ``init_signing`` in a throw-away directory; thumbnails are off (as in the gateway). ``sign`` is
``C2paSigner.sign`` (c2pa-rs also verifies its own output before returning it); ``read`` is ``ManifestReader.read``
against our CA, the trust check included; ``read (one-off)`` is ``read_manifest``, which also builds the settings
context each time. Each cell is the median of ``--repeat`` runs after one warm-up.

    python benchmarks/c2pa_sign.py --repeat 50
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import c2pa
import numpy as np
from PIL import Image

from audit.c2pa_manifest import C2paSigner, ManifestReader, ProvenanceClaims, read_manifest
from audit.keys import init_signing

CLAIMS = ProvenanceClaims(model="demo-tiny", model_revision="rev-3f2a", policy_revision="2026-11-25.1",
                          audit_entry_id="ae_01", audit_entry_hash="ab" * 32, tenant="acme", watermark_id="00ff10a7")


def gradient(fmt: str, size: int, noise: float) -> bytes:
    """An RGB gradient; ``noise`` (Gaussian sigma, 0-255 scale) brings file sizes near those of generated images,
    which matters because the hard binding hashes every byte of the file."""
    ramp = np.linspace(0, 255, size)
    pixels = np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), np.full((size, size), 96.0)], -1)
    pixels += np.random.default_rng(0).normal(0, noise, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(out, format=fmt)
    return out.getvalue()


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50, help="runs per cell (median reported)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--noise", type=float, default=8.0, help="Gaussian noise sigma; 0 gives a plain gradient")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        paths = init_signing(Path(tmp))
        anchors = paths.ca_cert.read_bytes()
        print(f"c2pa-python {c2pa.__version__} (c2pa-rs {c2pa.sdk_version()}), ES256, thumbnails off, "
              f"noise sigma {args.noise:g}, median of {args.repeat}\n")
        print("| format | size | image KiB | manifest KiB | sign ms | read ms | read (one-off) ms |")
        print("|---|---|---|---|---|---|---|")
        with C2paSigner.from_directory(paths.directory) as signer, ManifestReader(anchors) as reader:
            for fmt, mime in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
                for size in args.sizes:
                    image = gradient(fmt, size, args.noise)
                    signed = signer.sign(image, mime, CLAIMS)
                    assert reader.read(signed, mime).trusted, "benchmark image did not verify"
                    sign_ms = median_ms(lambda: signer.sign(image, mime, CLAIMS), args.repeat)  # noqa: B023
                    read_ms = median_ms(lambda: reader.read(signed, mime), args.repeat)  # noqa: B023
                    once_ms = median_ms(lambda: read_manifest(signed, mime, anchors), args.repeat)  # noqa: B023
                    print(f"| {fmt} | {size}x{size} | {len(image) / 1024:.0f} | {(len(signed) - len(image)) / 1024:.1f}"
                          f" | {sign_ms:.2f} | {read_ms:.2f} | {once_ms:.2f} |")


if __name__ == "__main__":
    main()
