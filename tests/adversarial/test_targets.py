"""The target registry: built by name with the release policy's default thresholds, clear errors for everything
else, and one contract (the GateTarget protocol, torchattacks' model API) that every target keeps."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from adversarial.base import FAIL, PASS, GateTarget, to_tensor
from adversarial.targets import TARGETS, build_targets
from quality.brand import BrandKit

POLICY_DATA = Path(__file__).resolve().parents[2] / "policies/mediagate/config/data.json"
MODULES = {"nsfw": "adversarial.target_nsfw", "quality": "adversarial.target_quality",
           "brand": "adversarial.target_brand", "nsfw-onnx": "adversarial.target_nsfw_onnx"}
DIFFERENTIABLE = [name for name in TARGETS if name != "nsfw-onnx"]  # the production onnxruntime model has no gradient


@pytest.mark.parametrize("name", TARGETS)
def test_default_thresholds_are_the_release_policys(name: str) -> None:
    release = json.loads(POLICY_DATA.read_text())["defaults"]["release"]
    assert importlib.import_module(MODULES[name]).DEFAULT_THRESHOLD == release[TARGETS[name]]


def test_builds_the_named_targets_in_order(tiny_clip_dir: Path, brand_kit: BrandKit) -> None:
    quality, brand = build_targets(["quality", "brand"], clip_dir=tiny_clip_dir, brand_kit=brand_kit,
                                   thresholds={"brand": 0.35})
    assert (quality.name, quality.threshold) == ("quality", 0.15)  # type: ignore[attr-defined]
    assert (brand.name, brand.threshold) == ("brand", 0.35)  # type: ignore[attr-defined]
    assert all(isinstance(target, GateTarget) for target in (quality, brand))


def test_builds_an_nsfw_target_at_a_tenants_threshold() -> None:
    (nsfw,) = build_targets(["nsfw"], thresholds={"nsfw": 0.4})
    assert (nsfw.name, nsfw.threshold, nsfw.jpeg) == ("nsfw", 0.4, "bpda")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("names", "kwargs", "error", "match"), [
    ("quality", {}, TypeError, "not the string"),
    ([], {}, ValueError, "at least one target"),
    (["quality", "sharpness"], {}, ValueError, "unknown targets 'sharpness'"),
    (["quality", "quality"], {}, ValueError, "more than once"),
    (["quality"], {"thresholds": {"nsfw": 0.4}}, ValueError, "sets nsfw"),
    (["quality"], {"thresholds": {"quality": 1.0}}, ValueError, "strictly between 0 and 1"),
    (["brand"], {}, ValueError, "`clip_dir` and `brand_kit`"),
])
def test_refuses_what_it_cannot_build(names: Any, kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build_targets(names, **kwargs)


def test_brand_names_the_missing_argument(tiny_clip_dir: Path, brand_kit: BrandKit) -> None:
    with pytest.raises(ValueError, match="needs `brand_kit`"):
        build_targets(["brand"], clip_dir=tiny_clip_dir)
    with pytest.raises(ValueError, match="needs `clip_dir`"):
        build_targets(["brand"], brand_kit=brand_kit)


@pytest.fixture(params=DIFFERENTIABLE)
def target(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_target")


def test_contract(target: Any, sample_batch: list[Image.Image]) -> None:
    """What an attack suite relies on, for every target: the protocol, (N, 2) float logits on [0, 1] NCHW input,
    finite non-zero gradients to the pixels, frozen eval mode, and torchattacks finding the device."""
    torchattacks = pytest.importorskip("torchattacks")
    assert isinstance(target, GateTarget) and target.differentiable
    assert isinstance(target, torch.nn.Module) and not target.training
    images = sample_batch[:2]
    x = to_tensor(images).requires_grad_()
    logits = target(x)
    assert logits.shape == (2, 2) and logits.dtype == torch.float32
    (logits[:, FAIL] - logits[:, PASS]).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and (x.grad != 0).any()
    assert target.verdict(images) in ([PASS, PASS], [PASS, FAIL], [FAIL, PASS], [FAIL, FAIL])
    attack = torchattacks.FGSM(target, eps=8 / 255)
    assert attack.device == torch.device("cpu")
    labels = torch.tensor(target.verdict(images))
    adversarial = attack(x.detach(), labels)
    assert adversarial.shape == x.shape and 0 <= adversarial.min() and adversarial.max() <= 1
    assert not target.training  # torchattacks calls eval() and leaves the mode as it found it
    attack.set_model_training_mode(model_training=True)
    with pytest.raises(ValueError, match="training mode"):
        attack(x.detach(), labels)  # a gate is never attacked in a mode it does not run in
