"""Image attacks on gate decisions with torchattacks: can a small perturbation flip what the gate decides?

Attacks (``AttackSpec.kind``), all untargeted against the gate's own clean verdict, on [0, 1] NCHW images:

- ``fgsm``: Fast Gradient Sign Method (Goodfellow, Shlens & Szegedy, ICLR 2015, arXiv:1412.6572). L-inf, one step
  of size ``eps``. ``torchattacks.FGSM``.
- ``pgd``: Projected Gradient Descent (Madry et al., ICLR 2018, arXiv:1706.06083). L-inf, ``steps`` sign steps of
  ``alpha`` (default eps/4) from a uniform random start, projected onto the eps-ball. ``torchattacks.PGD``.
- ``pgd_l2``: the same in L2 (normalised-gradient steps, default alpha eps/5). ``torchattacks.PGDL2``.
- ``square``: Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020, arXiv:1912.00049). Score-based
  black box: random search over square-shaped updates using only the logits' margin loss, ``queries`` iterations
  per restart, L-inf or L2. ``torchattacks.Square``. The only kind allowed on a non-differentiable target.

A flip counts only if it survives the production path: the adversarial tensor is rounded to 8-bit images
(``to_images``) and judged by ``target.verdict`` (after the purifier, when a defense is given). ``default_profile``
is the issue's profile: FGSM and PGD at 2/255, 4/255, 8/255, PGD-L2 at eps 3.0, Square L-inf at 8/255 with 1000
queries; ``eps_sweep`` turns the L-inf runs into the smallest eps that flips each image.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import torch
import torchattacks
from PIL import Image
from torch import nn

from adversarial.base import GateTarget, NotDifferentiable, to_images, to_tensor
from adversarial.defenses import DefendedTarget, Purifier
from adversarial.report_types import (
    AttackResult,
    AttackSpec,
    DefenseComparison,
    EpsSweep,
    ExamplePair,
    ImageOutcome,
    ProfileReport,
    png_base64,
)

__all__ = ["AttackSpec", "QueryCounter", "default_profile", "eps_sweep", "evaluate_defense", "run_attack",
           "run_profile"]

LINF_EPS_255 = (2.0, 4.0, 8.0)


def default_profile(*, seed: int = 0) -> tuple[AttackSpec, ...]:
    """The issue's attack profile. PGD-L2's eps 3.0 is the usual ImageNet-scale L2 budget (Engstrom et al.'s
    robustness library); Square's 1000 queries (torchattacks' default is 5000) keeps it affordable on CPU."""
    specs = [AttackSpec(f"fgsm-{e:g}", "fgsm", e / 255, seed=seed) for e in LINF_EPS_255]
    specs += [AttackSpec(f"pgd-{e:g}", "pgd", e / 255, steps=10, seed=seed) for e in LINF_EPS_255]
    specs.append(AttackSpec("pgd_l2-3", "pgd_l2", 3.0, steps=10, seed=seed))
    specs.append(AttackSpec("square-8", "square", 8 / 255, queries=1000, seed=seed))
    return tuple(specs)


def _device_of(target: object) -> torch.device:
    if isinstance(target, nn.Module):
        for tensor in (*target.parameters(), *target.buffers()):
            return tensor.device
    return torch.device("cpu")


class QueryCounter(nn.Module):
    """Wraps a target and counts its forward passes (``calls``) and the images in them (``rows``)."""

    def __init__(self, target: GateTarget) -> None:
        super().__init__()
        self.target = target
        self.name = target.name
        self.description = target.description
        self.differentiable = target.differentiable
        self.calls = 0
        self.rows = 0
        # Mirror the target's mode: torchattacks calls ``train()`` afterwards on a model it found training, which a
        # frozen target refuses.
        self.training = bool(getattr(target, "training", False))
        # torchattacks takes its device from the model's first parameter (and prints when there is none).
        self.anchor = nn.Parameter(torch.empty(0, device=_device_of(target)), requires_grad=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += int(images.shape[0])
        return self.target(images)

    def verdict(self, images: Sequence[Image.Image]) -> list[int]:
        return self.target.verdict(images)


def _flip_score(model: nn.Module, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logit of the other class minus the label's: > 0 where the model's decision has flipped."""
    with torch.no_grad():
        logits = model(batch)
    picked = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    other = logits.gather(1, (1 - labels).view(-1, 1)).squeeze(1)
    return other - picked


