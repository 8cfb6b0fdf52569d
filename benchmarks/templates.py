"""Template banners per second for many locales: one batch call vs one call per banner.

Renders the packaged ``global-launch`` template (1080x1080, a hero image slot filled with a 1024x1024 stand-in for
a diffusion render, headline, subline and CTA) for ``--locales`` locales. The texts are the real translations of
``generators.template_samples`` (27 locales: Latin, Cyrillic, Greek, Devanagari, Arabic, Persian, Urdu, Hebrew,
Chinese, Japanese, Korean), cycled under private-use tags (``de-x-r1``...) to reach the count: the 100 locales of
the default run are 27 distinct texts, repeated. Compared:

* ``batch``: ``TemplateGenerator.render_locales(template, pairs, images=..., seed=...)``, one call;
* ``single``: ``TemplateGenerator.generate(spec, images=...)`` once per locale, what a caller without the batch does.

The first round of each is a warm-up (glyph coverage and font caches are per process); the figures are the median
of ``--rounds`` timed rounds after it. Nothing is written to disk and nothing is downloaded.

    .venv/bin/python benchmarks/templates.py --locales 100 --rounds 3
    .venv/bin/python benchmarks/templates.py --locales 100 --no-image     # without the hero image
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from PIL import Image

from generators.base import GenerationSpec
from generators.template import TemplateGenerator, TemplateLibrary
from generators.template_samples import SAMPLES, cycle


def hero(side: int) -> Image.Image:
    """A deterministic picture with detail everywhere, the size of a typical diffusion render."""
    y, x = np.mgrid[0:side, 0:side]
    pixels = np.stack([(x * 255 // (side - 1)), (y * 255 // (side - 1)), (x ^ y) & 0xFF], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--locales", type=int, default=100, help="banners per round (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up (default 3)")
    parser.add_argument("--template", default="global-launch")
    parser.add_argument("--image-side", type=int, default=1024, help="side of the square hero image (default 1024)")
    parser.add_argument("--no-image", action="store_true", help="leave the hero image slot empty")
    args = parser.parse_args()

    generator = TemplateGenerator(TemplateLibrary([TemplateLibrary.default_dir()]))
    pairs = cycle(args.locales)
    images = None if args.no_image else {"hero": hero(args.image_side)}

    def batch() -> None:
        banners = generator.render_locales(args.template, pairs, images=images, seed=7)
        assert len(banners) == len(pairs)

    def single() -> None:
        for locale, fields in pairs:
            spec = GenerationSpec(model="template", width=0, height=0, template=args.template, fields=fields,
                                  locale=locale, seed=7)
            generator.generate(spec, images=images)

    results = {}
    for name, run in (("batch", batch), ("single", single)):
        run()  # warm-up
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        results[name] = statistics.median(times)

    print(f"template {args.template}, {len(pairs)} locales ({len(SAMPLES)} distinct texts), "
          f"hero image {'none' if images is None else f'{args.image_side}x{args.image_side}'}, "
          f"median of {args.rounds} rounds")
    print(f"{'mode':<8} {'s/round':>9} {'ms/banner':>10} {'banners/s':>10}")
    for name, seconds in results.items():
        print(f"{name:<8} {seconds:>9.3f} {seconds / len(pairs) * 1000:>10.1f} {len(pairs) / seconds:>10.1f}")
    print(f"batch speed-up: {results['single'] / results['batch']:.2f}x")


if __name__ == "__main__":
    main()
