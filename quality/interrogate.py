"""The ``interrogator`` scorer: a caption and the top "flavours" of each image, recorded in the audit entry.

CLIP Interrogator (pharmapsychotic, https://github.com/pharmapsychotic/clip-interrogator, 0.6) describes an image
the way a prompt would: a BLIP caption (Li et al. 2022, arXiv:2201.12086) followed by the labels from its tables of
~100k style phrases ("flavors") and 95 media that CLIP (Radford et al. 2021, arXiv:2103.00020) finds closest to
the image. This scorer answers the caption, the ``flavor_count`` best flavours and the best medium, which is its
"classic" mode without the artist / trending / movement picks and without the chained "best" mode (each chain step
is a CLIP text pass over thousands of candidates: seconds per image even on a GPU).

Offline by construction. The library downloads a caption model and a CLIP model when it is not given them, asks
``open_clip.get_tokenizer`` for a tokenizer by model name, and fetches precomputed label embeddings from Hugging
Face. Here both models (loaded from local directories by their own loaders) and the tokenizer are handed in,
``download_cache`` is off, and the tables are embedded with the CLIP text tower on first use and cached as
safetensors in ``cache_dir``, under a key that names the CLIP revision: another CLIP model never reads stale
embeddings. The first start embeds every flavour (~100k texts): measured at hours for a ViT-B/32 text tower on 2
CPU cores (expected to be about a minute on a GPU); that and BLIP's seconds of decoding per image on a CPU are why
the gateway leaves the scorer off by default on CPU.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import clip_interrogator
import numpy as np
import torch
from clip_interrogator import Config, Interrogator, LabelTable, load_list
from PIL import Image

from quality.base import FieldType, ScoreContext, ScoreValue
from quality.caption_model import CaptionModel, load_caption_model

DEFAULT_FLAVOR_COUNT = 3
DEFAULT_DATA_PATH = Path(clip_interrogator.__file__).parent / "data"
# The label tables the scorer ranks, by cache name (the library's) and file in the data directory.
TABLE_FILES = {"flavors": "flavors.txt", "mediums": "mediums.txt"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class InterrogatorError(RuntimeError):
    """The interrogator could not be built; the message names the setting or file that is wrong."""


def cache_key(clip_name: str, clip_revision: str) -> str:
    """The file-name prefix of the cached label embeddings of one CLIP model: readable, and unique per revision (the
    digest keeps two revisions apart even where the sanitised text is the same)."""
    raw = f"{clip_name}@{clip_revision}"
    readable = _UNSAFE.sub("_", raw).strip("_")[:80]
    return f"{readable}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


class _LocalInterrogator(Interrogator):
    """An ``Interrogator`` that uses the tokenizer it is given and loads only the tables the scorer ranks.

    The library's ``load_clip_model`` calls ``open_clip.get_tokenizer(<model name>)``, which reaches the hub for
    ``hf-hub:`` names and picks the default tokenizer for names it does not know, and it embeds four more tables.
    """

    def __init__(self, config: Config, tokenizer: Callable[..., torch.Tensor], tables: dict[str, list[str]]) -> None:
        self._given_tokenizer = tokenizer
        self._tables = tables
        self.labels_embedded = 0
        super().__init__(config)

    def _counting_tokenizer(self, texts: Any) -> torch.Tensor:
        # LabelTable tokenises only the labels it did not find in the cache: this counts the cache misses.
        self.labels_embedded += len(texts)
        return self._given_tokenizer(texts)

    def load_clip_model(self) -> None:
        config = self.config
        self.clip_model, self.clip_preprocess = config.clip_model, config.clip_preprocess
        self.clip_offloaded = False  # the model stays where its owner put it
        self.tokenize = self._counting_tokenizer
        for table, labels in self._tables.items():
            setattr(self, table, LabelTable(labels, table, self))
        self.tokenize = self._given_tokenizer


def _read_tables(data: Path) -> dict[str, list[str]]:
    """The label tables in ``data`` without blank lines; raises ``InterrogatorError`` naming a missing or empty file."""
    missing = [name for name in TABLE_FILES.values() if not (data / name).is_file()]
    if missing:
        raise InterrogatorError(f"the interrogator label directory {data} is missing {', '.join(missing)}")
    tables = {table: [label for label in load_list(str(data), name) if label] for table, name in TABLE_FILES.items()}
    for table, labels in tables.items():
        if not labels:
            # Fail closed: an empty table would answer no flavour (or no medium) for any image.
            raise InterrogatorError(f"the interrogator label file {data / TABLE_FILES[table]} is empty")
    return tables


def _stack(table: LabelTable, device: torch.device) -> torch.Tensor:
    """The table's unit-length embeddings as one (labels, dim) float32 matrix on ``device``. The table keeps rows
    of the same array (views), so its own ``rank`` still works without a second copy on the CPU."""
    matrix = np.ascontiguousarray(np.stack(table.embeds), dtype=np.float32)
    table.embeds = list(matrix)
    return torch.from_numpy(matrix).to(device)


class InterrogatorScorer:
    """Scores ``{"caption", "flavors", "medium"}`` per image: the BLIP caption, the ``flavor_count`` flavours and the
    medium whose CLIP text embeddings are closest (cosine) to the image's, best first.

    ``clip_model``, ``clip_preprocess`` and ``clip_tokenizer`` are an open_clip model (``encode_image`` /
    ``encode_text``), its image transform and its tokenizer; ``clip_revision`` pins their weights (the cache key and
    the version). ``caption`` is a loaded ``CaptionModel`` or the directory to load one from, on the CLIP model's
    device. ``data_path`` replaces the library's label tables (a directory with ``flavors.txt`` and
    ``mediums.txt``). Images are scored in batches of ``max_batch``: one ``generate`` and one CLIP image pass per
    batch, then an exact top-k over all labels (the library's chunked ``rank`` picks the same labels while k is at
    most ``chunk_size`` / number of chunks: 40 for the shipped flavours). ``labels_embedded`` (0 when every table
    came from the cache) and ``load_seconds`` (embedding or reading the tables) describe the construction; the
    ``interrogator`` attribute is the underlying ``clip_interrogator.Interrogator`` (with only these two tables: its
    prompt modes, which also read the artist, trending and movement tables, are not available).
    """

    name = "interrogator"
    fields: Mapping[str, FieldType] = {"caption": "str", "flavors": "list[str]", "medium": "str"}

    def __init__(
        self,
        clip_model: Any,
        clip_preprocess: Callable[[Image.Image], torch.Tensor],
        clip_tokenizer: Callable[..., torch.Tensor],
        *,
        clip_revision: str,
        caption: CaptionModel | str | Path,
        cache_dir: str | Path,
        clip_name: str = "clip",
        flavor_count: int = DEFAULT_FLAVOR_COUNT,
        caption_max_length: int = 32,
        data_path: str | Path | None = None,
        max_batch: int = 8,
        chunk_size: int = 2048,
    ) -> None:
        for arg, value, least in (("flavor_count", flavor_count, 1), ("caption_max_length", caption_max_length, 1),
                                  ("max_batch", max_batch, 1), ("chunk_size", chunk_size, 1)):
            if value < least:
                raise ValueError(f"`{arg}` has to be at least {least} but is {value}")
        if not clip_revision.strip():
            # Fail closed: without a revision two CLIP models would share (and trust) one embedding cache.
            raise ValueError("`clip_revision` has to name the CLIP weights (it keys the embedding cache) but is empty")
        data = Path(data_path).expanduser() if data_path is not None else DEFAULT_DATA_PATH
        tables = _read_tables(data)
        self.device: torch.device = next(clip_model.parameters()).device
        self._clip_dtype: torch.dtype = next(clip_model.parameters()).dtype
        self.caption_model = caption if isinstance(caption, CaptionModel) else load_caption_model(
            caption, device=self.device)
        self.flavor_count = flavor_count
        self.caption_max_length = caption_max_length
        self.max_batch = max_batch
        self.cache_dir = Path(cache_dir).expanduser()

        config = Config(
            # Only read by the library to tell GIT models apart; the caption model itself is handed in below.
            caption_model_name="blip",
            clip_model_name=cache_key(clip_name, clip_revision),  # only the cache file prefix: models are given
            cache_path=str(self.cache_dir),
            download_cache=False,  # never fetch precomputed embeddings from huggingface.co
            chunk_size=chunk_size,
            data_path=str(data),
            device=str(self.device),
            quiet=True,
        )
        config.caption_model = self.caption_model.model
        config.caption_processor = self.caption_model.processor
        config.clip_model, config.clip_preprocess = clip_model, clip_preprocess
        start = time.perf_counter()
        with warnings.catch_warnings():
            # clip-interrogator 0.6 wraps each CLIP pass in torch.cuda.amp.autocast(): deprecated since torch 2.4
            # (FutureWarning), and disabled with a UserWarning where there is no CUDA. Both are about the library.
            warnings.filterwarnings("ignore", r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)`", FutureWarning)
            warnings.filterwarnings("ignore", r"CUDA is not available", UserWarning)
            self.interrogator = _LocalInterrogator(config, clip_tokenizer, tables)
        self.load_seconds = time.perf_counter() - start
        self.labels_embedded = self.interrogator.labels_embedded
        self._flavors = _stack(self.interrogator.flavors, self.device)
        self._mediums = _stack(self.interrogator.mediums, self.device)
        labels = hashlib.sha256()
        for table in (self.interrogator.flavors, self.interrogator.mediums):
            labels.update("\n".join(table.labels).encode() + b"\0")
        self.version = (f"clip-interrogator-{clip_interrogator.__version__}:clip={clip_revision}:"
                        f"caption={self.caption_model.revision}:labels=sha256:{labels.hexdigest()[:12]}:"
                        f"flavors={flavor_count}")
        self._lock = threading.Lock()

    @torch.no_grad()
    def _image_features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        batch = torch.stack([self.interrogator.clip_preprocess(image) for image in images])
        features = self.interrogator.clip_model.encode_image(batch.to(self.device, dtype=self._clip_dtype)).float()
        return features / features.norm(dim=-1, keepdim=True)

    @staticmethod
    def _top(features: torch.Tensor, matrix: torch.Tensor, labels: Sequence[str], count: int) -> list[list[str]]:
        indices = (features @ matrix.T).topk(min(count, len(labels)), dim=-1).indices.tolist()
        return [[labels[i] for i in row] for row in indices]

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]:
        results: list[dict[str, ScoreValue]] = []
        for start in range(0, len(images), self.max_batch):
            chunk = [image.convert("RGB") for image in images[start:start + self.max_batch]]
            with self._lock:  # one batch at a time: each pass already uses every core (or the whole GPU)
                captions = self.caption_model.caption(chunk, max_new_tokens=self.caption_max_length)
                features = self._image_features(chunk)
                flavors = self._top(features, self._flavors, self.interrogator.flavors.labels, self.flavor_count)
                mediums = self._top(features, self._mediums, self.interrogator.mediums.labels, 1)
            results.extend({"caption": c, "flavors": f, "medium": m[0]}
                           for c, f, m in zip(captions, flavors, mediums, strict=True))
        return results
