"""Stage [3] of the flow: what each image is compared with (``ScoreContext``), and the scorers run over the batch.

The context is built from the request and the policy bundle, never from the scorers' own configuration: the
tenant's banned terms come from ``data.mediagate.release.score_context`` (so trust teams edit them in one place), the
brand kit from the tenant's brand directory, and the texts a banner should show from the template request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from PIL import Image

from gateway.auth import Principal
from gateway.errors import DependencyUnavailable, InvalidInput
from gateway.metrics import Metrics
from gateway.policy.base import PolicyEngineError
from gateway.policy.manager import PolicyManager
from gateway.settings import Settings
from quality.base import ImageContext, ScoreCard, ScoreContext, Scorer, score_images

SCORE_CONTEXT = "data.mediagate.release.score_context"


class BrandDirectory(Protocol):
    """The brand kits the gateway loaded: ``get`` answers None for a brand the tenant does not have."""

    def get(self, tenant: str, brand: str) -> Any: ...

    def names(self, tenant: str) -> list[str]: ...


class NoBrands:
    """No brand directory: every brand is unknown."""

    def get(self, tenant: str, brand: str) -> Any:
        return None

    def names(self, tenant: str) -> list[str]:
        return []


class Scoring:
    """The configured scorers, the brand kits, and the policy data a score context needs."""

    def __init__(self, *, scorers: Sequence[Scorer], brands: BrandDirectory, policy: PolicyManager,
                 metrics: Metrics, purify: str | None = None) -> None:
        self.scorers = list(scorers)
        self.purifier = None
        if purify:  # input purification (adversarial.defenses): the scorers judge a re-encoded copy of each image
            from adversarial.defenses import Purifier

            self.purifier = Purifier.from_spec(purify)
        self.brands = brands
        self.policy = policy
        self.metrics = metrics

    def brand_kit(self, tenant: str, brand: str | None) -> Any:
        """The tenant's kit named ``brand`` (None for no brand); an unknown brand is the client's error (422)."""
        if brand is None:
            return None
        kit = self.brands.get(tenant, brand)
        if kit is None:
            known = self.brands.names(tenant)
            raise InvalidInput("brand", "known_brand", f"`brand` {brand!r} is not a brand kit of tenant {tenant!r}"
                               f" (known: {', '.join(known) if known else 'none'})")
        return kit

    def banned_terms(self, tenant: str) -> tuple[str, ...]:
        """The tenant's banned terms from the active bundle. No answer means no scoring: fail closed (503)."""
        try:
            raw = self.policy.evaluate(SCORE_CONTEXT, {"principal": {"tenant": tenant}})
        except PolicyEngineError as exc:
            raise DependencyUnavailable(f"the policy bundle gave no score context: {exc}") from exc
        terms = raw.get("banned_terms") if isinstance(raw, Mapping) else None
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise DependencyUnavailable(f"{SCORE_CONTEXT}.banned_terms must be a list of strings, not {terms!r}")
        return tuple(terms)

    def context(self, principal: Principal, *, kind: str, prompt: str | None, brand: Any,
                images: Sequence[ImageContext]) -> ScoreContext:
        return ScoreContext(tenant=principal.tenant, kind=kind,  # type: ignore[arg-type]
                            prompt=prompt, banned_terms=self.banned_terms(principal.tenant), brand=brand,
                            images=tuple(images))

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[ScoreCard]:
        """Every scorer over the batch; with ``MEDIAGATE_SCORE_PURIFY`` they judge the purified copies (the released
        files are the originals: purification is a defence of the judgement, not an edit of the asset)."""
        if self.purifier is not None:
            images = self.purifier(images)
        return score_images(self.scorers, images, context,
                            observe=lambda name, s: self.metrics.scoring_seconds.labels(name).observe(s))


def expected_texts(kind: str, fields: Mapping[str, str], locale: str | None,
                   locales: Sequence[Mapping[str, Any]], n: int) -> list[ImageContext]:
    """Per image, the locale and the slot texts a template request asked for (nothing for a prompt request)."""
    if kind != "template":
        return [ImageContext() for _ in range(n)]
    if locales:
        return [ImageContext(loc["locale"], tuple(v for v in loc["fields"].values() if v)) for loc in locales]
    return [ImageContext(locale, tuple(v for v in fields.values() if v)) for _ in range(n)]


