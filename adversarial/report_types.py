"""Typed, JSON-able values the image-attack suite is configured by and reports (``as_dict()`` on each).

Units, everywhere: ``eps`` is on the [0, 1] pixel scale the attacks work in (8/255 for the usual L-inf budget);
reported L-inf norms are in /255 units (``linf_255 = 3.0`` is three grey levels), L2 norms on the [0, 1] scale over
all C*H*W values. Perturbations are measured between the stored 8-bit images (adversarial minus clean), so they
include the rounding a file would apply. Verdicts are ``adversarial.base.PASS`` (0) and ``FAIL`` (1).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from PIL import Image

from adversarial.base import FAIL, PASS

AttackKind = Literal["fgsm", "pgd", "pgd_l2", "square"]
Norm = Literal["Linf", "L2"]
WHITE_BOX: frozenset[str] = frozenset({"fgsm", "pgd", "pgd_l2"})
_NORM_OF_KIND: dict[str, Norm] = {"fgsm": "Linf", "pgd": "Linf", "pgd_l2": "L2"}


@dataclass(frozen=True)
class AttackSpec:
    """One attack configuration. ``kind`` picks the torchattacks class; see ``adversarial.image_attacks``.

    ``norm`` defaults to the kind's own (L-inf for ``fgsm``/``pgd``, L2 for ``pgd_l2``, L-inf for ``square``).
    ``alpha`` (PGD step size) defaults to torchattacks' ratio: ``eps / 4`` for L-inf (2/255 at 8/255), ``eps / 5``
    for L2 (0.2 at 1.0). ``restarts`` re-runs PGD from fresh random starts (seeds ``seed``, ``seed + 1``, ...) and
    Square with torchattacks' ``n_restarts``; ``queries`` is Square's ``n_queries`` per restart.
    """

    name: str
    kind: AttackKind
    eps: float
    norm: Norm | None = None
    steps: int = 10
    alpha: float | None = None
    restarts: int = 1
    queries: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("fgsm", "pgd", "pgd_l2", "square"):
            raise ValueError(f"`kind` has to be one of fgsm, pgd, pgd_l2, square but is {self.kind!r}")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"`eps` has to be a finite number > 0 but is {self.eps} (attack {self.name!r})")
        norm = self.norm or _NORM_OF_KIND.get(self.kind, "Linf")
        if norm not in ("Linf", "L2"):
            raise ValueError(f"`norm` has to be 'Linf' or 'L2' but is {self.norm!r} (attack {self.name!r})")
        if self.kind in _NORM_OF_KIND and norm != _NORM_OF_KIND[self.kind]:
            raise ValueError(f"`norm` of a {self.kind} attack has to be {_NORM_OF_KIND[self.kind]!r} but is "
                             f"{self.norm!r} (attack {self.name!r})")
        object.__setattr__(self, "norm", norm)
        if self.steps < 1 or self.queries < 1 or self.restarts < 1:
            raise ValueError(f"`steps`, `queries` and `restarts` have to be at least 1 but are {self.steps}, "
                             f"{self.queries} and {self.restarts} (attack {self.name!r})")
        if self.kind == "fgsm" and self.restarts != 1:
            raise ValueError(f"`restarts` of an fgsm attack has to be 1 (FGSM is deterministic) but is {self.restarts}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"`alpha` has to be a finite number > 0 but is {self.alpha} (attack {self.name!r})")

    @property
    def white_box(self) -> bool:
        """Whether the attack needs the target's gradient."""
        return self.kind in WHITE_BOX

    @property
    def step_size(self) -> float:
        if self.alpha is not None:
            return self.alpha
        return self.eps / (5.0 if self.norm == "L2" else 4.0)

    @property
    def query_budget(self) -> int:
        """Most forward passes one image may take part in (Square: torchattacks' start check, then per restart one
        initial query, ``queries`` iterations and one final check; PGD: its steps, plus one selection pass per
        restart when there are several)."""
        if self.kind == "fgsm":
            return 1
        if self.kind == "square":
            return 1 + self.restarts * (self.queries + 2)
        return self.restarts * self.steps + (self.restarts if self.restarts > 1 else 0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "alpha": self.step_size if self.kind in ("pgd", "pgd_l2") else None}


def png_base64(image: Image.Image) -> str:
    """An image as base64 PNG (lossless: the exact pixels the verdict was taken on)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True)
class ImageOutcome:
    """One image's verdicts (through the judged path: purified first when a defense is on) and perturbation."""

    index: int
    clean_verdict: int
    adversarial_verdict: int
    linf_255: float
    l2: float

    @property
    def flipped(self) -> bool:
        return self.clean_verdict != self.adversarial_verdict

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flipped": self.flipped}


