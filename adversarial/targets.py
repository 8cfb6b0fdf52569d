"""The registry of gate targets: which image decisions an attack suite can aim at, built by name.

Each target wraps one of the release policy's image rules (``policies/mediagate/release/release.rego``) around the
differentiable core of the scorer it reads; its default threshold (``DEFAULT_THRESHOLD`` of its module) is that
rule's default in ``policies/mediagate/config/data.json`` (``defaults.release``), and a tenant's own thresholds are
passed in. Target modules are imported only when built: they load onnxruntime, onnx2torch and open_clip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from adversarial.base import GateTarget
from quality.brand import BrandKit

# target name -> the release rule (and its threshold in defaults.release) it attacks
TARGETS: dict[str, str] = {"nsfw": "nsfw_reject", "quality": "min_quality", "brand": "min_brand",
                           "nsfw-onnx": "nsfw_reject"}


def build_targets(names: Sequence[str], *, clip_dir: Path | str | None = None, brand_kit: BrandKit | None = None,
                  thresholds: Mapping[str, float] | None = None, device: str = "cpu") -> list[GateTarget]:
    """The targets ``names`` asks for, in that order.

    ``brand`` needs ``clip_dir`` (an open_clip model directory, see ``quality.clip_model``: the tiny model in CI,
    the deployed weights otherwise) and ``brand_kit``. ``thresholds`` overrides the policy defaults by target name.
    """
    if isinstance(names, str):
        raise TypeError(f"`names` has to be a sequence of target names, not the string {names!r}")
    if not names:
        # Fail closed: an empty suite would report "no verdict flipped", which reads as robustness.
        raise ValueError(f"`names` has to name at least one target (known: {', '.join(TARGETS)})")
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        raise ValueError(f"`names` has unknown targets {', '.join(map(repr, unknown))} (known: {', '.join(TARGETS)})")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ValueError(f"`names` names {', '.join(repeated)} more than once")
    chosen = dict(thresholds or {})
    stray = sorted(set(chosen) - set(names))
    if stray:
        raise ValueError(f"`thresholds` sets {', '.join(stray)}, which `names` ({', '.join(names)}) does not build")

    targets: list[GateTarget] = []
    for name in names:
        if name == "nsfw":
            from adversarial import target_nsfw

            targets.append(target_nsfw.NsfwTarget(chosen.get(name, target_nsfw.DEFAULT_THRESHOLD), device=device))
        elif name == "nsfw-onnx":  # the production model as a black box: score-based attacks only
            from adversarial import target_nsfw_onnx

            targets.append(target_nsfw_onnx.OnnxNsfwTarget(chosen.get(name, target_nsfw_onnx.DEFAULT_THRESHOLD)))
        elif name == "quality":
            from adversarial import target_quality

            targets.append(target_quality.QualityTarget(chosen.get(name, target_quality.DEFAULT_THRESHOLD)).to(device))
        else:
            if clip_dir is None or brand_kit is None:
                missing = " and ".join(arg for arg, value in (("`clip_dir`", clip_dir), ("`brand_kit`", brand_kit))
                                       if value is None)
                raise ValueError(f"the brand target needs {missing}: the CLIP model directory and the brand kit "
                                 f"whose score it attacks")
            from adversarial import target_brand
            from quality.clip_model import ClipModel

            clip = ClipModel(clip_dir, device=device)
            targets.append(target_brand.BrandTarget(clip, brand_kit, chosen.get(name, target_brand.DEFAULT_THRESHOLD)))
    return targets
