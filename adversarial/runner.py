"""``mediagate adversarial run``: every robustness suite of a profile, checked against ``thresholds.toml``.

Suites, in order: image attacks on each gate target (undefended), the live purification against non-adaptive and
adaptive (BPDA, EOT) attacks, the feature-squeezing detector, text evasion against the pre-policy, and the
pipeline-poisoning checks against an in-process gateway on the same bundle. Each measured figure that the
thresholds file bounds becomes a :class:`Check`; a check above its bound fails the run (exit 1). Configuration
errors (unknown profile, target or attack, a missing or malformed thresholds file, a white-box attack on a target
without a gradient) are :class:`RunError` (exit 2), raised before anything is measured.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adversarial import suites as measure
from adversarial.report_types import AttackSpec

THRESHOLDS = Path(__file__).resolve().parent / "thresholds.toml"
SUITES = ("image", "defense", "detector", "text", "poisoning")


class RunError(Exception):
    """The run cannot start as asked; the message names what is wrong (exit code 2)."""


@dataclass(frozen=True)
class Profile:
    name: str
    targets: tuple[str, ...]
    attacks: tuple[AttackSpec, ...]
    n_images: int
    image_size: int
    purify: str  # the live purification evaluated (MEDIAGATE_SCORE_PURIFY)
    defended_attack: str  # the attack evaluated against it, undefended vs non-adaptive vs adaptive
    eot_samples: int
    detector_clean: int
    text_profile: str


def _attacks(pgd_steps: int, square_queries: int) -> tuple[AttackSpec, ...]:
    specs = [AttackSpec(f"fgsm-{e}", "fgsm", e / 255) for e in (2, 4, 8)]
    specs += [AttackSpec(f"pgd-{e}", "pgd", e / 255, steps=pgd_steps) for e in (2, 4, 8)]
    specs.append(AttackSpec("pgd_l2-1", "pgd_l2", 1.0, steps=pgd_steps))
    specs.append(AttackSpec("square-8", "square", 8 / 255, queries=square_queries))
    return tuple(specs)


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", ("nsfw", "quality", "brand"), _attacks(pgd_steps=5, square_queries=50), n_images=4,
                  image_size=224, purify="jpeg:75", defended_attack="pgd-8", eot_samples=4, detector_clean=20,
                  text_profile="ci"),
    "full": Profile("full", ("nsfw", "quality", "brand", "nsfw-onnx"), _attacks(pgd_steps=20, square_queries=1000),
                    n_images=12, image_size=256, purify="jpeg:75", defended_attack="pgd-8", eot_samples=8,
                    detector_clean=40, text_profile="full"),
}


@dataclass
class Check:
    """One measured figure of one suite x target x budget: a JUnit test case."""

    suite: str
    target: str
    budget: str
    metric: str
    value: float | None
    limit: float | None
    kind: str = "max"  # "max": value <= limit passes; "min": value >= limit passes
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.suite}.{self.target}.{self.budget}"

    @property
    def passed(self) -> bool:
        if self.limit is None or self.value is None:
            return True  # reported, not bounded
        return self.value <= self.limit if self.kind == "max" else self.value >= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "target": self.target, "budget": self.budget, "metric": self.metric,
                "value": self.value, "limit": self.limit, "kind": self.kind, "passed": self.passed,
                "seconds": round(self.seconds, 3), "details": self.details}


@dataclass
class Report:
    profile: str
    started: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    suite_seconds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def violations(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "started": self.started, "seconds": round(self.seconds, 2),
                "suite_seconds": {k: round(v, 2) for k, v in self.suite_seconds.items()},
                "passed": not self.violations, "violations": [c.key for c in self.violations],
                "checks": [c.as_dict() for c in self.checks], **self.extra}


# -- thresholds ----------------------------------------------------------------------------------------------------

def load_thresholds(path: Path, profile: str) -> dict[str, Any]:
    """The profile's table of the thresholds file (``[<profile>.<suite>...]``); every problem is a RunError naming
    the file and the key. A stronger profile flips more, so each profile has its own bounds."""
    if not path.is_file():
        raise RunError(f"thresholds file {str(path)!r} does not exist")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"thresholds file {str(path)!r} is not valid TOML: {exc}") from exc
    stray = sorted(set(document) - set(PROFILES))
    if stray:
        raise RunError(f"thresholds file {str(path)!r}: unknown profiles {stray} (known: {', '.join(PROFILES)})")
    if profile not in document:
        raise RunError(f"thresholds file {str(path)!r} has no [{profile}] table: no bounds for profile {profile!r}")
    data = document[profile]
    unknown = sorted(set(data) - set(SUITES))
    if unknown:
        raise RunError(f"thresholds file {str(path)!r}: unknown tables {unknown} in [{profile}] "
                       f"(known: {', '.join(SUITES)})")

    def walk(node: Mapping[str, Any], where: str) -> None:
        for key, value in node.items():
            if isinstance(value, Mapping):
                walk(value, f"{where}.{key}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise RunError(f"thresholds file {str(path)!r}: `{where}.{key}` must be a number >= 0, not {value!r}")

    walk(data, profile)
    return dict(data)


def limit(thresholds: Mapping[str, Any], *keys: str) -> float | None:
    node: Any = thresholds
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) else None


def check_plan(profile: Profile, targets: Sequence[str], attacks: Sequence[str], *, strict: bool = True
               ) -> tuple[list[str], list[AttackSpec]]:
    """The targets and attacks to run; unknown names are refused, and so are white-box attacks on a gradient-free
    target when the caller chose them (``strict``; a profile's own defaults pair them, and the suite skips the
    white-box attacks on that target)."""
    from adversarial.targets import TARGETS

    unknown_targets = [t for t in targets if t not in TARGETS]
    if unknown_targets:
        raise RunError(f"unknown targets {unknown_targets} (known: {', '.join(TARGETS)})")
    by_name = {spec.name: spec for spec in profile.attacks}
    unknown_attacks = [a for a in attacks if a not in by_name]
    if unknown_attacks:
        raise RunError(f"unknown attacks {unknown_attacks} for profile {profile.name!r} (known: {', '.join(by_name)})")
    specs = [by_name[a] for a in attacks]
    gradient_free = [t for t in targets if t == "nsfw-onnx"]
    white_box = [s.name for s in specs if s.white_box]
    if strict and gradient_free and white_box:
        raise RunError(f"target {gradient_free[0]!r} is not differentiable (onnxruntime has no gradient), so the "
                       f"white-box attacks {white_box} cannot run on it; use a score-based attack (square-8) or the "
                       "differentiable target 'nsfw'")
    return list(targets), specs


def run(profile_name: str, *, thresholds_path: Path = THRESHOLDS, policy_dir: Path, scratch: Path,
        targets: Sequence[str] | None = None, attacks: Sequence[str] | None = None, suites: Sequence[str] = SUITES,
        clip_dir: Path | None = None, seed: int = 0,
        progress: Callable[[str], None] = lambda _: None) -> Report:
    """Run the profile; raises RunError before measuring anything when the request is malformed."""
    if profile_name not in PROFILES:
        raise RunError(f"unknown profile {profile_name!r} (known: {', '.join(PROFILES)})")
    profile = PROFILES[profile_name]
    unknown_suites = [s for s in suites if s not in SUITES]
    if unknown_suites:
        raise RunError(f"unknown suites {unknown_suites} (known: {', '.join(SUITES)})")
    thresholds = load_thresholds(thresholds_path, profile.name)
    target_names, specs = check_plan(profile, targets or profile.targets,
                                     attacks or [s.name for s in profile.attacks],
                                     strict=targets is not None or attacks is not None)
    report = Report(profile.name, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    started = time.perf_counter()
    images = measure.sample_images(profile.n_images, profile.image_size, seed)
    built: list[Any] = []
    image_suites = {"image", "defense", "detector"} & set(suites)
    if image_suites:
        from adversarial.targets import build_targets
        from quality.clip_model import build_tiny_clip

        brand_kit, clip = None, clip_dir
        if "brand" in target_names:
            if clip is None:
                clip = build_tiny_clip(scratch / "clip-tiny")
            brand_kit = measure.demo_brand_kit(scratch / "brands", images[0])
        progress(f"building targets {', '.join(target_names)}")
        built = build_targets(target_names, clip_dir=clip, brand_kit=brand_kit)
    examples: list[dict[str, Any]] = []
    adversarial: dict[str, Any] = {}
    for suite in SUITES:
        if suite not in suites:
            continue
        progress(f"suite {suite}")
        start = time.perf_counter()
        if suite == "image":
            adversarial = measure.image_suite(report, built, images, specs, thresholds, examples)
        elif suite == "defense":
            measure.defense_suite(report, built, images, profile, thresholds)
        elif suite == "detector":
            measure.detector_suite(report, built, adversarial, profile, thresholds, seed)
        elif suite == "text":
            measure.text_suite(report, policy_dir, profile, thresholds, seed)
        else:
            measure.poisoning_suite(report, policy_dir, thresholds, scratch)
        report.suite_seconds[suite] = time.perf_counter() - start
    report.seconds = time.perf_counter() - started
    report.extra["examples"] = examples[:12]
    report.extra["images"] = {"count": len(images), "size": profile.image_size}
    report.extra["targets"] = [{"name": t.name, "description": t.description} for t in built]
    return report
