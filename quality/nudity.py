"""The ``nudity`` scorer: NudeNet's body-part detector on onnxruntime, from the weights shipped inside the package.

NudeNet 3 (https://github.com/notAI-tech/NudeNet) is an Ultralytics YOLOv8n detector trained on 18 labels: exposed
and covered body parts, feet, belly, armpits and faces. The ``nudenet`` wheel ships it as ``320n.onnx`` (320x320
input; the ONNX metadata names the labels, the training framework and its AGPL-3.0 licence). Where the ``nsfw``
scorer gives one probability for the whole image, this one says *what* was found, so a policy can tell a bare
chest or a swimsuit from exposed genitalia.

The model is loaded only from the package's own file; ``NudeDetector`` is given our onnxruntime session because its
constructor ignores ``providers`` (so it could never use CUDA). Images are handed over as RGB arrays, the channel
order Ultralytics trains YOLOv8 in. nudenet's own file-path input reaches the model as BGR (``cv2.imread``, then an
``RGBA2BGR`` conversion that on a three-channel image swaps red and blue, then ``blobFromImage(swapRB=True)``); on
the one portrait we could check, the face is found at 0.81 from RGB and 0.72 from BGR.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from nudenet import NudeDetector
from nudenet import nudenet as nudenet_module
from PIL import Image

from quality.base import FieldType, ScoreContext, ScoreValue
from quality.packaged_models import onnx_providers, package_file, sha256_files

_PACKAGE = "nudenet"
_MODEL_FILENAME = "320n.onnx"
_RESOLUTION = 320  # the square input the model was exported for (its metadata's imgsz)

# The labels that count as sexual nudity for release decisions: exposed female breasts and genitalia, male
# genitalia, buttocks and anus. Left out on purpose, though nudenet reports them: MALE_BREAST_EXPOSED (a bare
# chest is everyday beach and sports imagery), BELLY_EXPOSED, ARMPITS_EXPOSED and FEET_EXPOSED (swimwear, summer
# clothes) and the two FACE labels.
EXPOSED_LABELS = frozenset({
    "FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
})
# The same parts covered (underwear, swimwear, tight clothing): not nudity, but what a strict brand may review.
COVERED_LABELS = frozenset({
    "FEMALE_BREAST_COVERED", "FEMALE_GENITALIA_COVERED", "BUTTOCKS_COVERED", "ANUS_COVERED",
})
# Confidence from which an exposed detection is counted and named. nudenet itself keeps boxes from 0.25 (its NMS
# threshold); on benign pictures we saw spurious exposed boxes up to 0.3 (a coffee cup read as BUTTOCKS_EXPOSED),
# so counts start at 0.5, the usual operating point of a YOLO detector. ``exposed_max`` still reports any score.
COUNT_THRESHOLD = 0.5


def bundled_model_path() -> Path:
    """The YOLOv8n ONNX file inside the installed ``nudenet`` package; raises if the wheel lacks it."""
    return package_file(_PACKAGE, _MODEL_FILENAME, what="NudeNet model")


def model_labels(session: ort.InferenceSession) -> tuple[str, ...]:
    """The class names in the model's own metadata (``{0: 'FEMALE_GENITALIA_COVERED', ...}``), in class order."""
    names = ast.literal_eval(session.get_modelmeta().custom_metadata_map["names"])
    return tuple(names[i] for i in range(len(names)))


def summarise(detections: Iterable[Mapping[str, Any]], threshold: float = COUNT_THRESHOLD) -> dict[str, ScoreValue]:
    """The scorer's answer for one image from nudenet's detections (``{"class", "score", "box"}`` each).

    ``exposed_max`` and ``covered_max`` are the highest confidence among the exposed and covered labels (0.0 when
    none); ``exposed_count`` and ``labels`` (sorted, distinct) count only exposed detections at ``threshold`` or
    above. Other labels (faces, feet, belly, armpits, male chest) do not count.
    """
    exposed_max = covered_max = 0.0
    count = 0
    labels: set[str] = set()
    for detection in detections:
        label, score = str(detection["class"]), float(detection["score"])
        if label in EXPOSED_LABELS:
            exposed_max = max(exposed_max, score)
            if score >= threshold:
                count += 1
                labels.add(label)
        elif label in COVERED_LABELS:
            covered_max = max(covered_max, score)
    return {"exposed_max": exposed_max, "exposed_count": count, "labels": sorted(labels), "covered_max": covered_max}