def _generate(model: nn.Module, batch: torch.Tensor, labels: torch.Tensor, spec: AttackSpec) -> torch.Tensor:
    if spec.kind == "fgsm":
        return torchattacks.FGSM(model, eps=spec.eps)(batch, labels)
    if spec.kind == "square":
        attack = torchattacks.Square(model, norm=spec.norm, eps=spec.eps, n_queries=spec.queries,
                                     n_restarts=spec.restarts, loss="margin", seed=spec.seed)
        return attack(batch, labels)
    pgd_class = torchattacks.PGD if spec.kind == "pgd" else torchattacks.PGDL2
    best: torch.Tensor | None = None
    best_score = torch.full((batch.shape[0],), -torch.inf, device=batch.device)
    for restart in range(spec.restarts):
        torch.manual_seed(spec.seed + restart)
        attack = pgd_class(model, eps=spec.eps, alpha=spec.step_size, steps=spec.steps, random_start=True)
        adversarial = attack(batch, labels)
        if spec.restarts == 1:
            return adversarial
        # Keep, per image, the restart whose 8-bit rounding is furthest across the decision boundary.
        score = _flip_score(model, (adversarial * 255).round() / 255, labels)
        better = score > best_score
        best = adversarial if best is None else torch.where(better.view(-1, 1, 1, 1), adversarial, best)
        best_score = torch.maximum(score, best_score)
    assert best is not None
    return best


def _judge(target: GateTarget, defense: Purifier | None, images: Sequence[Image.Image]) -> list[int]:
    return target.verdict(defense(images) if defense is not None else images)


def run_attack(target: GateTarget, images: Sequence[Image.Image], spec: AttackSpec, *,
               defense: Purifier | None = None, adaptive: bool = False,
               adaptive_mode: Literal["bpda", "eot"] = "bpda", eot_samples: int = 8,
               max_examples: int = 4) -> AttackResult:
    """Attack ``images`` (same size) on ``target`` and judge the 8-bit results through the production verdict.

    Without ``defense``: attack and judge the undefended target. With ``defense`` and ``adaptive=False``: attack the
    undefended target (the labels are its own clean verdicts), judge the purified images. With ``adaptive=True``:
    attack ``DefendedTarget(target, defense, mode=adaptive_mode, samples=eot_samples)`` (Square always uses the
    deterministic BPDA forward, which is the live purification exactly) and judge the purified images. Flips are
    counted against the judged path's verdict on the clean images. ``max_examples`` caps the example pairs
    (flipped ones first). Seeded by ``spec.seed`` without touching the caller's torch RNG.
    """
    if not images:
        raise ValueError("`images` has to hold at least one image but is empty")
    if max_examples < 0:
        raise ValueError(f"`max_examples` has to be at least 0 but is {max_examples}")
    if spec.white_box and not target.differentiable:
        raise NotDifferentiable(f"{spec.kind} attack {spec.name!r} is white-box and needs gradients, but target "
                                f"{target.name!r} is not differentiable; use a score-based attack (kind 'square')")
    if adaptive and defense is None:
        raise ValueError("`adaptive=True` needs a `defense` to adapt to but `defense` is None")

    module = target if isinstance(target, nn.Module) and target.training else None
    if module is not None:
        module.eval()  # the attack aims at the model the gate runs; the caller's mode comes back below
    try:
        return _run(target, images, spec, defense, adaptive, adaptive_mode, eot_samples, max_examples)
    finally:
        if module is not None:
            module.train()


def _run(target: GateTarget, images: Sequence[Image.Image], spec: AttackSpec, defense: Purifier | None,
         adaptive: bool, adaptive_mode: Literal["bpda", "eot"], eot_samples: int, max_examples: int) -> AttackResult:
    clean_verdicts = _judge(target, defense, images)
    attacked_verdicts = clean_verdicts if adaptive or defense is None else target.verdict(images)
    counter = QueryCounter(target)
    model: nn.Module = counter
    mode = None
    if adaptive and defense is not None:
        mode = "bpda" if spec.kind == "square" else adaptive_mode
        model = DefendedTarget(counter, defense, mode=mode, samples=eot_samples, seed=spec.seed)
    device = _device_of(counter)
    batch = to_tensor(images).to(device)
    labels = torch.tensor(attacked_verdicts, dtype=torch.long, device=device)

    devices = [device.index or 0] if device.type == "cuda" else []
    started = time.perf_counter()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(spec.seed)
        adversarial = _generate(model, batch, labels, spec)
    seconds = time.perf_counter() - started

    return _judged(target, images, to_images(adversarial), spec, defense, mode, clean_verdicts,
                   forward_calls=counter.calls, image_queries=counter.rows, seconds=seconds, max_examples=max_examples)


