"""The tiny demo model: a Stable-Diffusion-shaped pipeline with seeded random weights, built offline from configs.

It exists so that a fresh machine with no hub access can run the whole gateway (and the tests) through the real
``diffusers`` loading and sampling path. The images are noise-like; the point is the plumbing, not the pictures.
The component sizes follow diffusers' own fast tests (``get_dummy_components``), except that the VAE has four
blocks so that, as in real Stable Diffusion, one latent pixel covers 8x8 image pixels.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

# Special tokens of the CLIP tokenizer; the pipeline pads prompts to ``MAX_TOKENS`` as Stable Diffusion does.
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MAX_TOKENS = 77

# A few merges so the tokenizer really does byte-pair encoding; everything else falls back to single bytes.
_MERGES: tuple[tuple[str, str], ...] = (
    ("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n"), ("o", "n</w>"), ("e", "r</w>"),
    ("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("r", "e"), ("o", "f</w>"), ("a", "t</w>"),
)


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode map, which byte-level BPE (and so CLIP) uses as its alphabet.

    Printable Latin-1 bytes map to themselves; the rest are shifted to code points from 256 up, so that every one
    of the 256 bytes has a visible, non-whitespace character. See Radford et al. 2019, "Language Models are
    Unsupervised Multitask Learners", and ``openai/gpt-2`` ``encoder.py``.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


def demo_vocab() -> tuple[dict[str, int], list[str]]:
    """The vocabulary (token -> id) and merge list of the demo tokenizer.

    Every byte symbol appears both bare and with CLIP's end-of-word marker ``</w>``, so any UTF-8 text, including
    non-Latin scripts and emoji, tokenizes without an unknown token.
    """
    alphabet = list(bytes_to_unicode().values())
    tokens = [*alphabet, *(ch + "</w>" for ch in alphabet)]
    tokens += ["".join(pair) for pair in _MERGES]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return vocab, [f"{a} {b}" for a, b in _MERGES]


def write_tokenizer_files(directory: Path) -> None:
    """Write ``vocab.json`` and ``merges.txt`` in the layout of OpenAI's CLIP tokenizer files."""
    vocab, merges = demo_vocab()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def build_demo_pipeline(out_dir: Path, *, seed: int = 0) -> Path:
    """Build the demo pipeline with weights drawn from ``seed`` and save it to ``out_dir``; return ``out_dir``.

    The same seed gives byte-identical weight files, so the model revision the gateway records is reproducible.
    The caller's global torch RNG state is left untouched.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}-", dir=out_dir.parent) as tmp:
        staging = Path(tmp)
        _save_components(staging, seed)
        _move_into(staging, out_dir)
    return out_dir


def _save_components(staging: Path, seed: int) -> None:
    """Build every component and save the pipeline into ``staging``."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    # The vocab.json / merges.txt written here stay beside the tokenizer.json that save_pretrained adds, so loaders
    # that want the original CLIP files (transformers 4's slow tokenizer) find them too.
    write_tokenizer_files(staging / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(staging / "tokenizer", local_files_only=True, model_max_length=MAX_TOKENS)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(8, 16, 16, 16),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=4,
            sample_size=64,
        )
        torch.manual_seed(seed + 2)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=MAX_TOKENS,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="trailing",
    )
    pipe: Any = StableDiffusionPipeline(  # Any: diffusers' lazy module hides the class from mypy
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(staging, safe_serialization=True)


def _move_into(src: Path, dst: Path) -> None:
    """Move a freshly saved pipeline into ``dst`` so that ``model_index.json`` appears last.

    ``ensure_demo_pipeline`` takes ``model_index.json`` as "the pipeline is complete", so a build that dies half way
    must never leave one behind next to missing components.
    """
    if not dst.exists():
        os.replace(src, dst)
        dst.chmod(0o755)  # it was created by mkdtemp, which makes it private to this user
        src.mkdir()  # TemporaryDirectory wants something to clean up
        return
    dst.mkdir(parents=True, exist_ok=True)
    for child in sorted(src.iterdir(), key=lambda p: p.name == "model_index.json"):
        target = dst / child.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(child, target)


def ensure_demo_pipeline(out_dir: Path, *, seed: int = 0) -> Path:
    """Return ``out_dir``, building the demo pipeline there first unless a pipeline (``model_index.json``) exists."""
    out_dir = Path(out_dir)
    if not (out_dir / "model_index.json").is_file():
        build_demo_pipeline(out_dir, seed=seed)
    return out_dir
