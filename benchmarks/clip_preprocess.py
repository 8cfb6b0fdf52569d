"""Where CLIP image scoring time goes: preprocessing (``ClipModel._pixels``) against the model, PIL transform on the
host against tensor operations on the model's device (``device_preprocess``).

    python benchmarks/clip_preprocess.py --device cuda                 # ViT-B/32 from its config, batches 64 and 256
    python benchmarks/clip_preprocess.py --device cpu --batches 8 --repeat 2

The model is an open_clip ViT-B/32 built from its config with random weights (no download); inputs are 512x512
noise images. Prints milliseconds per batch for each part and images/s through ``encode_images``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from quality.clip_model import ClipModel, write_clip_dir


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256], help="images per encode_images call")
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per row (mean reported)")
    args = parser.parse_args()

    import open_clip

    directory = write_clip_dir(Path(tempfile.mkdtemp(prefix="mediagate-clip-")) / "vit-b-32",
                               open_clip.get_model_config("ViT-B-32"), seed=0)
    rng = np.random.default_rng(0)
    base = [Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)) for _ in range(16)]
    for on_device in (True, False):
        model = ClipModel(directory, device=args.device, batch_size=max(args.batches), device_preprocess=on_device)
        for n in args.batches:
            images = (base * (n // len(base) + 1))[:n]
            model.encode_images(images)  # warm-up
            sync(model.device)
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                pixels = model._pixels(images)
            sync(model.device)
            prep = (time.perf_counter() - t0) / args.repeat
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                with torch.inference_mode(), model._autocast():
                    model.model.encode_image(pixels)
            sync(model.device)
            forward = (time.perf_counter() - t0) / args.repeat
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                model.encode_images(images)
            whole = (time.perf_counter() - t0) / args.repeat
            print(f"device_preprocess={on_device} batch {n}: preprocessing {prep * 1e3:.1f} ms, model "
                  f"{forward * 1e3:.1f} ms, encode_images {whole * 1e3:.1f} ms = {n / whole:,.0f} images/s")


if __name__ == "__main__":
    main()
