"""A CLIP model read from a local directory in open_clip's ``local-dir:`` / hf-hub format, for the brand and
alignment scorers.

CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision",
arXiv:2103.00020) maps images and texts into one space where the cosine similarity says how well they match. The
directory is what ``open_clip.push_to_hf_hub`` / ``save_for_hf`` write: ``open_clip_config.json`` (``model_cfg``
and ``preprocess_cfg``) and one weights file (``open_clip_model.safetensors``, else
``open_clip_pytorch_model.safetensors`` / ``open_clip_pytorch_model.bin``). Weights are only ever read from that
directory, never downloaded: a gateway must not fetch weights at run time.

Image preprocessing is the model's own inference transform: shortest side resized to ``image_size`` (bicubic),
centre crop to ``image_size`` x ``image_size`` (224 for ViT-B/32, 32 for the tiny model), the mean/std of
``preprocess_cfg``. Content outside the central square of a non-square image is not seen. Texts are tokenized by the
tokenizer open_clip picks for the directory (CLIP's byte-pair encoder shipped in the package for standard configs)
and truncated to the model's context length (77 tokens for CLIP).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

CONFIG_FILE = "open_clip_config.json"
# The weights files of open_clip's hf-hub format, in the order open_clip itself prefers them.
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin")

# A CLIP shaped like the real ones (ViT image tower, causal text transformer, CLIP's 49408-token vocabulary and
# 77-token context, so open_clip's shipped tokenizer works) but tiny: ~1.6M parameters, 6.6 MB, loads in ~20 ms.
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
# CLIP's training normalisation (OpenAI's dataset mean and std), as open_clip writes it into hf-hub configs.
CLIP_PREPROCESS_CFG: dict[str, Any] = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


class ClipModelError(RuntimeError):
    """The CLIP model could not be loaded; the message names the directory and what is missing or wrong."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        for chunk in iter(lambda: fp.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_config(directory: Path) -> dict[str, Any]:
    """The parsed ``open_clip_config.json``, checked far enough that open_clip's own errors cannot be cryptic."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ClipModelError(f"the CLIP model directory {directory} has no {CONFIG_FILE}; it is not an open_clip "
                             f"hf-hub / local-dir export")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClipModelError(f"{path} is not valid JSON: {exc}") from exc
    model_cfg = config.get("model_cfg") if isinstance(config, dict) else None
    if not isinstance(model_cfg, dict):
        raise ClipModelError(f"{path} has no `model_cfg` object (open_clip's hf-hub format puts the architecture "
                             f"there)")
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in model_cfg]
    if missing:
        raise ClipModelError(f"`model_cfg` in {path} lacks {', '.join(missing)}")
    return config


def _weights_file(directory: Path) -> Path:
    found = next((directory / name for name in WEIGHT_FILES if (directory / name).is_file()), None)
    if found is None:
        raise ClipModelError(f"the CLIP model directory {directory} has no weights file (one of "
                             f"{', '.join(WEIGHT_FILES)})")
    return found


class _DropRandomInitNotice(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded ... initialized randomly" for a model whose weights are
    loaded right after (open_clip logs it on the root logger when ``load_weights=False``)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.prefix = f"No pretrained weights loaded for model '{source}'"

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA when torch sees a GPU, else the CPU; anything else is taken as a torch device name."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"`device` has to be 'auto' or a torch device such as 'cpu' or 'cuda:0' but is "
                         f"{device!r}") from exc


class ClipModel:
    """An open_clip model, its inference preprocessing and tokenizer, loaded from ``directory``.

    On CUDA the model runs in half precision (fp16 weights, under autocast), on the CPU in fp32. Embeddings come
    back as unit-length float32 CPU tensors, so a cosine similarity is a dot product.
    Text embeddings are kept in an LRU cache of ``text_cache_size`` entries (brand descriptors repeat on every
    request). ``revision`` is the first 12 hex digits of the weights file's sha256, so an audit entry pins the
    exact weights. Calls are thread safe (one lock around the model).
    """

    def __init__(
        self, directory: Path | str, *, device: str = "auto", batch_size: int = 32, text_cache_size: int = 1024,
        device_preprocess: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"`batch_size` has to be at least 1 but is {batch_size}")
        if text_cache_size < 0:
            raise ValueError(f"`text_cache_size` has to be >= 0 but is {text_cache_size}")
        self.directory = Path(directory)
        self.batch_size = batch_size
        self.text_cache_size = text_cache_size
        self.device = resolve_device(device)
        # fp16 on CUDA as whole-model half precision (open_clip's "pure_fp16"), so every parameter has the dtype
        # a caller that hands the raw model on (clip-interrogator) reads from ``next(model.parameters())``.
        self.precision = "fp16" if self.device.type == "cuda" else "fp32"
        if not self.directory.is_dir():
            raise ClipModelError(f"the CLIP model directory {self.directory} does not exist")
        self.config = _read_config(self.directory)
        self.weights_path = _weights_file(self.directory)
        self.revision = _sha256(self.weights_path)[:12]
        self.model, self.preprocess, self.tokenizer = self._load()
        # Resizing 512-px images with PIL takes ~2.5 ms each on one CPU thread: on a GPU that, not the model, bounds
        # throughput (measured on an H200: 344 images/s at batch 64). The same transform as tensor operations on
        # the model's device instead; None = on for CUDA. Transforms it cannot reproduce keep the PIL path.
        self._plan = _TensorPreprocess.of(self.preprocess)
        use = self.device.type == "cuda" if device_preprocess is None else device_preprocess
        if use and self._plan is None:
            raise ClipModelError(f"the preprocessing of {self.directory} cannot run as tensor operations: "
                                 f"{self.preprocess}")
        self.device_preprocess = use
        self.embed_dim = int(self.config["model_cfg"]["embed_dim"])
        size = getattr(self.model.visual, "image_size", 224)
        self.image_size = tuple(size) if isinstance(size, tuple | list) else (int(size), int(size))
        # The temperature contrastive training calibrated the model's softmax over cosines with (CLIP clamps it
        # at 100); the brand scorer uses it to turn a similarity difference into a probability.
        self.logit_scale = float(min(self.model.logit_scale.detach().float().exp().item(), 100.0))
        self._lock = threading.Lock()
        self._texts: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.texts_encoded = 0
        self.text_cache_hits = 0

    def _load(self) -> tuple[Any, Callable[[Image.Image], torch.Tensor], Callable[..., torch.Tensor]]:
        """(open_clip model in eval mode, inference transform, tokenizer); the model is Any because open_clip's
        ``CLIP`` / ``CustomTextCLIP`` methods are not visible through ``nn.Module``."""
        import open_clip  # imports timm / transformers helpers: only when a model loads

        source = f"local-dir:{self.directory}"
        notice = _DropRandomInitNotice(source)
        logging.getLogger().addFilter(notice)
        try:
            # load_weights=False and explicit load_checkpoint: the file that is hashed for `revision` is the file
            # that is loaded (open_clip would otherwise pick any *.safetensors / *.bin / *.pth by its own rules).
            # pretrained_text/image=False: a config with an HF text tower must never fetch base weights.
            model, _, preprocess = open_clip.create_model_and_transforms(
                source, load_weights=False, pretrained_text=False, pretrained_image=False,
                precision="pure_fp16" if self.precision == "fp16" else "fp32", device=self.device,
            )
        except Exception as exc:  # any architecture / config problem: one clear error naming the directory
            raise ClipModelError(f"could not build the CLIP model described by {self.directory / CONFIG_FILE}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        finally:
            logging.getLogger().removeFilter(notice)
        try:
            open_clip.load_checkpoint(model, str(self.weights_path), strict=True, weights_only=True)
        except Exception as exc:  # corrupt file, missing or mis-shaped tensors
            raise ClipModelError(f"could not load the CLIP weights {self.weights_path} into the model of "
                                 f"{self.directory / CONFIG_FILE}: {type(exc).__name__}: {exc}") from exc
        try:
            # get_tokenizer reads the same config: CLIP's own BPE (shipped in the package) for standard text
            # towers, the directory's tokenizer files for an `hf_tokenizer_name` text tower.
            tokenizer = open_clip.get_tokenizer(source)
        except Exception as exc:
            raise ClipModelError(f"could not load the tokenizer for the CLIP model in {self.directory}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        model.eval()
        return model, preprocess, tokenizer

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return nullcontext()

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        if self.device_preprocess:
            assert self._plan is not None
            return self._plan(rgb, self.device).to(dtype)
        batch = torch.stack([self.preprocess(im) for im in rgb])
        return batch.to(self.device, dtype=dtype, non_blocking=True)

    def encode_images(self, images: Sequence[Image.Image], *, batch_size: int | None = None) -> torch.Tensor:
        """``(len(images), embed_dim)`` unit-length float32 CPU embeddings, computed ``batch_size`` at a time."""
        size = batch_size or self.batch_size
        if not images:
            return torch.empty((0, self.embed_dim))
        chunks = []
        for start in range(0, len(images), size):
            pixels = self._pixels(images[start:start + size])
            with self._lock, torch.inference_mode(), self._autocast():
                features = self.model.encode_image(pixels)
            chunks.append(F.normalize(features.float(), dim=-1).cpu())
        return torch.cat(chunks).clone()  # clone: a plain tensor, usable outside inference mode

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """``(len(texts), embed_dim)`` unit-length float32 CPU embeddings; repeated texts come from the cache."""
        if isinstance(texts, str):
            raise TypeError("`texts` has to be a sequence of texts, not a string")
        if not texts:
            return torch.empty((0, self.embed_dim))
        with self._lock:
            found = {t: self._texts[t] for t in dict.fromkeys(texts) if t in self._texts}
            for text in found:
                self._texts.move_to_end(text)
            self.text_cache_hits += sum(1 for t in texts if t in found)
            missing = [t for t in dict.fromkeys(texts) if t not in found]
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start:start + self.batch_size]
                tokens = self.tokenizer(chunk).to(self.device)
                with torch.inference_mode(), self._autocast():
                    features = self.model.encode_text(tokens)
                vectors = F.normalize(features.float(), dim=-1).cpu().clone()
                self.texts_encoded += len(chunk)
                for text, vector in zip(chunk, vectors, strict=True):
                    found[text] = vector
                    if self.text_cache_size:
                        self._texts[text] = vector
            while len(self._texts) > self.text_cache_size:
                self._texts.popitem(last=False)
        return torch.stack([found[t] for t in texts])

    def warmup(self) -> None:
        """Encode one blank image and one text, so the first request does not pay for lazy initialisation."""
        self.encode_images([Image.new("RGB", self.image_size)])
        with self._lock:
            tokens = self.tokenizer(["warm up"]).to(self.device)
            with torch.inference_mode(), self._autocast():
                self.model.encode_text(tokens)


_STAGING_MAX_BYTES = 256 * 1024 * 1024  # larger batches of large images get a buffer of their own, not kept


class _TensorPreprocess:
    """open_clip's inference transform (shortest side resized, centre crop, scaled to [0, 1], normalised) as tensor
    operations on any device; images of one size are resized together.

    torch's antialiased bicubic/bilinear resize follows PIL's filters (torchvision documents the two as close, not
    equal): a test bounds the difference in pixels and in embeddings.
    """

    def __init__(self, size: int, mode: str, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size, self.mode = size, mode
        self._staging: dict[tuple[int, int], torch.Tensor] = {}
        self._lock = threading.Lock()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    @classmethod
    def of(cls, transform: Any) -> _TensorPreprocess | None:
        """The plan for ``transform``, or None unless it is exactly Resize(int) -> square CenterCrop of that size
        -> RGB -> tensor -> Normalize (what open_clip builds for ``resize_mode: shortest``)."""
        from torchvision.transforms import CenterCrop, InterpolationMode, Normalize, Resize

        steps = list(getattr(transform, "transforms", []))
        names = [type(t).__name__ for t in steps]
        if names != ["Resize", "CenterCrop", "MaybeConvertMode", "MaybeToTensor", "Normalize"]:
            return None
        resize, crop, convert, _, normalize = steps
        assert isinstance(resize, Resize) and isinstance(crop, CenterCrop) and isinstance(normalize, Normalize)
        size = resize.size[0] if isinstance(resize.size, list | tuple) and len(resize.size) == 1 else resize.size
        modes = {InterpolationMode.BICUBIC: "bicubic", InterpolationMode.BILINEAR: "bilinear"}
        if (not isinstance(size, int) or resize.max_size is not None or resize.antialias is False
                or resize.interpolation not in modes or tuple(crop.size) != (size, size)
                or getattr(convert, "mode", None) != "RGB"):
            return None
        return cls(size, modes[resize.interpolation], normalize.mean, normalize.std)

    def _resized(self, batch: torch.Tensor) -> torch.Tensor:
        """``(n, 3, h, w)`` floats in [0, 1] -> ``(n, 3, size, size)``: torchvision's Resize(int) output size (the
        short side becomes ``size``, the long side ``int(size * long / short)``), then CenterCrop's offsets."""
        h, w = batch.shape[-2:]
        short, long = (h, w) if h <= w else (w, h)
        new_short, new_long = self.size, int(self.size * long / short)
        new_h, new_w = (new_short, new_long) if h <= w else (new_long, new_short)
        if (new_h, new_w) != (h, w):
            batch = F.interpolate(batch, size=(new_h, new_w), mode=self.mode, align_corners=False, antialias=True)
            batch = batch.clamp_(0.0, 1.0)  # PIL's resize saturates to 0..255; bicubic overshoots without it
        top, left = int(round((new_h - self.size) / 2.0)), int(round((new_w - self.size) / 2.0))
        return batch[..., top:top + self.size, left:left + self.size]

    def _host(self, count: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """A ``(count, height, width, 3)`` uint8 staging tensor, kept per image size and reused (pinned on CUDA):
        filling warm memory is 3x faster than a fresh array, whose pages fault in on first touch."""
        kept = self._staging.get((height, width))
        if kept is None or kept.shape[0] < count:
            kept = torch.empty((count, height, width, 3), dtype=torch.uint8, pin_memory=device.type == "cuda")
            if kept.numel() <= _STAGING_MAX_BYTES:
                self._staging[(height, width)] = kept
        return kept[:count]

    def __call__(self, images: Sequence[Image.Image], device: torch.device) -> torch.Tensor:
        out: list[torch.Tensor | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.size, []).append(i)
        with self._lock:  # one staging buffer per size; the copy to the device ends before the lock is let go
            for (width, height), indices in groups.items():
                host = self._host(len(indices), height, width, device)
                for row, i in enumerate(indices):
                    host[row].numpy()[...] = images[i]  # PIL's array interface: one copy, into the buffer
                batch = host.to(device).permute(0, 3, 1, 2).float().div_(255.0)
                for i, pixels in zip(indices, self._resized(batch), strict=True):
                    out[i] = pixels
        stacked = torch.stack([p for p in out if p is not None])
        return (stacked - self.mean.to(device)) / self.std.to(device)


def write_clip_dir(
    directory: Path | str, model_cfg: Mapping[str, Any], *, seed: int = 0,
    preprocess_cfg: Mapping[str, Any] | None = None,
) -> Path:
    """Build an open_clip CLIP from ``model_cfg`` with weights drawn from ``seed`` and save it to ``directory`` in
    the hf-hub / ``local-dir:`` format (``open_clip_config.json`` + ``open_clip_model.safetensors``); return it.

    The same config and seed give byte-identical files, so the revision is reproducible. The config file is
    written last, so a build that dies half way never looks like a model. The caller's torch RNG is untouched.
    """
    import open_clip
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(model_cfg))  # a deep copy that is known to be JSON
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**cfg)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    config = {"model_cfg": cfg, "preprocess_cfg": dict(preprocess_cfg or CLIP_PREPROCESS_CFG)}
    for name, write in (
        (WEIGHT_FILES[0], lambda p: save_file(tensors, str(p))),
        (CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")),
    ):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=directory)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes the file private to this user
        os.replace(tmp, directory / name)
    return directory


def build_tiny_clip(directory: Path | str, seed: int = 0) -> Path:
    """Write the tiny CLIP (``TINY_CLIP_CONFIG``, random weights from ``seed``) to ``directory``; return it.

    Its similarities are meaningless; it exists so that tests and the demo run the real loading and scoring path
    offline, in milliseconds.
    """
    return write_clip_dir(directory, TINY_CLIP_CONFIG, seed=seed)
