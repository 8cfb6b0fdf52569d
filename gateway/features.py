"""Prompt features the pre-policy decides on, computed before it runs: ``input.features`` in Rego.

The normalised readings of the request text (``quality.prompt_text``) and its semantic similarity to each banned
concept of the active bundle's catalogue (``quality.concepts``). Failing to compute them is a 503 (fail closed);
the policy also denies a request whose features are missing, so neither side can wave a request through.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gateway.errors import DependencyUnavailable
from gateway.metrics import Metrics
from quality.prompt_text import normalize_prompt


class ConceptSimilarity(Protocol):
    name: str
    revision: str

    def best_similarities(self, texts: Sequence[str], concepts: Mapping[str, Sequence[str]]) -> dict[str, float]:
        """Per concept, the highest similarity of any of ``texts`` (and their clauses) to its examples."""
        ...


class PromptFeatures:
    """Computes features, remembering the last ``cache_size`` results.

    Features are a pure function of the text, the concept catalogue and the model, so a repeated text (a campaign
    rendering the same headline, a retried request) reuses them; the key includes the catalogue's content, so a
    new bundle with new examples never sees stale similarities.
    """

    def __init__(self, matcher: ConceptSimilarity, metrics: Metrics, *, cache_size: int = 4096) -> None:
        self.matcher = matcher
        self.metrics = metrics
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def compute(self, text: str, catalogue: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        key = (text, json.dumps(catalogue, sort_keys=True))
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                self.metrics.features_cache.labels("hit").inc()
                return copy.deepcopy(cached)
        self.metrics.features_cache.labels("miss").inc()
        features = self._compute(text, catalogue)
        if self.cache_size > 0:
            with self._lock:
                self._cache[key] = copy.deepcopy(features)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return features

    def _compute(self, text: str, catalogue: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            features: dict[str, Any] = normalize_prompt(text).as_dict()
            # Embed the readings a tokenizer understands (homoglyphs and leetspeak undone); the best one counts.
            readings = list(dict.fromkeys([features["normalized"], features["folded"]]))
            features["concepts"] = self.matcher.best_similarities(readings, catalogue) if catalogue else {}
        except Exception as exc:  # noqa: BLE001 - no features, no decision: fail closed
            raise DependencyUnavailable(f"prompt features could not be computed: {type(exc).__name__}: {exc}") from exc
        finally:
            self.metrics.features_seconds.observe(time.perf_counter() - start)
        features["model"] = {"name": self.matcher.name, "revision": self.matcher.revision}
        return features
