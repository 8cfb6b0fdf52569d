"""Scoring benchmark: images/s of each scorer and of the whole score card, at 512x512.

Images are made offline: the packaged banner templates (text on flat and gradient backgrounds) and textures with the
1/f^2 power spectrum of natural photographs, all 512x512. Each scorer is built exactly as the gateway builds it
(``gateway.scoring.build_scorers``), warmed up on one batch, then timed over ``--repeat`` batches of ``--batch``
images through ``quality.base.score_images`` (the runner the flow uses, type checks included). The card row times
every configured scorer together, as the flow's score stage does. The context names a prompt, a brand kit and the
banner's text, so every scorer does its full work.

CLIP-sized work on a GPU: ``--clip vit-b-32`` builds an open_clip ViT-B/32 from its config (random weights, no
download) and times the ``alignment`` scorer at ``--clip-batch`` images per call; with ``--device cuda`` it runs in
fp16, which is the issue's >= 2,000 images/s goal.

    python benchmarks/scoring.py --batch 16 --repeat 3
    python benchmarks/scoring.py --only alignment --clip vit-b-32 --device cuda --clip-batch 64 --repeat 20
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gateway.scoring import SCORERS, build_scorers
from gateway.settings import Settings
from generators.template import TemplateLibrary
from quality.base import ImageContext, ScoreContext, Scorer, score_images

SIZE = 512


def natural_texture(seed: int, size: int = SIZE) -> Image.Image:
    """An RGB texture with a 1/f^2 power spectrum (van der Schaaf and van Hateren 1996)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / size)
    channels = []
    for _ in range(3):
        phase = np.exp(2j * np.pi * rng.random((size, size)))
        field = np.real(np.fft.ifft2(amplitude * phase))
        channels.append((field - field.mean()) / (field.std() + 1e-9))
    pixels = np.clip(128 + 40 * np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def banners() -> list[tuple[Image.Image, tuple[str, ...]]]:
    library = TemplateLibrary([TemplateLibrary.default_dir()])
    out = []
    for template_id, fields in (("product-square", {"headline": "Autumn boots", "cta": "Shop now"}),
                                ("spring-sale", {"headline": "Spring sale", "cta": "Buy now"})):
        template = library.get(template_id)
        assert template is not None
        image = template.render(template.validate_fields(fields), seed=0).convert("RGB")
        out.append((image.resize((SIZE, SIZE), Image.Resampling.LANCZOS), tuple(fields.values())))
    return out


def brand_kit(directory: Path) -> object:
    from quality.brand import load_brand_kit

    kit = directory / "bench" / "main"
    kit.mkdir(parents=True)
    natural_texture(99, 256).save(kit / "ref.png")
    (kit / "brand.yaml").write_text(
        'palette: ["#c85a1e", "#ffffff", "#1d3557", "#f1faee", "#457b9d"]\npalette_max_delta_e: 12\n'
        "references: [ref.png]\ndescriptors: [warm autumn colours, bold product banner]\n"
        "off_brand: [grainy dark photograph]\n")
    return load_brand_kit(kit, "bench", "main")


def time_scorers(scorers: list[Scorer], images: list[Image.Image], context: ScoreContext, repeat: int) -> float:
    score_images(scorers, images, context)  # warm-up: lazy initialisation, caches, allocator
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        cards = score_images(scorers, images, context)
        samples.append(time.perf_counter() - start)
        failed = {r.scorer: r.error for card in cards for r in card.results if not r.ok}
        if failed:
            raise SystemExit(f"a scorer failed: {failed}")
    return len(images) / statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16, help="images per scoring call (default 16)")
    parser.add_argument("--repeat", type=int, default=3, help="timed batches per row; the median is reported")
    parser.add_argument("--only", nargs="*", choices=SCORERS, help="scorers to time (default: every default one)")
    parser.add_argument("--interrogator", action="store_true", help="also time the interrogator (tiny demo models)")
    parser.add_argument("--device", default="auto", help="scorer device: auto, cpu or cuda")
    parser.add_argument("--clip", choices=["tiny", "vit-b-32"], default="tiny",
                        help="CLIP for brand/alignment: the demo model, or a ViT-B/32 built from config")
    parser.add_argument("--clip-batch", type=int, default=64, help="CLIP images per forward pass (default 64)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="mediagate-bench-") as tmp:
        home = Path(tmp)
        clip_dir = None
        if args.clip == "vit-b-32":
            import open_clip

            from quality.clip_model import write_clip_dir

            clip_dir = write_clip_dir(home / "clip-b32", open_clip.get_model_config("ViT-B-32"))
        names = list(args.only) if args.only else list(Settings().scorers)
        if args.interrogator and "interrogator" not in names:
            names.append("interrogator")
        settings = Settings(home=home, scorers=names, score_device=args.device, clip_batch_size=args.clip_batch,
                            interrogator="on" if "interrogator" in names else "off",
                            **({"clip_model_dir": clip_dir} if clip_dir else {}))
        start = time.perf_counter()
        scorers = build_scorers(settings)
        load_s = time.perf_counter() - start
        made = banners()
        textures = [natural_texture(seed) for seed in range(max(0, args.batch - len(made)))]
        images = ([image for image, _ in made] + textures)[:args.batch]
        while len(images) < args.batch:
            images.append(images[len(images) % len(made)])
        expected = [texts for _, texts in made] + [() for _ in textures]
        context = ScoreContext(
            tenant="bench", kind="template", prompt="a product banner for autumn boots", banned_terms=("gore",),
            brand=brand_kit(home / "brands"),
            images=tuple(ImageContext("en-GB", expected[i] if i < len(expected) else ()) for i in range(len(images))))
        device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
        gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none"
        print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, GPU {gpu}, "
              f"batch {args.batch}, {SIZE}x{SIZE}, CLIP {args.clip}, loading {load_s:.1f} s")
        print("| scorer | version | images/s | ms/image |")
        print("|---|---|---:|---:|")
        for scorer in scorers:
            rate = time_scorers([scorer], images, context, args.repeat)
            print(f"| {scorer.name} | `{scorer.version[:40]}` | {rate:.1f} | {1000 / rate:.1f} |")
        if len(scorers) > 1:
            rate = time_scorers(scorers, images, context, args.repeat)
            print(f"| **whole card** ({len(scorers)} scorers) | | {rate:.1f} | {1000 / rate:.1f} |")


if __name__ == "__main__":
    main()