class _Detector(NudeDetector):  # type: ignore[misc]  # nudenet ships no type information
    """nudenet's detector on a session we built (its own constructor drops ``providers``)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.onnx_session = session
        self.input_width = self.input_height = _RESOLUTION
        self.input_name = session.get_inputs()[0].name


class NudeNetScorer:
    """Scores exposed body parts per image: ``exposed_max``, ``exposed_count``, ``labels``, ``covered_max``.

    ``version`` names the package and the first 12 hex digits of the weights' sha256. Batches run through the
    model ``max_batch`` images at a time (its input has a free batch dimension); ``intra_op_num_threads`` is passed to
    onnxruntime (``None``: its default).
    """

    name = "nudity"
    fields: dict[str, FieldType] = {
        "exposed_max": "float", "exposed_count": "int", "labels": "list[str]", "covered_max": "float",
    }

    def __init__(self, *, intra_op_num_threads: int | None = None, max_batch: int = 8,
                 threshold: float = COUNT_THRESHOLD) -> None:
        if max_batch < 1:
            raise ValueError(f"`max_batch` has to be at least 1 but is {max_batch}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"`threshold` has to be in (0, 1] but is {threshold}")
        if intra_op_num_threads is not None and intra_op_num_threads < 0:
            raise ValueError(f"`intra_op_num_threads` has to be >= 0 (0: onnxruntime's default) but is "
                             f"{intra_op_num_threads}")
        path = bundled_model_path()
        self.model_path = path
        self.version = f"nudenet:{metadata.version(_PACKAGE)}:{sha256_files([path])[:12]}"
        self.providers = onnx_providers()
        self.max_batch = max_batch
        self.threshold = threshold
        options = ort.SessionOptions()
        if intra_op_num_threads is not None:
            options.intra_op_num_threads = intra_op_num_threads
        session = ort.InferenceSession(str(path), sess_options=options, providers=self.providers)
        self.labels = model_labels(session)
        # nudenet names detections from its own list, not the model's: the two must agree, and a renamed label
        # would silently stop counting. Either way, refuse to start rather than score wrong.
        if self.labels != tuple(getattr(nudenet_module, "__labels")):  # noqa: B009 - a module-private name
            raise RuntimeError(f"the NudeNet model at {path} has labels {self.labels}, not nudenet's own list")
        unknown = (EXPOSED_LABELS | COVERED_LABELS) - set(self.labels)
        if unknown:
            raise RuntimeError(f"the NudeNet model at {path} has no label {sorted(unknown)}; labels: {self.labels}")
        self._detector = _Detector(session)

    def detect(self, images: Sequence[Image.Image]) -> list[list[dict[str, Any]]]:
        """nudenet's raw detections per image (``class``, ``score``, ``box`` as x, y, w, h)."""
        # Any mode to RGB, as the nsfw scorer does: alpha is dropped, so content hidden by transparency is judged.
        arrays = [np.asarray(image.convert("RGB")) for image in images]
        detections: list[list[dict[str, Any]]] = self._detector.detect_batch(arrays, batch_size=self.max_batch)
        return detections

    def warmup(self) -> None:
        """One inference on a blank image, so the first request does not pay for onnxruntime's lazy set-up."""
        self.detect([Image.new("RGB", (_RESOLUTION, _RESOLUTION))])

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]:
        if not images:
            return []
        return [summarise(found, self.threshold) for found in self.detect(images)]
