"""The suites ``mediagate adversarial run`` runs (see :mod:`adversarial.runner`): each measures its figures and adds
one :class:`~adversarial.runner.Check` per suite x target x budget to the report, bounded by the profile's
thresholds."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from adversarial.report_types import AttackSpec

if TYPE_CHECKING:
    from adversarial.runner import Profile, Report


def _check(*args: Any, **kwargs: Any) -> Any:
    from adversarial.runner import Check

    return Check(*args, **kwargs)


def _limit(thresholds: Mapping[str, Any], *keys: str) -> float | None:
    from adversarial.runner import limit

    return limit(thresholds, *keys)


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
            report.checks.append(_check(
                "image", target.name, spec.name, "flip_rate", result.flip_rate,
                _limit(thresholds, "image", target.name, spec.name), seconds=result.attack_seconds,
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
                report.checks.append(_check(
                    "defense", target.name, f"{spec.name}.{profile.purify}.{row}", "flip_rate", result.flip_rate,
                    _limit(thresholds, "defense", target.name, row), seconds=result.attack_seconds,
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
        report.checks.append(_check(
            "detector", target.name, "feature-squeezing.pgd-8", "detection_rate",
            detection.detection_rate if detection is not None else None,
            _limit(thresholds, "detector", target.name, "min_detection_rate"), kind="min", seconds=seconds,
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
    report.checks.append(_check("text", "pre-policy", "obfuscated should-deny prompts", "evasion_rate",
                               result.evasion_rate, _limit(thresholds, "text", "max_evasion_rate"),
                               seconds=seconds, details=summary))
    report.checks.append(_check("text", "pre-policy", "disguised prompts whose plain form is denied",
                               "obfuscation_evasion_rate", result.obfuscation.rate,
                               _limit(thresholds, "text", "max_obfuscation_evasion_rate"), seconds=0.0))
    report.checks.append(_check("text", "pre-policy", "benign prompts", "false_denial_rate",
                               result.false_denial_rate, _limit(thresholds, "text", "max_false_denial_rate"),
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
    report.checks.append(_check("poisoning", "gateway", "hostile inputs", "failures", float(len(result.failures)),
                               _limit(thresholds, "poisoning", "max_failures"), seconds=result.seconds,
                               details=result.as_dict()))
    dead = 0.0 if result.gateway_alive else 1.0
    report.checks.append(_check("poisoning", "gateway", "alive afterwards", "dead", dead, 0.0, seconds=0.0))


