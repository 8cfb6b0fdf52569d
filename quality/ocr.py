"""The ``ocr`` scorer: reads the text an image shows; :mod:`quality.ocr_text` checks it against what was asked, the
tenant's banned words, and the "diffusion gibberish" that generated signs are known for.

Reading is RapidOCR (``rapidocr-onnxruntime``) on the PP-OCR models its wheel ships: PP-OCRv4 DB text detection,
the mobile v2.0 180-degree direction classifier and the PP-OCRv4 recogniser with CTC decoding (PaddleOCR,
https://github.com/PaddlePaddle/PaddleOCR), loaded from the package's own files by explicit path. The detector
scales the image so that its shorter side is ``det_limit_side_len`` (736, RapidOCR's default): a 512x512 image is
read at 736x736, which keeps 10-12 px print legible and costs about 1.5x reading at 512.

The recogniser's alphabet (6,623 characters, in the model's metadata) is Chinese, Latin letters (accented ones come
out bare), digits and symbols, plus a handful of Greek, Cyrillic and kana letters. Arabic, Hebrew, Cyrillic, Greek,
Devanagari, Korean and Japanese kana come out as Latin-looking junk, and German ß as "B"; ``quality.ocr_text``
checks an expected text only where the alphabet covers it.

Decoding is RapidOCR's greedy CTC plus the word breaks the recogniser ranked second (:class:`SpacedCTCDecode`):
all-caps lines lose their spaces otherwise ("SUMMERSALE"), which hides banned words from whole-word matching.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rapidocr_onnxruntime import RapidOCR

from quality.base import FieldType, ScoreContext, ScoreValue
from quality.ocr_text import INFERRED_SPACE, Line, analyse, fold_char, is_wide, lexicon, lexicon_path
from quality.packaged_models import onnx_providers, package_file, sha256_files

_PACKAGE = "rapidocr-onnxruntime"
_MODELS = {
    "det": "ch_PP-OCRv4_det_infer.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "rec": "ch_PP-OCRv4_rec_infer.onnx",
}

# Measured on 100 rendered three-word lines, 11-64 px: 7 of 1,371 letter pairs inside words reach it (small print),
# 42 of the 43 word gaps the recogniser dropped do. Readings with and without these spaces are both kept.
SPACE_PROBABILITY = 0.01
MAX_ASPECT = 4  # longer side over shorter side of what the detector gets (padding bounds its work)


def bundled_model_paths() -> dict[str, Path]:
    """The three ONNX files inside the installed ``rapidocr_onnxruntime`` package; raises if the wheel lacks one."""
    return {role: package_file(_PACKAGE.replace("-", "_"), f"models/{filename}", what="OCR model",
                               distribution=_PACKAGE)
            for role, filename in _MODELS.items()}


class SpacedCTCDecode:
    """Greedy CTC decoding (blank is class 0) that also marks the word breaks the recogniser saw but did not rank
    first: ``INFERRED_SPACE`` goes between two non-CJK characters when some column between them gives the space
    class at least ``space_probability``. Confidence is the mean top probability of the decoded characters, as
    RapidOCR's."""

    def __init__(self, characters: Sequence[str], space_probability: float = SPACE_PROBABILITY) -> None:
        self.characters = list(characters)
        self.space = self.characters.index(" ")
        self.space_probability = space_probability

    def __call__(self, preds: np.ndarray, return_word_box: bool = False, **_: Any) -> list[tuple[str, float]]:
        if return_word_box:
            raise NotImplementedError("word boxes are not decoded by the ocr scorer")
        results = []
        for columns in preds:
            best = columns.argmax(axis=1)
            keep = best != 0
            keep[1:] &= best[1:] != best[:-1]
            positions = np.flatnonzero(keep)
            out: list[str] = []
            for i, current in enumerate(positions):
                char, previous = self.characters[best[current]], positions[i - 1]
                if (i > 0 and best[current] != self.space and best[previous] != self.space
                        and not is_wide(char) and not is_wide(self.characters[best[previous]])
                        and columns[previous + 1:current, self.space].max(initial=0.0) >= self.space_probability):
                    out.append(INFERRED_SPACE)
                out.append(char)
            confidence = float(columns.max(axis=1)[positions].mean()) if len(positions) else 0.0
            results.append(("".join(out), confidence))
        return results


