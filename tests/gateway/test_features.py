"""``PromptFeatures``: the real normaliser and model, a cache keyed by text and catalogue, and fail-closed errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from gateway.errors import DependencyUnavailable
from gateway.features import PromptFeatures
from gateway.metrics import Metrics

CATALOGUE = {"violence.gore": ["graphic gore", "dismembered bodies"]}


def cache_count(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("mediagate_prompt_features_cache_total", {"result": result}) or 0.0


def test_repeated_text_is_served_from_the_cache(shared_matcher: Any) -> None:
    metrics = Metrics()
    features = PromptFeatures(shared_matcher, metrics)
    first = features.compute("a red bicycle", CATALOGUE)
    before = shared_matcher.texts_encoded
    again = features.compute("a red bicycle", CATALOGUE)
    assert again == first and shared_matcher.texts_encoded == before
    assert (cache_count(metrics, "miss"), cache_count(metrics, "hit")) == (1.0, 1.0)
    again["concepts"]["violence.gore"] = 1.0  # a caller's change must not leak into the cache
    assert features.compute("a red bicycle", CATALOGUE) == first


def test_a_new_catalogue_is_not_served_stale_similarities(shared_matcher: Any) -> None:
    features = PromptFeatures(shared_matcher, Metrics())
    old = features.compute("a bloody massacre", CATALOGUE)
    new = features.compute("a bloody massacre", {**CATALOGUE, "self_harm": ["a person cutting their wrists"]})
    assert set(old["concepts"]) == {"violence.gore"}
    assert set(new["concepts"]) == {"violence.gore", "self_harm"}


def test_cache_is_bounded(shared_matcher: Any) -> None:
    metrics = Metrics()
    features = PromptFeatures(shared_matcher, metrics, cache_size=2)
    for text in ("one", "two", "three", "one"):
        features.compute(text, CATALOGUE)
    assert cache_count(metrics, "miss") == 4.0  # "one" was evicted by "three"


class BrokenMatcher:
    name, revision = "broken", "sha256:0"

    def best_similarities(self, texts: Sequence[str], concepts: Mapping[str, Sequence[str]]) -> dict[str, float]:
        raise RuntimeError("weights unreadable")


def test_a_failing_model_is_503_not_a_default() -> None:
    with pytest.raises(DependencyUnavailable, match="prompt features could not be computed: RuntimeError"):
        PromptFeatures(BrokenMatcher(), Metrics()).compute("a cat", CATALOGUE)


def test_empty_catalogue_needs_no_model() -> None:
    out = PromptFeatures(BrokenMatcher(), Metrics()).compute("a c\u0430t", {})
    assert out["concepts"] == {} and out["mixed_script"] is True