def _judged(target: GateTarget, images: Sequence[Image.Image], adversarial_images: list[Image.Image],
            spec: AttackSpec, defense: Purifier | None, mode: str | None, clean_verdicts: list[int], *,
            forward_calls: int, image_queries: int, seconds: float, max_examples: int) -> AttackResult:
    adversarial_verdicts = _judge(target, defense, adversarial_images)
    delta = (to_tensor(adversarial_images) - to_tensor(images)).flatten(1)
    outcomes = tuple(
        ImageOutcome(i, clean_verdicts[i], adversarial_verdicts[i], float(delta[i].abs().max()) * 255.0,
                     float(delta[i].norm(p=2)))
        for i in range(len(images))
    )
    chosen = sorted(outcomes, key=lambda o: (not o.flipped, o.index))[:max_examples]
    examples = tuple(ExamplePair(o.index, o.clean_verdict, o.adversarial_verdict, png_base64(images[o.index]),
                                 png_base64(adversarial_images[o.index])) for o in chosen)
    return AttackResult(target=target.name, attack=spec, defense=defense.spec if defense is not None else None,
                        adaptive=mode, outcomes=outcomes, forward_calls=forward_calls, image_queries=image_queries,
                        attack_seconds=seconds, examples=examples, adversarial_images=tuple(adversarial_images))


def eps_sweep(results: Sequence[AttackResult]) -> EpsSweep:
    """Per image, the smallest eps among ``results`` (one L-inf kind, same images, same defense) that flipped it."""
    if not results:
        raise ValueError("`results` has to hold at least one attack result but is empty")
    first = results[0]
    for result in results:
        if (result.attack.kind, result.attack.norm, result.n_images, result.defense, result.adaptive) != (
                first.attack.kind, "Linf", first.n_images, first.defense, first.adaptive):
            raise ValueError(f"`results` have to be L-inf runs of one kind on the same images and defense, but "
                             f"{result.attack.name!r} does not match {first.attack.name!r}")
    ordered = sorted(results, key=lambda r: r.attack.eps)
    smallest: list[float | None] = []
    for i in range(first.n_images):
        flipped_at = [r.attack.eps * 255.0 for r in ordered if r.outcomes[i].flipped]
        smallest.append(round(flipped_at[0], 6) if flipped_at else None)
    return EpsSweep(first.attack.kind, tuple(round(r.attack.eps * 255.0, 6) for r in ordered), tuple(smallest))


def run_profile(target: GateTarget, images: Sequence[Image.Image], specs: Sequence[AttackSpec] | None = None, *,
                defense: Purifier | None = None, adaptive: bool = False) -> ProfileReport:
    """Every applicable spec of the profile (white-box ones are skipped on a non-differentiable target), plus the
    eps sweep of each L-inf kind that ran at more than one eps."""
    specs = default_profile() if specs is None else specs
    runnable = [s for s in specs if target.differentiable or not s.white_box]
    results = [run_attack(target, images, s, defense=defense, adaptive=adaptive) for s in runnable]
    sweeps = []
    for kind in ("fgsm", "pgd"):
        runs = [r for r in results if r.attack.kind == kind]
        if len({r.attack.eps for r in runs}) > 1:
            sweeps.append(eps_sweep(runs))
    return ProfileReport(tuple(results), tuple(sweeps))


def evaluate_defense(target: GateTarget, images: Sequence[Image.Image], spec: AttackSpec, purifier: Purifier, *,
                     adaptive_mode: Literal["bpda", "eot"] = "bpda", eot_samples: int = 8,
                     max_examples: int = 4) -> DefenseComparison:
    """Undefended, non-adaptive and adaptive results of one attack against one purifier, side by side.

    The non-adaptive row re-judges the undefended run's adversarial images after purification (the same attack,
    labels and seed as ``run_attack(..., defense=purifier)``, without running it twice).
    """
    undefended = run_attack(target, images, spec, max_examples=max_examples)
    non_adaptive = _judged(target, images, list(undefended.adversarial_images), spec, purifier, None,
                           _judge(target, purifier, images), forward_calls=undefended.forward_calls,
                           image_queries=undefended.image_queries, seconds=undefended.attack_seconds,
                           max_examples=max_examples)
    adaptive = run_attack(target, images, spec, defense=purifier, adaptive=True, adaptive_mode=adaptive_mode,
                          eot_samples=eot_samples, max_examples=max_examples)
    return DefenseComparison(undefended=undefended, non_adaptive=non_adaptive, adaptive=adaptive)
