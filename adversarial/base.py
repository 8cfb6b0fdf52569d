"""The ``GateTarget`` extension point: one of the gate's image decisions, as a classifier an attack can aim at.

torchattacks attacks classifiers: a module from images (NCHW, float, in [0, 1]) to logits, and labels to move away
from. A gate decision is a threshold on a score ("NSFW probability >= 0.85 rejects", "brand score < 0.2 holds"), so
a target wraps the scorer's differentiable core and answers two logits whose difference is the gate's margin:
``logits[:, FAIL] - logits[:, PASS] = score - threshold`` (signed so that positive means the gate fails the image).
The label of an image is the gate's own verdict on it, and an attack succeeds when the verdict flips.

``verdict`` answers what the gateway itself would decide, through the real scorer on real PIL images (8-bit,
rounded), so a flip is only counted when it survives quantisation and the production code path, not just in the
float model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from PIL import Image

PASS, FAIL = 0, 1


class NotDifferentiable(TypeError):
    """A white-box attack was asked to attack a target that has no gradient (use a score-based attack)."""


@runtime_checkable
class GateTarget(Protocol):
    """A gate decision as a two-logit classifier (``PASS``, ``FAIL``) over NCHW float images in [0, 1]."""

    name: str
    description: str
    differentiable: bool  # False: only score-based (black-box) attacks may use it

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

    def verdict(self, images: Sequence[Image.Image]) -> list[int]:
        """``PASS`` or ``FAIL`` per image, decided by the production scorer and the gate's threshold."""
        ...


def to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL images (same size) as an NCHW float tensor in [0, 1]."""
    import numpy as np

    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def to_images(batch: torch.Tensor) -> list[Image.Image]:
    """An NCHW tensor in [0, 1] as 8-bit RGB PIL images (rounded, as a file would store them)."""
    pixels = (batch.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p, "RGB") for p in pixels]
