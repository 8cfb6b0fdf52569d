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
                 metrics: Metrics) -> None:
        self.scorers = list(scorers)
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


def build_scorers(settings: Settings) -> list[Scorer]:
    """The scorers ``MEDIAGATE_SCORERS`` names, loaded (their models too); an unknown name stops the gateway."""
    from quality.nsfw import OpenNsfwScorer
    from quality.perceptual import PerceptualScorer

    known: dict[str, Any] = {"perceptual": PerceptualScorer, "nsfw": OpenNsfwScorer}
    unknown = [n for n in settings.scorers if n not in known]
    if unknown:
        raise ValueError(f"MEDIAGATE_SCORERS names unknown scorers {unknown}; known: {sorted(known)}")
    return [known[n]() for n in settings.scorers]


def build_brands(settings: Settings) -> BrandDirectory:
    return NoBrands()
