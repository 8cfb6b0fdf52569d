"""The brand target computes ``BrandScorer``'s score through torch on the tiny seeded CLIP (whose similarities mean
nothing; the arithmetic, the preprocessing and the gradients are what is tested), and its margin has the gate's
sign."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from PIL import Image
from torchvision import transforms

from adversarial.base import FAIL, PASS, GateTarget, to_tensor
from adversarial.target_brand import BrandTarget, ClipPreprocess, UnsupportedPreprocess
from adversarial.target_ops import quantise
from quality.base import ScoreContext
from quality.brand import BrandKit, BrandWeights
from quality.clip_model import ClipModel

KitFactory = Callable[..., BrandKit]

# Same pixels (the transform's Pillow resize is replayed bit for bit, the palette count is exact) through the same
# float32 CLIP tower, in other batch compositions: measured at most 1.3e-7 on the score (0 when the batch is the
# same). 1e-5 is ~100 times that float32 noise, room for other CPUs' kernels.
TOLERANCE = 1e-5


def _production(target: BrandTarget, images: list[Image.Image]) -> list[float]:
    context = ScoreContext(tenant=target.kit.tenant, brand=target.kit)
    return [float(values["score"]) for values in target.scorer.score(images, context)]  # type: ignore[arg-type]


def test_is_a_differentiable_gate_target(brand_target: BrandTarget, tiny_clip: ClipModel) -> None:
    assert isinstance(brand_target, GateTarget)
    assert brand_target.name == "brand" and brand_target.differentiable
    assert brand_target.threshold == 0.2
    assert [name for name, _ in brand_target.terms] == ["palette", "text", "references"]
    assert brand_target.network is tiny_clip.model  # shared with the production scorer, not copied
    assert not any(p.requires_grad for p in brand_target.parameters())


def test_preprocess_replays_the_models_transform(tiny_clip: ClipModel, sample_images: dict[str, Image.Image]) -> None:
    preprocess = ClipPreprocess.of(tiny_clip.preprocess)
    assert (preprocess.size, preprocess.kind, preprocess.crop) == ((32,), "bicubic", (32, 32))
    for name, image in sample_images.items():  # portrait, landscape and square, up and down
        expected = tiny_clip.preprocess(image)[None]
        torch.testing.assert_close(preprocess(quantise(to_tensor([image]))), expected, atol=1e-6, rtol=0, msg=name)


def test_preprocess_replays_an_exact_size_resize_too() -> None:
    transform = transforms.Compose([transforms.Resize((40, 24), interpolation=transforms.InterpolationMode.BILINEAR),
                                    transforms.CenterCrop(20), transforms.ToTensor(),
                                    transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])
    image = Image.effect_mandelbrot((70, 50), (-2.0, -1.0, 1.0, 1.0), 100).convert("RGB")
    got = ClipPreprocess.of(transform)(quantise(to_tensor([image])))
    torch.testing.assert_close(got, transform(image)[None], atol=1e-6, rtol=0)


@pytest.mark.parametrize("step", [transforms.RandomCrop(32), transforms.Grayscale(3), transforms.Lambda(lambda x: x)])
def test_preprocess_refuses_steps_it_cannot_replay(step: object) -> None:
    transform = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32), step, transforms.ToTensor(),
                                    transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    with pytest.raises(UnsupportedPreprocess, match="cannot replay"):
        ClipPreprocess.of(transform)
    with pytest.raises(UnsupportedPreprocess, match="lacks normalize"):
        ClipPreprocess.of(transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32)]))


def test_score_matches_the_production_scorer(brand_target: BrandTarget, sample_images: dict[str, Image.Image],
                                             sample_batch: list[Image.Image]) -> None:
    with torch.no_grad():
        batched = brand_target.score(to_tensor(sample_batch)).tolist()
        own_size = [brand_target.score(to_tensor([image])).item() for image in sample_images.values()]
    for got, expected in [*zip(batched, _production(brand_target, sample_batch), strict=True),
                          *zip(own_size, _production(brand_target, list(sample_images.values())), strict=True)]:
        assert abs(got - expected) <= TOLERANCE


@pytest.mark.parametrize(("spec", "references", "terms"), [
    ({"descriptors": ["bold"]}, (), ["text"]),
    ({"palette": ["#336699"], "descriptors": ["calm"], "weights": {"text": 0}}, ("chelsea",),
     ["palette", "references"]),
    ({"palette": ["#336699", "#ffffff"]}, ("astronaut",), ["palette", "references"]),
])
def test_kits_with_some_terms_match_too(tiny_clip: ClipModel, make_brand_kit: KitFactory,
                                        sample_batch: list[Image.Image], spec: dict[str, object],
                                        references: tuple[str, ...], terms: list[str]) -> None:
    target = BrandTarget(tiny_clip, make_brand_kit(spec, references=references))
    assert [name for name, _ in target.terms] == terms
    with torch.no_grad():
        got = target.score(to_tensor(sample_batch[:5])).tolist()
    for value, expected in zip(got, _production(target, sample_batch[:5]), strict=True):
        assert abs(value - expected) <= TOLERANCE


def test_refuses_a_kit_that_weighs_nothing(tiny_clip: ClipModel, brand_kit: BrandKit) -> None:
    with pytest.raises(ValueError, match="no weight"):
        BrandTarget(tiny_clip, replace(brand_kit, weights=BrandWeights(0.0, 0.0, 0.0)))
    with pytest.raises(TypeError, match="BrandKit"):
        BrandTarget(tiny_clip, {"palette": ["#ff0000"]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        BrandTarget(tiny_clip, brand_kit, 0.0)


def test_argmax_agrees_with_the_production_verdict(tiny_clip: ClipModel, brand_kit: BrandKit,
                                                   sample_batch: list[Image.Image]) -> None:
    scores = sorted(_production(BrandTarget(tiny_clip, brand_kit), sample_batch))
    threshold = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2  # between two scores, mid-batch
    target = BrandTarget(tiny_clip, brand_kit, threshold)
    verdicts = target.verdict(sample_batch)
    assert PASS in verdicts and FAIL in verdicts
    with torch.no_grad():
        logits = target(to_tensor(sample_batch))
    assert logits.shape == (len(sample_batch), 2) and logits.dtype == torch.float32
    expected = (threshold - target.score(to_tensor(sample_batch))) / (threshold * (1 - threshold))
    torch.testing.assert_close((logits[:, FAIL] - logits[:, PASS]).double(), expected, rtol=1e-5, atol=1e-6)
    clear = (logits[:, FAIL] - logits[:, PASS]).abs() > 1e-4
    assert logits.argmax(1)[clear].tolist() == [v for v, c in zip(verdicts, clear.tolist(), strict=True) if c]


def test_gradients_flow_from_every_term(brand_target: BrandTarget, sample_images: dict[str, Image.Image]) -> None:
    for name in ("coffee", "red", "grey", "noise"):  # the red frame is all at the bounds 0 and 1
        x = to_tensor([sample_images[name]]).requires_grad_()
        brand_target(x)[:, FAIL].sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, name


def test_fgsm_runs_and_moves_the_score_towards_a_flip(brand_target: BrandTarget,
                                                      sample_batch: list[Image.Image]) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    x = to_tensor(sample_batch)
    labels = torch.tensor(brand_target.verdict(sample_batch))
    adversarial = torchattacks.FGSM(brand_target, eps=8 / 255)(x, labels)
    assert adversarial.shape == x.shape
    with torch.no_grad():
        before, after = brand_target.score(x), brand_target.score(adversarial)
    towards_flip = torch.where(labels == PASS, -1.0, 1.0).double()
    assert ((after - before) * towards_flip > 0).float().mean() >= 0.75
