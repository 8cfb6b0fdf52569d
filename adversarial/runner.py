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

import numpy as np
from PIL import Image

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


# -- images --------------------------------------------------------------------------------------------------------

def sample_images(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    """Redistributable test images: scikit-image's bundled photographs, then 1/f^2 textures, ``size`` square; every
    other one blurred (Gaussian, radius 2.5), so that some images sit near the quality gate's threshold, where a
    small perturbation could flip it (a gate is only as robust as its least certain verdicts)."""
    from PIL import ImageFilter

    return [image.filter(ImageFilter.GaussianBlur(2.5)) if i % 2 else image
            for i, image in enumerate(_sharp_images(n, size, seed))]


def _sharp_images(n: int, size: int, seed: int) -> list[Image.Image]:
    import skimage.data

    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "cat", "camera", "immunohistochemistry", "retina"):
        try:
            array = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - a sample the installed wheel does not bundle is skipped, never fetched
            continue
        image = Image.fromarray(array).convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        photos.append(image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS))
    rng = np.random.default_rng(seed)
    while len(photos) < n:
        fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
        amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / size)
        channels = [np.real(np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random((size, size)))))
                    for _ in range(3)]
        pixels = np.stack([(c - c.mean()) / (c.std() + 1e-9) for c in channels], axis=-1)
        photos.append(Image.fromarray(np.clip(128 + 40 * pixels, 0, 255).astype(np.uint8), "RGB"))
    return photos[:n]


def demo_brand_kit(directory: Path, reference: Image.Image) -> Any:
    """A brand kit for the brand target when none is configured: a palette, a reference image and descriptors."""
    from quality.brand import load_brand_kit

    kit = directory / "adversarial" / "demo"
    kit.mkdir(parents=True, exist_ok=True)
    reference.save(kit / "reference.png")
    (kit / "brand.yaml").write_text('palette: ["#1d3557", "#e63946", "#f1faee", "#a8dadc"]\npalette_max_delta_e: 15\n'
                                    "references: [reference.png]\ndescriptors: [a clean photograph, natural light]\n"
                                    "off_brand: [a noisy glitch texture]\n")
    return load_brand_kit(kit, "adversarial", "demo")


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


# -- suites --------------------------------------------------------------------------------------------------------

def image_suite(report: Report, targets: Sequence[Any], images: Sequence[Image.Image], specs: Sequence[AttackSpec],
                thresholds: Mapping[str, Any], examples: list[dict[str, Any]]) -> dict[str, Any]:
    from adversarial.image_attacks import run_attack

    adversarial: dict[str, Any] = {}
    for target in targets:
        for spec in specs:
            if spec.white_box and not target.differentiable:
                continue  # the plan refused explicit requests; the profile's own list skips them here
            result = run_attack(target, images, spec, max_examples=2)
            if spec.name == "pgd-8":
                adversarial[target.name] = result
            report.checks.append(Check(
                "image", target.name, spec.name, "flip_rate", result.flip_rate,
                limit(thresholds, "image", target.name, spec.name), seconds=result.attack_seconds,
                details={k: v for k, v in result.as_dict().items() if k != "examples"}))
            examples.extend({"suite": "image", "target": target.name, "attack": spec.name, **pair.as_dict(),
                             **_scores(target, pair)}
                            for pair in result.examples[:1] if pair.adversarial_verdict != pair.clean_verdict)
    return adversarial


def _scores(target: Any, pair: Any) -> dict[str, float]:
    """The gate's score (NSFW probability, quality, brand score) of an example's clean and perturbed image."""
    import base64
    import io

    import torch

    from adversarial.base import to_tensor

    score = getattr(target, "score", None)
    if score is None:
        return {}
    images = [Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
              for data in (pair.clean_png, pair.adversarial_png)]
    with torch.no_grad():
        clean, perturbed = (float(v) for v in score(to_tensor(images)).flatten().tolist())
    return {"clean_score": clean, "adversarial_score": perturbed, "threshold": float(target.threshold)}


def defense_suite(report: Report, targets: Sequence[Any], images: Sequence[Image.Image], profile: Profile,
                  thresholds: Mapping[str, Any]) -> None:
    from adversarial.defenses import Purifier
    from adversarial.image_attacks import evaluate_defense

    purifier = Purifier.from_spec(profile.purify)
    spec = next(s for s in profile.attacks if s.name == profile.defended_attack)
    for target in targets:
        if not target.differentiable:
            continue
        for mode in ("bpda", "eot"):
            comparison = evaluate_defense(target, images, spec, purifier, adaptive_mode=mode,  # type: ignore[arg-type]
                                          eot_samples=profile.eot_samples, max_examples=1)
            rows = {"undefended": comparison.undefended, "non_adaptive": comparison.non_adaptive,
                    f"adaptive_{mode}": comparison.adaptive}
            for row, result in rows.items():
                if row != f"adaptive_{mode}" and mode == "eot":
                    continue  # the undefended and non-adaptive rows are the same for both modes
                report.checks.append(Check(
                    "defense", target.name, f"{spec.name}.{profile.purify}.{row}", "flip_rate", result.flip_rate,
                    limit(thresholds, "defense", target.name, row), seconds=result.attack_seconds,
                    details={k: v for k, v in result.as_dict().items() if k != "examples"}))


