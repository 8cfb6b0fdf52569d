"""A BLIP image-captioning model read from a local directory, never downloaded.

BLIP (Li et al. 2022, "BLIP: Bootstrapping Language-Image Pre-training", arXiv:2201.12086) pairs a ViT image encoder
with a BERT-style text decoder that cross-attends to the image; it is the caption model clip-interrogator uses
(``blip-base`` / ``blip-large`` map to ``BlipForConditionalGeneration`` and its ``BlipProcessor``). The directory is
what ``save_pretrained`` writes for both (``config.json``, the weights, ``tokenizer*.json`` / ``vocab.txt``, the
image processor's config); ``from_pretrained`` reads it with ``local_files_only``, so a gateway never fetches weights.

``build_tiny_blip`` writes a tiny, seeded BLIP in the same layout, for tests and demos without real weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

REQUIRED_FILES = ("config.json",)
# The files transformers would read weights from, in its order of preference.
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
_TINY_WORDS = (
    "a an the of on in with and at by photo painting drawing picture portrait illustration cat dog man woman child "
    "tree house car street city forest mountain river sky sea beach flower red blue green yellow black white dark "
    "bright old young small large sitting standing walking night day sunset light art digital style"
).split()


class CaptionModelError(RuntimeError):
    """The caption model could not be loaded; the message names the directory and what is wrong."""


def _weights_revision(directory: Path) -> str:
    """``sha256:<16 hex>`` over the weight files transformers would load (all shards, in name order)."""
    for pattern in _WEIGHT_PATTERNS:
        files = sorted(directory.glob(pattern))
        if files:
            break
    else:
        raise CaptionModelError(f"the caption model directory {directory} has no weights "
                                f"(no {' or '.join(_WEIGHT_PATTERNS)} file)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fp:
            for chunk in iter(lambda: fp.read(1 << 20), b""):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"


class CaptionModel:
    """A loaded BLIP captioner: ``caption(images)`` answers one caption per image, in one batched ``generate``.

    Decoding is greedy (the model's generation defaults, as clip-interrogator uses them) and capped at
    ``max_new_tokens`` word pieces, so the same image always gets the same caption. ``revision`` is the sha256 of the
    weight files (first 16 hex digits): it pins the exact model behind a caption in the audit entry.
    """

    def __init__(self, model: Any, processor: Any, *, directory: Path, revision: str) -> None:
        self.model = model
        self.processor = processor
        self.directory = directory
        self.revision = revision
        first = next(model.parameters())
        self.device: torch.device = first.device
        self.dtype: torch.dtype = first.dtype

    @torch.no_grad()
    def caption(self, images: Sequence[Image.Image], max_new_tokens: int = 32) -> list[str]:
        if max_new_tokens < 1:
            raise ValueError(f"`max_new_tokens` has to be at least 1 but is {max_new_tokens}")
        if not images:
            return []
        inputs = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self.dtype)
        tokens = self.model.generate(pixel_values=pixel_values, max_new_tokens=max_new_tokens)
        return [text.strip() for text in self.processor.batch_decode(tokens, skip_special_tokens=True)]


def load_caption_model(directory: str | Path, *, device: str | torch.device = "cpu",
                       dtype: torch.dtype | None = None) -> CaptionModel:
    """Load the BLIP model and processor saved in ``directory``; raises ``CaptionModelError`` naming it if it is
    missing, incomplete or not a BLIP captioning model. ``dtype`` defaults to float32 (float16 halves the memory
    on a GPU; CPUs gain nothing from it)."""
    from transformers import BlipForConditionalGeneration, BlipProcessor  # seconds to import: only when loading

    path = Path(directory).expanduser()
    if not path.is_dir():
        raise CaptionModelError(f"the caption model directory {path} does not exist; export a BLIP captioning model "
                                f"into it with save_pretrained (see the interrogator documentation)")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise CaptionModelError(f"the caption model directory {path} is missing {', '.join(missing)}; it is not a "
                                f"transformers model directory")
    revision = _weights_revision(path)
    try:
        # A local directory and local_files_only: transformers never reaches a hub.
        model: Any = BlipForConditionalGeneration.from_pretrained(path, local_files_only=True,
                                                                  dtype=dtype or torch.float32)
        processor = BlipProcessor.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # corrupt weights, bad JSON, another architecture: one clear error for all of them
        raise CaptionModelError(f"could not load a BLIP captioning model from {path}: "
                                f"{type(exc).__name__}: {exc}") from exc
    model.to(device).eval()
    return CaptionModel(model, processor, directory=path, revision=revision)


def build_tiny_blip(directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny BLIP captioner (2-layer, 32-wide towers, 64px images, ~60-word vocabulary) with seeded random
    weights into ``directory``, in the layout ``load_caption_model`` reads. Its captions are word salad that depends
    on the image; it exists so tests exercise the real loading and generation path in well under a second.

    The processor mirrors Salesforce's: a lower-casing BERT word-piece tokenizer with ``[DEC]`` as the
    beginning-of-caption token and ``[ENC]`` as an extra special token, both appended after the vocabulary;
    ``generate`` starts each caption with ``[DEC]`` (``bos_token_id``) and stops at ``[SEP]`` (``sep_token_id``).
    """
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_TINY_WORDS]) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab_file), bos_token="[DEC]", additional_special_tokens=["[ENC]"])
    image_size = 64
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
                              tokenizer=tokenizer)
    width = 32
    config = BlipConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": width, "encoder_hidden_size": width,
            "intermediate_size": 2 * width, "num_hidden_layers": 2, "num_attention_heads": 2,
            "max_position_embeddings": 64, "bos_token_id": tokenizer.bos_token_id,
            "sep_token_id": tokenizer.sep_token_id, "eos_token_id": tokenizer.sep_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": 2, "num_attention_heads": 2,
            "image_size": image_size, "patch_size": 16, "projection_dim": width,
        },
        projection_dim=width,
    )
    model = BlipForConditionalGeneration(config).eval()
    # BLIP's own initialisation (vision std 1e-10) makes every image look alike to the decoder; spread the weights so
    # the tiny model's captions depend on the image.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