@dataclass(frozen=True)
class ExamplePair:
    """A (clean, adversarial) pair for the HTML report, both as base64 PNG."""

    index: int
    clean_verdict: int
    adversarial_verdict: int
    clean_png: str
    adversarial_png: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class AttackResult:
    """One attack over a set of images against one target (undefended, or defended non-adaptively / adaptively).

    ``flip_rate`` is over all images; ``mean_linf_255`` and ``mean_l2`` are over the flipped ones (``None`` when
    none flipped). ``image_queries`` counts images through the target's forward (a batch of 8 is 8), ``forward_calls``
    the batched calls; both count the inner target, so an EOT wrapper's k samples count k times.
    ``adversarial_images`` holds the 8-bit images the verdicts were taken on; it is not part of ``as_dict``.
    """

    target: str
    attack: AttackSpec
    defense: str | None
    adaptive: str | None  # None (non-adaptive), "bpda" or "eot"
    outcomes: tuple[ImageOutcome, ...]
    forward_calls: int
    image_queries: int
    attack_seconds: float
    examples: tuple[ExamplePair, ...] = ()
    adversarial_images: tuple[Image.Image, ...] = field(default=(), repr=False, compare=False)

    @property
    def n_images(self) -> int:
        return len(self.outcomes)

    @property
    def flipped(self) -> tuple[ImageOutcome, ...]:
        return tuple(o for o in self.outcomes if o.flipped)

    @property
    def flip_rate(self) -> float:
        return len(self.flipped) / self.n_images if self.outcomes else 0.0

    @property
    def flips_fail_to_pass(self) -> int:
        """Evasions: images the gate failed that now pass."""
        return sum(1 for o in self.flipped if o.clean_verdict == FAIL and o.adversarial_verdict == PASS)

    @property
    def flips_pass_to_fail(self) -> int:
        """False rejections forced on images the gate passed."""
        return sum(1 for o in self.flipped if o.clean_verdict == PASS and o.adversarial_verdict == FAIL)

    @property
    def mean_linf_255(self) -> float | None:
        return _mean([o.linf_255 for o in self.flipped])

    @property
    def mean_l2(self) -> float | None:
        return _mean([o.l2 for o in self.flipped])

    @property
    def queries_per_image(self) -> float:
        return self.image_queries / self.n_images if self.outcomes else 0.0

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.attack_seconds if self.attack_seconds > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "attack": self.attack.as_dict(),
            "defense": self.defense,
            "adaptive": self.adaptive,
            "n_images": self.n_images,
            "flip_rate": self.flip_rate,
            "flips_fail_to_pass": self.flips_fail_to_pass,
            "flips_pass_to_fail": self.flips_pass_to_fail,
            "mean_linf_255": self.mean_linf_255,
            "mean_l2": self.mean_l2,
            "forward_calls": self.forward_calls,
            "image_queries": self.image_queries,
            "queries_per_image": self.queries_per_image,
            "attack_seconds": self.attack_seconds,
            "images_per_second": self.images_per_second,
            "outcomes": [o.as_dict() for o in self.outcomes],
            "examples": [e.as_dict() for e in self.examples],
        }


@dataclass(frozen=True)
class EpsSweep:
    """The smallest eps of an L-inf profile (e.g. 2/255, 4/255, 8/255) at which each image flipped.

    ``min_flip_eps_255[i]`` is in /255 units, ``None`` where image ``i`` flipped at no eps of the grid;
    ``mean_min_flip_eps_255`` is the mean over the images that flipped at some eps ("mean perturbation needed").
    """

    kind: str
    eps_255: tuple[float, ...]
    min_flip_eps_255: tuple[float | None, ...]

    @property
    def flipped_at_any(self) -> int:
        return sum(1 for e in self.min_flip_eps_255 if e is not None)

    @property
    def mean_min_flip_eps_255(self) -> float | None:
        return _mean([e for e in self.min_flip_eps_255 if e is not None])

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flipped_at_any": self.flipped_at_any,
                "mean_min_flip_eps_255": self.mean_min_flip_eps_255}


@dataclass(frozen=True)
class ProfileReport:
    """Every attack of a profile against one target, and the eps sweep of each L-inf kind run at several eps."""

    results: tuple[AttackResult, ...]
    sweeps: tuple[EpsSweep, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"results": [r.as_dict() for r in self.results], "sweeps": [s.as_dict() for s in self.sweeps]}


@dataclass(frozen=True)
class DefenseComparison:
    """Undefended vs defended, side by side, for one attack and one purifier.

    ``undefended``: attack and verdict without purification. ``non_adaptive``: the same attack on the undefended
    target, judged after purification (what a defense paper without adaptive attacks reports). ``adaptive``: the
    attack run through the purification (BPDA or EOT), judged after purification: the number that counts.
    """

    undefended: AttackResult
    non_adaptive: AttackResult
    adaptive: AttackResult

    def as_dict(self) -> dict[str, Any]:
        rows = {"undefended": self.undefended, "non_adaptive": self.non_adaptive, "adaptive": self.adaptive}
        return {
            "attack": self.undefended.attack.name,
            "defense": self.adaptive.defense,
            "flip_rate": {k: r.flip_rate for k, r in rows.items()},
            "mean_linf_255": {k: r.mean_linf_255 for k, r in rows.items()},
            "results": {k: r.as_dict() for k, r in rows.items()},
        }


@dataclass(frozen=True)
class DetectionReport:
    """A feature-squeezing detector on clean and adversarial images (Xu, Evans & Qi, NDSS 2018).

    ``false_positive_rate``: share of clean images flagged; ``detection_rate``: share of adversarial images flagged.
    """

    threshold: float
    metric: str
    squeezers: tuple[str, ...]
    clean_scores: tuple[float, ...]
    adversarial_scores: tuple[float, ...]

    @property
    def false_positive_rate(self) -> float:
        return _rate(self.clean_scores, self.threshold)

    @property
    def detection_rate(self) -> float:
        return _rate(self.adversarial_scores, self.threshold)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "false_positive_rate": self.false_positive_rate, "detection_rate": self.detection_rate,
                "n_clean": len(self.clean_scores), "n_adversarial": len(self.adversarial_scores)}


def _rate(scores: Sequence[float], threshold: float) -> float:
    return sum(1 for s in scores if s > threshold) / len(scores) if scores else 0.0