SCORERS = ("perceptual", "brisque", "nsfw", "nudity", "ocr", "brand", "alignment", "interrogator", "squeeze")
CLIP_SCORERS = ("brand", "alignment", "interrogator")


def scorer_names(settings: Settings) -> list[str]:
    """``MEDIAGATE_SCORERS``, plus the interrogator where ``MEDIAGATE_INTERROGATOR`` turns it on (``auto``: on a
    GPU only, because captioning costs seconds per image on a CPU)."""
    names = list(settings.scorers)
    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        raise ValueError(f"MEDIAGATE_SCORERS names unknown scorers {unknown}; known: {', '.join(SCORERS)}")
    wanted = settings.interrogator == "on" or (settings.interrogator == "auto" and resolve_device(
        settings.score_device) == "cuda")
    if wanted and "interrogator" not in names:
        names.append("interrogator")
    if settings.interrogator == "off" and "interrogator" in names:
        names.remove("interrogator")
    return names


def resolve_device(device: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def build_scorers(settings: Settings) -> list[Scorer]:
    """The configured scorers, with their models loaded; a bad name or an unloadable model stops the gateway.

    Demo CLIP and caption models (tiny, seeded, random) are built on first start where ``init_demo_models`` allows
    and the directories are the default ones; real deployments point the settings at exported weights."""
    names = scorer_names(settings)
    clip: Any = None
    if any(n in CLIP_SCORERS for n in names):
        from quality.clip_model import ClipModel, build_tiny_clip

        assert settings.clip_model_dir is not None
        if settings.init_demo_models and not settings.clip_model_dir.exists():
            build_tiny_clip(settings.clip_model_dir)
        clip = ClipModel(settings.clip_model_dir, device=settings.score_device, batch_size=settings.clip_batch_size)
    scorers: list[Scorer] = []
    for name in names:
        scorers.append(_build_one(name, settings, clip))
    return scorers


def _build_one(name: str, settings: Settings, clip: Any) -> Scorer:
    if name == "perceptual":
        from quality.perceptual import PerceptualScorer

        return PerceptualScorer()
    if name == "brisque":
        from quality.brisque import BrisqueScorer

        return BrisqueScorer()
    if name == "nsfw":
        from quality.nsfw import OpenNsfwScorer

        return OpenNsfwScorer()
    if name == "nudity":
        from quality.nudity import NudeNetScorer

        return NudeNetScorer()
    if name == "ocr":
        from quality.ocr import OcrScorer

        return OcrScorer()
    if name == "squeeze":
        from quality.squeezing import SqueezeScorer

        return SqueezeScorer(threshold=settings.squeeze_threshold)
    if name == "brand":
        from quality.brand_score import BrandScorer

        return BrandScorer(clip)
    if name == "alignment":
        from quality.alignment import AlignmentScorer

        return AlignmentScorer(clip)
    from quality.caption_model import build_tiny_blip, load_caption_model
    from quality.interrogate import InterrogatorScorer

    assert settings.caption_model_dir is not None and settings.interrogator_cache_dir is not None
    if settings.init_demo_models and not settings.caption_model_dir.exists():
        build_tiny_blip(settings.caption_model_dir)
    caption = load_caption_model(settings.caption_model_dir, device=resolve_device(settings.score_device))
    return InterrogatorScorer(clip.model, clip.preprocess, clip.tokenizer, clip_revision=clip.revision,
                              caption=caption, cache_dir=settings.interrogator_cache_dir,
                              data_path=settings.interrogator_data_dir)


def build_brands(settings: Settings) -> BrandDirectory:
    """The brand kits under ``MEDIAGATE_BRANDS_DIR`` (``<tenant>/<brand>/brand.yaml``); none when it is absent."""
    assert settings.brands_dir is not None
    if not settings.brands_dir.exists():
        return NoBrands()
    from quality.brand import load_brand_kits

    return load_brand_kits(settings.brands_dir)  # type: ignore[no-any-return]