def _box_length(box: Sequence[Sequence[float]]) -> float:
    points = np.asarray(box, dtype=np.float64)
    width = (np.linalg.norm(points[1] - points[0]) + np.linalg.norm(points[2] - points[3])) / 2
    height = (np.linalg.norm(points[3] - points[0]) + np.linalg.norm(points[2] - points[1])) / 2
    return float(max(width, height)) / max(float(min(width, height)), 1.0)


def prepare(image: Image.Image) -> Image.Image:
    """``image`` as the reader gets it: RGB, transparency over white (what a viewer sees on a white page; a plain
    conversion would show the colour under transparent pixels), and padded with white to an aspect ratio of at
    most ``MAX_ASPECT``. The detector scales the *shorter* side up to ``det_limit_side_len``: a 6x900 strip would
    become a 736x110,000 input and take minutes."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
    else:
        flat = image.convert("RGB")
    width, height = flat.size
    short = -(-max(width, height) // MAX_ASPECT)
    if min(width, height) < short:
        padded = Image.new("RGB", (max(width, short), max(height, short)), (255, 255, 255))
        padded.paste(flat, (0, 0))
        flat = padded
    return flat


class OcrScorer:
    """Reads each image and answers: ``text``, ``lines``, ``confidence``, ``expected``, ``text_checked``,
    ``text_match``, ``missing_texts``, ``banned_words``, ``banned_found`` and ``garbled`` (see the module docstring
    and :func:`quality.ocr_text.analyse`).

    ``version`` names the package, the first 12 hex digits of the sha256 of the three models, and of the word list.
    Images run one at a time (the detector takes one image); one lock serialises reading, since RapidOCR keeps
    per-call state on the engine.
    """

    name = "ocr"
    fields: dict[str, FieldType] = {
        "text": "str", "lines": "int", "confidence": "float", "expected": "bool", "text_checked": "bool",
        "text_match": "float", "missing_texts": "list[str]", "banned_words": "int", "banned_found": "list[str]",
        "garbled": "float",
    }

    def __init__(self, *, intra_op_num_threads: int | None = None, det_limit_side_len: int = 736) -> None:
        if det_limit_side_len < 32:
            raise ValueError(f"`det_limit_side_len` has to be at least 32 but is {det_limit_side_len}")
        if intra_op_num_threads is not None and intra_op_num_threads < 0:
            raise ValueError(f"`intra_op_num_threads` has to be >= 0 (0: onnxruntime's default) but is "
                             f"{intra_op_num_threads}")
        paths = bundled_model_paths()
        self.model_paths = paths
        self.lexicon = lexicon()
        self.version = (f"rapidocr-onnxruntime:{metadata.version(_PACKAGE)}:{sha256_files(paths.values())[:12]}"
                        f"+lexicon:{sha256_files([lexicon_path()])[:12]}")
        self.providers = onnx_providers()
        cuda = self.providers[0] == "CUDAExecutionProvider"
        self._engine = RapidOCR(
            det_model_path=str(paths["det"]), cls_model_path=str(paths["cls"]), rec_model_path=str(paths["rec"]),
            det_use_cuda=cuda, cls_use_cuda=cuda, rec_use_cuda=cuda, det_limit_side_len=det_limit_side_len,
            text_score=0.0,  # keep every line: unreadable ones are evidence of garbled text
            intra_op_num_threads=intra_op_num_threads or -1,
        )
        # RapidOCR 1.4 decodes with ``text_rec.postprocess_op(preds, return_word_box, ...)``; ours also marks the
        # word breaks. Its character list comes from the recogniser's metadata, with CTC blank first, space last.
        characters = self._engine.text_rec.postprocess_op.character
        self._engine.text_rec.postprocess_op = SpacedCTCDecode(characters)
        self.alphabet = frozenset(fold_char(c) for c in characters[1:])
        self._lock = threading.Lock()

    def read(self, image: Image.Image) -> list[Line]:
        """The text lines of one image, top to bottom and left to right."""
        flat = prepare(image)
        with self._lock:
            result, _ = self._engine(flat)
        return [Line(str(text), float(conf), _box_length(box)) for box, text, conf in result or []]

    def warmup(self) -> None:
        """One read of a small drawing, so the first request does not pay for onnxruntime's lazy set-up."""
        self.read(Image.new("RGB", (64, 64), (255, 255, 255)))

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]:
        return [analyse(self.read(image), context.image(i), context, alphabet=self.alphabet,
                        lexicon=self.lexicon) for i, image in enumerate(images)]
