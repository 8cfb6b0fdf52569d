"""The attack runner flips toy gates exactly where the geometry says it must, measures perturbations after 8-bit
rounding, counts queries, and refuses white-box attacks on targets without gradients.

The main toy is a brightness gate: FAIL when the mean pixel value exceeds 0.5, margin ``100 * (mean - 0.5)``. Its
gradient is the same positive number at every pixel, so an L-inf sign step of size eps moves every pixel (none is
near 0 or 1 here) by exactly eps towards the threshold and the mean by exactly eps: an image whose mean sits d grey
levels from 127.5 flips at eps iff eps > d. That makes the expected flips computable, and wrong signs, wrong labels
or lost rounding visible.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from adversarial.base import FAIL, PASS, GateTarget, NotDifferentiable, to_tensor
from adversarial.image_attacks import AttackSpec, default_profile, eps_sweep, run_attack, run_profile
from adversarial.report_types import AttackKind

ImageFactory = Callable[..., list[Image.Image]]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The toy tensors are tiny: torch's intra-op thread pool only adds synchronisation, and on a busy machine its
    spinning threads made these tests several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _luma_mean(image: Image.Image) -> float:
    return float(np.asarray(image.convert("RGB"), dtype=np.float64).mean()) / 255.0


class BrightnessGate(nn.Module):
    """FAIL if the mean pixel value is above ``threshold``; the production verdict reads the 8-bit pixels."""

    name = "brightness"
    description = "fails images brighter than the threshold on average"
    differentiable = True

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        margin = 100.0 * (images.mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([torch.zeros_like(margin), margin], dim=1)

    def verdict(self, images: Sequence[Image.Image]) -> list[int]:
        return [FAIL if _luma_mean(image) > self.threshold else PASS for image in images]


class OpaqueBrightnessGate(BrightnessGate):
    """The same decision computed outside autograd (as an ONNX runtime would): only score-based attacks apply."""

    name = "opaque-brightness"
    differentiable = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        means = images.detach().cpu().numpy().mean(axis=(1, 2, 3))
        margin = torch.from_numpy(100.0 * (means - 0.5)).float()
        return torch.stack([torch.zeros_like(margin), margin], dim=1)



class FrozenBrightnessGate(BrightnessGate):
    """Refuses training mode, as the real targets (``adversarial.target_ops.FrozenTarget``) do; records the mode
    of every forward pass."""

    name = "frozen-brightness"

    def __init__(self) -> None:
        super().__init__()
        self.training = False
        self.modes: list[bool] = []

    def train(self, mode: bool = True) -> FrozenBrightnessGate:
        if mode:
            raise ValueError("frozen")
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return super().forward(images)

@pytest.fixture
def make_images() -> ImageFactory:
    """Factory: smooth textured 32x32 images whose mean is ``127.5 + offset`` grey levels, one per offset."""

    def make(offsets: Sequence[float], size: int = 32, seed: int = 0) -> list[Image.Image]:
        generator = torch.Generator().manual_seed(seed)
        coarse = torch.randn(len(offsets), 3, size // 8, size // 8, generator=generator)
        texture = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False) * 0.06
        texture = texture - texture.mean(dim=(1, 2, 3), keepdim=True)
        means = (127.5 + torch.tensor(offsets, dtype=torch.float32)) / 255.0
        pixels = ((texture + means.view(-1, 1, 1, 1)).clamp(0, 1) * 255).round().to(torch.uint8)
        return [Image.fromarray(p, "RGB") for p in pixels.permute(0, 2, 3, 1).numpy()]

    return make


NEAR = (-3.0, -3.0, 3.0, 3.0)  # grey levels from the threshold: PASS, PASS, FAIL, FAIL
FAR = (-40.0, -30.0, 30.0, 40.0)


def test_images_sit_where_the_factory_says(make_images: ImageFactory) -> None:
    images = make_images((*NEAR, *FAR))
    means = [_luma_mean(im) * 255 - 127.5 for im in images]
    assert np.allclose(means, [*NEAR, *FAR], atol=0.2)
    assert BrightnessGate().verdict(images) == [PASS, PASS, FAIL, FAIL, PASS, PASS, FAIL, FAIL]


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
def test_eps_8_flips_near_threshold_in_both_directions(make_images: ImageFactory, kind: AttackKind) -> None:
    result = run_attack(BrightnessGate(), make_images(NEAR), AttackSpec(f"{kind}-8", kind, 8 / 255))
    assert result.flip_rate == 1.0
    assert (result.flips_pass_to_fail, result.flips_fail_to_pass) == (2, 2)
    # The mean moved by the whole budget: 8 grey levels in every pixel.
    assert result.mean_linf_255 == pytest.approx(8.0, abs=1e-3)


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
def test_eps_2_cannot_cross_a_gap_of_3_or_more_levels(make_images: ImageFactory, kind: AttackKind) -> None:
    result = run_attack(BrightnessGate(), make_images((*NEAR, *FAR)), AttackSpec(f"{kind}-2", kind, 2 / 255))
    assert result.flip_rate == 0.0
    assert result.mean_linf_255 is None and result.mean_l2 is None


def test_eps_sweep_finds_the_smallest_flipping_eps(make_images: ImageFactory) -> None:
    images = make_images((-3.0, 3.0, -6.0, 6.0, -40.0, 40.0))
    runs = [run_attack(BrightnessGate(), images, AttackSpec(f"fgsm-{e}", "fgsm", e / 255)) for e in (8, 2, 4)]
    sweep = eps_sweep(runs)
    assert sweep.eps_255 == (2.0, 4.0, 8.0)
    # 3 levels away: crossed by 4 not 2; 6 away: crossed by 8 not 4; 40 away: never.
    assert sweep.min_flip_eps_255 == (4.0, 4.0, 8.0, 8.0, None, None)
    assert sweep.flipped_at_any == 4 and sweep.mean_min_flip_eps_255 == 6.0
    json.dumps(sweep.as_dict())


def test_eps_sweep_refuses_mixed_runs(make_images: ImageFactory) -> None:
    images = make_images(NEAR)
    runs = [run_attack(BrightnessGate(), images, AttackSpec("fgsm-4", "fgsm", 4 / 255)),
            run_attack(BrightnessGate(), images, AttackSpec("l2", "pgd_l2", 1.0, steps=2))]
    with pytest.raises(ValueError, match="'l2' does not match 'fgsm-4'"):
        eps_sweep(runs)


@pytest.mark.parametrize("spec", [
    AttackSpec("fgsm", "fgsm", 5.3 / 255),
    AttackSpec("pgd", "pgd", 5.3 / 255, steps=5, restarts=2),
    AttackSpec("square", "square", 5.3 / 255, queries=1000),
], ids=lambda s: s.name)
def test_linf_perturbation_stays_within_eps_after_rounding(make_images: ImageFactory, spec: AttackSpec) -> None:
    result = run_attack(BrightnessGate(), make_images((*NEAR, *FAR)), spec)
    assert max(o.linf_255 for o in result.outcomes) <= 5.3 + 0.5 + 1e-4
    # torchattacks' Square hands back the clean image where it found no flip; the others moved.
    assert result.flipped and all(o.linf_255 > 0 for o in result.flipped)


def test_l2_perturbation_stays_within_eps_after_rounding(make_images: ImageFactory) -> None:
    images = make_images(NEAR)
    result = run_attack(BrightnessGate(), images, AttackSpec("l2", "pgd_l2", 0.5, steps=10))
    rounding = 0.5 / 255 * (3 * 32 * 32) ** 0.5  # the most 8-bit rounding can add in L2
    assert max(o.l2 for o in result.outcomes) <= 0.5 + rounding
    # An L2 budget of 0.5 spread over 3072 values is under 3/255 per value on average: it cannot move the mean
    # 3 levels (needs L2 >= 3/255 * sqrt(3072) = 0.65).
    assert result.flip_rate == 0.0
    assert run_attack(BrightnessGate(), images, AttackSpec("l2", "pgd_l2", 1.0, steps=10)).flip_rate == 1.0


def test_square_counts_queries_and_stays_within_budget(make_images: ImageFactory) -> None:
    spec = AttackSpec("square", "square", 8 / 255, queries=60)
    assert spec.query_budget == 63
    hopeless = run_attack(BrightnessGate(), make_images(FAR), spec)
    # Nothing can flip, so every image is queried for the whole budget: the start check, one initial query, 60
    # iterations and the final check.
    assert hopeless.flip_rate == 0.0
    assert hopeless.forward_calls == 63 and hopeless.image_queries == 4 * 63
    reachable = run_attack(BrightnessGate(), make_images(NEAR), AttackSpec("square", "square", 8 / 255, queries=500))
    assert reachable.flip_rate > 0.0
    assert 0 < reachable.image_queries <= 4 * reachable.attack.query_budget
    assert reachable.queries_per_image == reachable.image_queries / 4


def test_flips_are_judged_by_the_production_verdict(make_images: ImageFactory) -> None:
    # The differentiable core thresholds at 0.5 but production at 0.6: the float model flips, the gate does not.
    images = make_images(NEAR)
    result = run_attack(BrightnessGate(threshold=0.6), images, AttackSpec("pgd-8", "pgd", 8 / 255))
    assert [o.clean_verdict for o in result.outcomes] == [PASS] * 4
    assert result.flip_rate == 0.0


@pytest.mark.parametrize("kind", ["fgsm", "pgd", "pgd_l2"])
def test_white_box_on_non_differentiable_target_raises(make_images: ImageFactory, kind: AttackKind) -> None:
    spec = AttackSpec(f"{kind}-x", kind, 8 / 255 if kind != "pgd_l2" else 1.0)
    with pytest.raises(NotDifferentiable, match=rf"{kind} attack '{kind}-x'.*'opaque-brightness'"):
        run_attack(OpaqueBrightnessGate(), make_images(NEAR), spec)


def test_square_attacks_a_non_differentiable_target(make_images: ImageFactory) -> None:
    target = OpaqueBrightnessGate()
    assert isinstance(target, GateTarget)
    result = run_attack(target, make_images(NEAR), AttackSpec("square", "square", 8 / 255, queries=500))
    assert result.flip_rate > 0.0


def test_profile_skips_white_box_attacks_on_a_non_differentiable_target(make_images: ImageFactory) -> None:
    specs = [AttackSpec("fgsm-8", "fgsm", 8 / 255), AttackSpec("square", "square", 8 / 255, queries=20)]
    report = run_profile(OpaqueBrightnessGate(), make_images(NEAR), specs)
    assert [r.attack.name for r in report.results] == ["square"] and report.sweeps == ()


def test_profile_sweeps_each_linf_kind(make_images: ImageFactory) -> None:
    specs = [AttackSpec(f"{kind}-{e}", kind, e / 255) for kind in ("fgsm", "pgd") for e in (2, 4)]
    report = run_profile(BrightnessGate(), make_images((-3.0, 3.0)), [*specs, AttackSpec("l2", "pgd_l2", 1.0)])
    assert [r.attack.name for r in report.results] == ["fgsm-2", "fgsm-4", "pgd-2", "pgd-4", "l2"]
    assert [(s.kind, s.min_flip_eps_255) for s in report.sweeps] == [("fgsm", (4.0, 4.0)), ("pgd", (4.0, 4.0))]
    json.dumps(report.as_dict())


@pytest.mark.parametrize("spec", [
    AttackSpec("fgsm", "fgsm", 8 / 255),
    AttackSpec("pgd", "pgd", 8 / 255, steps=3, restarts=2),
    AttackSpec("square", "square", 8 / 255, queries=20),
], ids=lambda s: s.name)
def test_frozen_targets_stay_frozen(make_images: ImageFactory, spec: AttackSpec) -> None:
    from adversarial.defenses import Purifier

    target = FrozenBrightnessGate()
    run_attack(target, make_images(NEAR), spec)
    run_attack(target, make_images(NEAR), spec, defense=Purifier.from_spec("blur:0.5"), adaptive=True)
    assert target.modes and not any(target.modes) and not target.training


def test_a_training_target_is_attacked_in_eval_mode_and_handed_back_training(make_images: ImageFactory) -> None:
    target = BrightnessGate()
    modes: list[bool] = []
    target.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    assert target.training  # a fresh nn.Module
    run_attack(target, make_images(NEAR), AttackSpec("pgd", "pgd", 8 / 255, steps=3, restarts=2))
    assert modes and not any(modes) and target.training


def test_default_profile_is_the_issues() -> None:
    names = [s.name for s in default_profile()]
    assert names == ["fgsm-2", "fgsm-4", "fgsm-8", "pgd-2", "pgd-4", "pgd-8", "pgd_l2-3", "square-8"]


def test_runs_are_seeded_and_leave_the_callers_rng_alone(make_images: ImageFactory) -> None:
    images = make_images(NEAR)
    spec = AttackSpec("pgd-4", "pgd", 4 / 255, seed=7)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = run_attack(BrightnessGate(), images, spec)
    assert torch.equal(torch.get_rng_state(), before)
    second = run_attack(BrightnessGate(), images, spec)
    assert all(np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(first.adversarial_images, second.adversarial_images, strict=True))


def test_result_is_json_with_capped_png_examples(make_images: ImageFactory) -> None:
    images = make_images((*FAR, *NEAR))
    result = run_attack(BrightnessGate(), images, AttackSpec("fgsm-8", "fgsm", 8 / 255), max_examples=3)
    payload = json.loads(json.dumps(result.as_dict()))
    assert payload["n_images"] == 8 and payload["flip_rate"] == 0.5
    assert payload["attack"]["kind"] == "fgsm" and payload["defense"] is None
    examples = payload["examples"]
    assert [e["index"] for e in examples] == [4, 5, 6]  # flipped images first
    decoded = Image.open(io.BytesIO(base64.b64decode(examples[0]["adversarial_png"])))
    assert np.array_equal(np.asarray(decoded), np.asarray(result.adversarial_images[4]))
    assert to_tensor([decoded]).shape == (1, 3, 32, 32)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "cw"}, "`kind` has to be one of"),
    ({"eps": 0.0}, r"`eps` has to be a finite number > 0 but is 0.0 \(attack 'bad'\)"),
    ({"kind": "fgsm", "norm": "L2"}, "`norm` of a fgsm attack has to be 'Linf' but is 'L2'"),
    ({"kind": "pgd_l2", "norm": "Linf"}, "`norm` of a pgd_l2 attack has to be 'L2'"),
    ({"steps": 0}, "`steps`, `queries` and `restarts` have to be at least 1 but are 0, 1000 and 1"),
    ({"kind": "fgsm", "restarts": 3}, "`restarts` of an fgsm attack has to be 1"),
    ({"alpha": -1.0}, "`alpha` has to be a finite number > 0 but is -1.0"),
])
def test_spec_errors_name_the_argument(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"name": "bad", "kind": "pgd", "eps": 8 / 255, **kwargs}
    with pytest.raises(ValueError, match=message):
        AttackSpec(**arguments)  # type: ignore[arg-type]


def test_spec_defaults_follow_torchattacks() -> None:
    assert AttackSpec("p", "pgd", 8 / 255).step_size == pytest.approx(2 / 255)
    assert AttackSpec("p", "pgd_l2", 1.0).step_size == pytest.approx(0.2)
    assert AttackSpec("s", "square", 8 / 255).norm == "Linf"
    assert AttackSpec("p", "pgd", 8 / 255, restarts=3).query_budget == 33
