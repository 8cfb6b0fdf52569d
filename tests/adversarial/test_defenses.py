"""Purifiers parse and fail loudly, purify what they claim, and give adaptive attacks (BPDA, EOT) the gradients
Athalye et al. describe; against a JPEG defense, the adaptive attack flips what the non-adaptive one cannot.

The adaptive-vs-non-adaptive toy is a "too bright or too noisy" gate: margin ``100 * (mean - 0.5) + 2000 *
mean(laplacian(x)^2)``. On a smooth image just below the brightness threshold, the gradient of the squared
high-frequency term dominates wherever there is pixel noise (PGD's random start), so the undefended attack flips it
with a checkerboard-like perturbation, which JPEG at quality 50 (4:2:0 chroma, coarse high-frequency tables)
largely removes: the non-adaptive attack fails after purification. Through BPDA the gradient is taken at the JPEG
output, where there is little high frequency left, so the brightness term and the frequencies JPEG keeps steer the
attack, and it flips the purified verdict.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from adversarial.base import FAIL, PASS, GateTarget, to_images, to_tensor
from adversarial.defenses import Blur, DefendedTarget, Jpeg, Purifier, PurifierSpecError, Resize
from adversarial.image_attacks import AttackSpec, evaluate_defense, run_attack

ImageFactory = Callable[..., list[Image.Image]]
LAPLACIAN = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The toy tensors are tiny: torch's intra-op thread pool only adds synchronisation, and on a busy machine its
    spinning threads made these tests several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class NoiseGate(nn.Module):
    """FAIL if too bright or too noisy (see the module docstring)."""

    name = "noise"
    description = "fails bright or high-frequency-noisy images"
    differentiable = True

    def margin(self, images: torch.Tensor) -> torch.Tensor:
        kernel = LAPLACIAN.to(images).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
        energy = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=3).pow(2)
        return 100.0 * (images.mean(dim=(1, 2, 3)) - 0.5) + 2000.0 * energy.mean(dim=(1, 2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        margin = self.margin(images)
        return torch.stack([torch.zeros_like(margin), margin], dim=1)

    def verdict(self, images: Sequence[Image.Image]) -> list[int]:
        with torch.no_grad():
            return [FAIL if m > 0 else PASS for m in self.margin(to_tensor(images)).tolist()]


@pytest.fixture
def make_images() -> ImageFactory:
    """Factory: smooth textured images (bicubic-upsampled noise) with the given means on the [0, 1] scale."""

    def make(means: Sequence[float], size: int = 32, seed: int = 0) -> list[Image.Image]:
        generator = torch.Generator().manual_seed(seed)
        coarse = torch.randn(len(means), 3, size // 8, size // 8, generator=generator)
        texture = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False) * 0.08
        texture = texture - texture.mean(dim=(1, 2, 3), keepdim=True)
        batch = (texture + torch.tensor(means).view(-1, 1, 1, 1)).clamp(0, 1)
        return to_images(batch)

    return make


def test_spec_round_trips_to_canonical_form() -> None:
    purifier = Purifier.from_spec(" JPEG:75, resize:0.75 ,blur:0.5")
    assert purifier.steps == (Jpeg(75), Resize(0.75), Blur(0.5))
    assert purifier.spec == "jpeg:75,resize:0.75,blur:0.5"
    assert Purifier.from_spec(purifier.spec) == purifier


@pytest.mark.parametrize(("spec", "message"), [
    ("", "purifier spec is empty"),
    ("   ", "purifier spec is empty"),
    ("jpeg:75,,blur:1", r"step 2 of 3 \(''\) of purifier spec 'jpeg:75,,blur:1' is empty"),
    ("jpeg", r"step 1 of 1 \('jpeg'\) .* has to be NAME:VALUE"),
    ("jpeg:", r"step 1 of 1 \('jpeg:'\) .* has to be NAME:VALUE"),
    ("jpeg:75,sharpen:2", r"step 2 of 2 \('sharpen:2'\) .* unknown operation 'sharpen'; known: blur, jpeg, resize"),
    ("jpeg:high", r"step 1 of 1 .*: JPEG `quality` has to be an integer in \[1, 100\] but is 'high'"),
    ("jpeg:7.5", "JPEG `quality` has to be an integer in \\[1, 100\\] but is '7.5'"),
    ("jpeg:0", "JPEG `quality` has to be an integer in \\[1, 100\\] but is 0"),
    ("jpeg:101", "but is 101"),
    ("resize:1.5", r"step 1 of 1 \('resize:1.5'\) .*: resize `factor` has to be a number in \(0, 1\] but is 1.5"),
    ("resize:half", "resize `factor` has to be a number in \\(0, 1\\] but is 'half'"),
    ("resize:0", "but is 0.0"),
    ("jpeg:75,blur:-1", r"step 2 of 2 \('blur:-1'\) .*: blur `sigma` has to be a number in \(0, 10\] but is -1.0"),
    ("blur:nan", "blur `sigma` has to be a number in \\(0, 10\\] but is 'nan'"),
])
def test_spec_errors_name_the_bad_part(spec: str, message: str) -> None:
    with pytest.raises(PurifierSpecError, match=message):
        Purifier.from_spec(spec)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(PurifierSpecError, match="at least one step"):
        Purifier(())
    with pytest.raises(PurifierSpecError, match="JPEG `quality`"):
        Jpeg(True)
    with pytest.raises(PurifierSpecError, match="blur `sigma`"):
        Blur(11.0)


def test_purifier_keeps_size_and_mode_and_is_deterministic(make_images: ImageFactory) -> None:
    purifier = Purifier.from_spec("jpeg:60,resize:0.5,blur:0.8")
    images = [image.convert("RGBA") for image in make_images([0.4, 0.6], size=40)]
    first, second = purifier(images), purifier(images)
    assert all(p.size == (40, 40) and p.mode == "RGB" for p in first)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, second, strict=True))


def test_jpeg_removes_much_of_a_pixel_noise_perturbation(make_images: ImageFactory) -> None:
    clean = make_images([0.4, 0.5, 0.6, 0.45], size=64)
    batch = to_tensor(clean)
    signs = torch.randint(0, 2, batch.shape, generator=torch.Generator().manual_seed(0)).float() * 2 - 1
    noisy = to_images(batch + signs * 8 / 255)  # i.i.d. +-8/255 per pixel and channel: all frequencies
    shifted = to_images(batch + 8 / 255)  # the same L-inf budget at frequency zero
    jpeg = Purifier.from_spec("jpeg:50")

    def surviving(attacked: list[Image.Image]) -> float:
        before = (to_tensor(attacked) - batch).norm()
        after = (to_tensor(jpeg(attacked)) - to_tensor(jpeg(clean))).norm()
        return float(after / before)

    assert surviving(noisy) < 0.7  # measured 0.61: over 60% of its energy is gone
    assert surviving(shifted) > 0.95  # JPEG keeps the DC level: purification is frequency-selective


@pytest.mark.parametrize("spec", ["jpeg:60,resize:0.5,blur:0.8", "resize:0.75", "blur:1.5"])
def test_bpda_forward_is_the_live_purification_exactly(make_images: ImageFactory, spec: str) -> None:
    purifier = Purifier.from_spec(spec)
    batch = to_tensor(make_images([0.3, 0.7], size=24)) + 0.3 / 255  # off-grid: BPDA rounds like a file would
    assert torch.equal(purifier.bpda(batch), to_tensor(purifier(to_images(batch))))


def test_bpda_through_jpeg_is_straight_through(make_images: ImageFactory) -> None:
    batch = to_tensor(make_images([0.5])).requires_grad_(True)
    weights = torch.randn(batch.shape, generator=torch.Generator().manual_seed(1))
    (Purifier.from_spec("jpeg:30").bpda(batch) * weights).sum().backward()
    assert batch.grad is not None and torch.equal(batch.grad, weights)


@pytest.mark.parametrize("step", [Resize(0.5), Blur(1.0)], ids=lambda s: s.spec)
def test_bpda_through_resize_and_blur_uses_their_torch_surrogates(make_images: ImageFactory, step: object) -> None:
    images = make_images([0.35, 0.65])
    purifier = Purifier((step,))  # type: ignore[arg-type]
    weights = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    through_bpda = to_tensor(images).requires_grad_(True)
    (purifier.bpda(through_bpda) * weights).sum().backward()
    through_surrogate = to_tensor(images).requires_grad_(True)
    (purifier.steps[0].approx(through_surrogate) * weights).sum().backward()
    assert through_bpda.grad is not None and through_surrogate.grad is not None
    assert torch.allclose(through_bpda.grad, through_surrogate.grad)
    assert not torch.allclose(through_bpda.grad, weights)  # not the identity: a real low-pass Jacobian
    # The surrogate is close to the PIL operation it stands in for (under a grey level on average).
    error = (purifier.steps[0].approx(to_tensor(images)) - to_tensor(purifier(images))).abs().mean() * 255
    assert error < 1.0


def _eot_gradient(images: list[Image.Image], samples: int, seed: int) -> torch.Tensor:
    defended = DefendedTarget(NoiseGate(), Purifier.from_spec("jpeg:70,resize:0.6,blur:1.0"), mode="eot",
                              samples=samples, seed=seed)
    batch = to_tensor(images).requires_grad_(True)
    logits = defended(batch)
    (logits[:, FAIL] - logits[:, PASS]).sum().backward()
    assert batch.grad is not None
    return batch.grad


def test_eot_averages_over_random_purifications(make_images: ImageFactory) -> None:
    images = make_images([0.45, 0.55])
    assert torch.equal(_eot_gradient(images, 1, seed=0), _eot_gradient(images, 1, seed=0))  # seeded
    assert not torch.allclose(_eot_gradient(images, 1, seed=0), _eot_gradient(images, 8, seed=0))

    def spread(samples: int) -> float:
        gradients = torch.stack([_eot_gradient(images, samples, seed) for seed in range(4)])
        return float((gradients - gradients.mean(dim=0)).norm() / gradients.mean(dim=0).norm())

    # One draw is one random transformation's gradient; eight average out most of the draw-to-draw variance (the
    # spread of a mean of k independent draws shrinks as 1/sqrt(k): measured 0.097 for k=1, 0.030 for k=8).
    assert spread(8) < 0.5 * spread(1)


def test_eot_draws_stay_around_the_configured_purifier() -> None:
    purifier = Purifier.from_spec("jpeg:50,resize:0.5,blur:1")
    rng = random.Random(0)
    draws = [purifier.sample(rng) for _ in range(200)]
    qualities = [d.steps[0].quality for d in draws]  # type: ignore[attr-defined]
    factors = [d.steps[1].factor for d in draws]  # type: ignore[attr-defined]
    sigmas = [d.steps[2].sigma for d in draws]  # type: ignore[attr-defined]
    assert min(qualities) >= 40 and max(qualities) <= 60 and len(set(qualities)) > 10
    assert 0.425 <= min(factors) and max(factors) <= 0.575
    assert 0.5 <= min(sigmas) and max(sigmas) <= 1.5


def test_defended_target_is_a_gate_target_judged_after_purification(make_images: ImageFactory) -> None:
    purifier = Purifier.from_spec("jpeg:50")
    defended = DefendedTarget(NoiseGate(), purifier)
    assert isinstance(defended, GateTarget)
    assert defended.name == "noise[jpeg:50]" and defended.differentiable
    images = make_images([0.45, 0.55])
    assert defended.verdict(images) == NoiseGate().verdict(purifier(images))
    with pytest.raises(ValueError, match="`mode` has to be 'bpda' or 'eot' but is 'pgd'"):
        DefendedTarget(NoiseGate(), purifier, mode="pgd")  # type: ignore[arg-type]


def test_eot_queries_count_every_sample(make_images: ImageFactory) -> None:
    images = make_images([0.5 - 3 / 255] * 2)
    spec = AttackSpec("pgd-8", "pgd", 8 / 255, steps=3)
    result = run_attack(NoiseGate(), images, spec, defense=Purifier.from_spec("jpeg:50"), adaptive=True,
                        adaptive_mode="eot", eot_samples=4)
    assert result.adaptive == "eot" and result.image_queries == 3 * 4 * 2


@pytest.mark.parametrize("mode", ["bpda", "eot"])
def test_adaptive_attack_breaks_what_the_non_adaptive_one_cannot(make_images: ImageFactory, mode: str) -> None:
    images = make_images([0.5 - 3 / 255] * 6)
    assert NoiseGate().verdict(images) == [PASS] * 6
    comparison = evaluate_defense(NoiseGate(), images, AttackSpec("pgd-8", "pgd", 8 / 255),
                                  Purifier.from_spec("jpeg:50"), adaptive_mode=mode)  # type: ignore[arg-type]
    assert comparison.undefended.flip_rate == 1.0
    assert comparison.non_adaptive.flip_rate == 0.0  # the defense looks perfect against a blind attack ...
    assert comparison.adaptive.flip_rate >= 5 / 6  # ... and is not (measured 6 of 6 in both modes)
    assert comparison.adaptive.mean_linf_255 is not None and comparison.adaptive.mean_linf_255 <= 8.5
    # The non-adaptive row re-judges the undefended run; it is what running the blind attack again would give.
    rerun = run_attack(NoiseGate(), images, AttackSpec("pgd-8", "pgd", 8 / 255), defense=Purifier.from_spec("jpeg:50"))
    assert rerun.outcomes == comparison.non_adaptive.outcomes
    payload = json.loads(json.dumps(comparison.as_dict()))
    assert payload["defense"] == "jpeg:50" and payload["results"]["adaptive"]["adaptive"] == mode
    assert set(payload["flip_rate"]) == {"undefended", "non_adaptive", "adaptive"}


def test_adaptive_without_a_defense_is_refused(make_images: ImageFactory) -> None:
    with pytest.raises(ValueError, match="`adaptive=True` needs a `defense`"):
        run_attack(NoiseGate(), make_images([0.5]), AttackSpec("fgsm", "fgsm", 8 / 255), adaptive=True)