def detector_suite(report: Report, targets: Sequence[Any], adversarial: Mapping[str, Any], profile: Profile,
                   thresholds: Mapping[str, Any], seed: int) -> None:
    from adversarial.squeeze import FeatureSqueezer

    clean = sample_images(profile.detector_clean, profile.image_size, seed=seed + 1)
    for target in targets:
        result = adversarial.get(target.name)
        if result is None or not target.differentiable:
            continue
        start = time.perf_counter()
        squeezer = FeatureSqueezer(target)
        threshold = squeezer.calibrate(clean, fpr=0.05)
        flipped = [image for image, outcome in zip(result.adversarial_images, result.outcomes, strict=True)
                   if outcome.flipped]
        detection = squeezer.evaluate(clean, flipped) if flipped else None
        seconds = time.perf_counter() - start
        details = {"threshold": threshold, "calibration_images": len(clean), "adversarial_images": len(flipped)}
        if detection is not None:
            details.update(detection.as_dict())
        report.checks.append(Check(
            "detector", target.name, "feature-squeezing.pgd-8", "detection_rate",
            detection.detection_rate if detection is not None else None,
            limit(thresholds, "detector", target.name, "min_detection_rate"), kind="min", seconds=seconds,
            details=details))


def text_suite(report: Report, policy_dir: Path, profile: Profile, thresholds: Mapping[str, Any],
               seed: int) -> None:
    from adversarial.pre_gate import PreGate
    from adversarial.text_evasion import evaluate

    start = time.perf_counter()
    gate = PreGate(policy_dir)
    try:
        result = evaluate(gate, profile=profile.text_profile, seed=seed)  # type: ignore[arg-type]
    finally:
        gate.close()
    seconds = time.perf_counter() - start
    summary = result.as_dict()
    report.checks.append(Check("text", "pre-policy", "obfuscated should-deny prompts", "evasion_rate",
                               result.evasion_rate, limit(thresholds, "text", "max_evasion_rate"),
                               seconds=seconds, details=summary))
    report.checks.append(Check("text", "pre-policy", "disguised prompts whose plain form is denied",
                               "obfuscation_evasion_rate", result.obfuscation.rate,
                               limit(thresholds, "text", "max_obfuscation_evasion_rate"), seconds=0.0))
    report.checks.append(Check("text", "pre-policy", "benign prompts", "false_denial_rate",
                               result.false_denial_rate, limit(thresholds, "text", "max_false_denial_rate"),
                               seconds=0.0, details={"benign": summary.get("benign")}))


def poisoning_suite(report: Report, policy_dir: Path, thresholds: Mapping[str, Any], scratch: Path) -> None:
    from fastapi.testclient import TestClient

    from adversarial.poisoning import run_poisoning
    from gateway.app import create_app
    from gateway.auth import create_key
    from gateway.settings import Settings

    settings = Settings(home=scratch / "gateway", policy_dir=policy_dir, policy_watch=False, job_workers=1,
                        retention_interval_s=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        _, app_key = create_key(runtime.db, tenant="demo", role="app")
        _, auditor_key = create_key(runtime.db, tenant="demo", role="auditor")
        result = run_poisoning(client, {"Authorization": f"Bearer {app_key}"},
                               {"Authorization": f"Bearer {auditor_key}"}, scratch)
    report.checks.append(Check("poisoning", "gateway", "hostile inputs", "failures", float(len(result.failures)),
                               limit(thresholds, "poisoning", "max_failures"), seconds=result.seconds,
                               details=result.as_dict()))
    report.checks.append(Check("poisoning", "gateway", "alive afterwards", "dead", 0.0 if result.gateway_alive else 1.0,
                               0.0, seconds=0.0))


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
    images = sample_images(profile.n_images, profile.image_size, seed)
    built: list[Any] = []
    image_suites = {"image", "defense", "detector"} & set(suites)
    if image_suites:
        from adversarial.targets import build_targets
        from quality.clip_model import build_tiny_clip

        brand_kit, clip = None, clip_dir
        if "brand" in target_names:
            if clip is None:
                clip = build_tiny_clip(scratch / "clip-tiny")
            brand_kit = demo_brand_kit(scratch / "brands", images[0])
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
            adversarial = image_suite(report, built, images, specs, thresholds, examples)
        elif suite == "defense":
            defense_suite(report, built, images, profile, thresholds)
        elif suite == "detector":
            detector_suite(report, built, adversarial, profile, thresholds, seed)
        elif suite == "text":
            text_suite(report, policy_dir, profile, thresholds, seed)
        else:
            poisoning_suite(report, policy_dir, thresholds, scratch)
        report.suite_seconds[suite] = time.perf_counter() - start
    report.seconds = time.perf_counter() - started
    report.extra["examples"] = examples[:12]
    report.extra["images"] = {"count": len(images), "size": profile.image_size}
    report.extra["targets"] = [{"name": t.name, "description": t.description} for t in built]
    return report
