"""Generation throughput: one pipeline call per request (batch-1) against dynamic micro-batching.

    python benchmarks/generation.py                                   # the tiny demo pipeline on the CPU
    python benchmarks/generation.py --pipeline sd-turbo-size --device cuda --size 512 --steps 1 4 --requests 256

Clients are threads that each send requests one after another (n=1, their own seeds), as the gateway's request
threads do; ``images/s`` counts images rendered. batch-1 runs the same ``MicroBatcher`` with ``max_images=1``, so
the only difference is the batching.

``--pipeline sd-turbo-size`` builds, offline, a Stable-Diffusion-2.1-shaped pipeline (the UNet of SD-Turbo:
SD 2.1's published UNet config, 865M parameters; the SD VAE; an OpenCLIP-ViT-H-sized text encoder) with random
weights, saves it and loads it through ``DiffusersTxt2Img`` (``from_pretrained`` of a local directory, fp16 on
CUDA). The compute per step is that of the real model; only the pictures are noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generators.base import GenerationSpec  # noqa: E402
from generators.batching import MicroBatcher  # noqa: E402
from generators.demo import ensure_demo_pipeline, write_tokenizer_files  # noqa: E402
from generators.diffusers_txt2img import DiffusersTxt2Img  # noqa: E402


def build_sd_turbo_size(out_dir: Path) -> Path:
    """SD 2.1 / SD-Turbo component shapes with random weights (configs as published with stabilityai/sd-turbo)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if (out_dir / "model_index.json").is_file():
        return out_dir
    write_tokenizer_files(out_dir / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(out_dir / "tokenizer", local_files_only=True, model_max_length=77)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
        num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    scheduler = EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                       beta_schedule="scaled_linear", timestep_spacing="trailing",
                                       prediction_type="epsilon")
    pipe: Any = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                        scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                        requires_safety_checker=False)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def run(generator: Any, *, clients: int, requests: int, size: int, steps: int) -> float:
    """Images per second with ``clients`` threads sending ``requests`` requests in all."""
    per = max(1, requests // clients)

    def client(k: int) -> None:
        for i in range(per):
            generator.generate(GenerationSpec(model="bench", width=size, height=size, n=1, seed=k * 10_000 + i,
                                              prompt=f"a red bicycle, variant {k}-{i}", steps=steps))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * clients / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", choices=["tiny", "sd-turbo-size"], default="tiny")
    parser.add_argument("--dir", type=Path, help="where the pipeline is built (default: a temp directory)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, nargs="+", default=[2])
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--requests", type=int, default=128, help="requests per measurement")
    parser.add_argument("--max-images", type=int, default=32, help="images per batch when batching")
    args = parser.parse_args()

    root = args.dir or Path(tempfile.mkdtemp(prefix="mediagate-gen-bench-"))
    directory = (ensure_demo_pipeline(root / "demo-tiny") if args.pipeline == "tiny"
                 else build_sd_turbo_size(root / "sd-turbo-size"))
    inner = DiffusersTxt2Img("bench", directory, device=args.device, dtype="auto")
    print(f"pipeline={args.pipeline} device={inner.device} dtype={inner.dtype} size={args.size}")
    for steps in args.steps:
        run(MicroBatcher(inner, max_images=1), clients=2, requests=4, size=args.size, steps=steps)  # warm-up
        for clients in args.clients:
            single = MicroBatcher(inner, max_images=1)
            one = run(single, clients=clients, requests=args.requests, size=args.size, steps=steps)
            single.close()
            sizes: list[int] = []
            batched = MicroBatcher(inner, max_images=args.max_images, observe=lambda _r, i, s=sizes: s.append(i))
            many = run(batched, clients=clients, requests=args.requests, size=args.size, steps=steps)
            batched.close()
            print(f"steps={steps} clients={clients}: batch-1 {one:.2f} images/s, dynamic batching {many:.2f} "
                  f"images/s (mean batch {statistics.mean(sizes):.1f} images) = {many / one:.2f}x")


if __name__ == "__main__":
    main()
