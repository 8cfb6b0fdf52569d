"""The production NSFW model as a black-box target: score-based attacks run, white-box ones are refused."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from adversarial.base import FAIL, PASS, GateTarget, NotDifferentiable, to_tensor
from adversarial.image_attacks import run_attack
from adversarial.report_types import AttackSpec
from adversarial.target_nsfw import NsfwTarget
from adversarial.target_nsfw_onnx import OnnxNsfwTarget


@pytest.fixture(scope="module")
def onnx_target() -> OnnxNsfwTarget:
    return OnnxNsfwTarget(threshold=0.01)


def test_it_is_a_gate_target_without_a_gradient(onnx_target: OnnxNsfwTarget, sample_batch: list[Image.Image]) -> None:
    assert isinstance(onnx_target, GateTarget) and onnx_target.differentiable is False
    images = [im.resize((224, 224)) for im in sample_batch[:3]]
    logits = onnx_target(to_tensor(images))
    assert logits.shape == (3, 2) and not logits.requires_grad
    margins = (logits[:, FAIL] - logits[:, PASS]).tolist()
    assert [FAIL if m >= 0 else PASS for m in margins] == onnx_target.verdict(images)


def test_it_agrees_with_the_white_box_target(onnx_target: OnnxNsfwTarget, sample_batch: list[Image.Image]) -> None:
    images = [im.resize((224, 224)) for im in sample_batch[:3]]
    white = NsfwTarget(threshold=0.01, scorer=onnx_target.scorer)
    with torch.no_grad():
        assert torch.allclose(onnx_target(to_tensor(images)), white(to_tensor(images)), atol=1e-3)


def test_white_box_attacks_are_refused_and_square_runs(onnx_target: OnnxNsfwTarget,
                                                       sample_batch: list[Image.Image]) -> None:
    images = [im.resize((64, 64)) for im in sample_batch[:2]]
    with pytest.raises(NotDifferentiable, match="nsfw-onnx"):
        run_attack(onnx_target, images, AttackSpec("pgd-8", "pgd", 8 / 255, steps=2))
    result = run_attack(onnx_target, images, AttackSpec("square-8", "square", 8 / 255, queries=5))
    assert result.n_images == 2 and result.forward_calls >= 1
