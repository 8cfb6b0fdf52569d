"""The pre-policy as the gateway decides it, for a prompt text, without HTTP: what an evasion suite aims at.

``PreGate`` builds the same parts ``gateway.runtime.build_runtime`` does (a ``PolicyManager`` that activates the
bundle directory through the gate, ``PromptFeatures`` on the sentence-embedding model) and asks them exactly what
``gateway.flow.Flow.run`` asks: features of the request text, then ``decide("pre", ...)`` on the same input
document. So a prompt the gate allows is one the gateway would generate for.

``decide`` writes nothing (no audit entry, no generation row; a shadow bundle, the only writer, is never set).
Activating the bundle records its ``policy.activated`` event, as every start does, in a throw-away SQLite file under
a temporary directory that ``close`` removes.

The sentence-embedding model is the slow part. ``decide_many`` embeds the pieces of all its texts ahead in large
batches (``BatchedMatcher``); the similarities are then computed per prompt by the production ``ConceptMatcher``
code, and ``PromptFeatures`` keeps its own cache of whole texts as in the gateway.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from audit.group_commit import GroupCommitter
from audit.sql_store import SqlAuditStore
from gateway.auth import Principal
from gateway.db import prepare_database
from gateway.features import ConceptSimilarity, PromptFeatures
from gateway.flow import FlowRequest
from gateway.metrics import Metrics
from gateway.policy.embedded import EmbeddedRegoEngine
from gateway.policy.manager import PolicyManager
from gateway.runtime import build_matcher, engine_factory
from gateway.settings import REPO_POLICIES, Settings
from quality.concepts import ConceptMatcher, split_segments
from quality.prompt_text import normalize_prompt

Outcome = Literal["deny", "review", "allow"]


@dataclass(frozen=True)
class GateDecision:
    """The pre-policy's answer for one text: ``result`` as the policy gave it, the deny and review codes."""

    text: str
    result: str  # "allow" | "deny"
    codes: tuple[str, ...]
    review: tuple[str, ...] = ()
    concepts: Mapping[str, float] = field(default_factory=dict)

    @property
    def outcome(self) -> Outcome:
        """``deny``; ``review`` (allowed, but every image is held for a human); ``allow`` (released unreviewed)."""
        if self.result != "allow":
            return "deny"
        return "review" if self.review else "allow"

    def as_dict(self) -> dict[str, Any]:
        return {"result": self.result, "outcome": self.outcome, "codes": list(self.codes), "review": list(self.review),
                "concepts": dict(self.concepts)}


class BatchedMatcher(ConceptMatcher):
    """A ``ConceptMatcher`` whose piece embeddings can be computed ahead, many prompts per batch, and are kept.

    ``best_similarities`` is the production method, unchanged: only ``_encode`` looks a piece up before embedding
    it. It shares the loaded model of ``inner`` (no second load) but not its caches. Embedding a piece in a batch
    of other prompts' pieces instead of its own prompt's changes its vector by float rounding only (padding is
    masked), as production's own batches already do; similarities are rounded to 4 decimals after. It has its own
    lock, so it must not run at the same time as ``inner`` on another thread (one evaluation at a time does not).
    """

    def __init__(self, inner: ConceptMatcher, *, prefetch_batch_size: int = 64) -> None:
        # Deliberately not super().__init__(): that would load the weights again.
        self.model_dir, self.name, self.device = inner.model_dir, inner.name, inner.device
        self.revision, self.batch_size, self._model = inner.revision, inner.batch_size, inner._model
        self._lock = threading.Lock()
        self._catalogues = OrderedDict()
        self.texts_encoded = 0
        self.prefetch_batch_size = prefetch_batch_size
        self._vectors: dict[str, np.ndarray] = {}

    def _encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, super()._encode(missing), strict=True))
        return np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)

    def prefetch(self, readings: Iterable[str]) -> None:
        """Embed every scored piece of ``readings`` not embedded yet, ``prefetch_batch_size`` pieces per batch."""
        pieces = [p for p in dict.fromkeys(p for r in readings for p in split_segments(r)) if p not in self._vectors]
        if not pieces:
            return
        with self._lock:
            batch_size, self.batch_size = self.batch_size, self.prefetch_batch_size
            try:
                self._encode(pieces)
            finally:
                self.batch_size = batch_size


class PreGate:
    """Real pre-policy decisions for prompt texts, as principal ``tenant``/``role`` asking ``model`` at ``size``.

    ``matcher``: a loaded ``ConceptSimilarity`` to share (the model load is the slow part); default: the one
    ``build_matcher`` loads. A ``ConceptMatcher`` is wrapped in a ``BatchedMatcher`` (same model, own caches).
    ``policy_dir``: the bundle directory (default: the repo's ``policies/``). Use as a context manager, or call
    ``close``.
    """

    def __init__(
        self, policy_dir: Path | None = None, *, tenant: str = "demo", role: str = "app", model: str = "demo-tiny",
        size: tuple[int, int] = (128, 128), matcher: ConceptSimilarity | None = None, settings: Settings | None = None,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="mediagate-pregate-")
        self._closers: list[Callable[[], object]] = [self._tmp.cleanup]  # run last-in first-out by close()
        home = Path(self._tmp.name)
        self.settings = settings or Settings(home=home, policy_dir=policy_dir or REPO_POLICIES, policy_watch=False)
        self.principal = Principal(tenant=tenant, role=role, key_id="adversarial-text-evasion")
        self.model = model
        self.size = size
        self.metrics = Metrics()
        try:
            self.db = prepare_database(f"sqlite:///{home / 'pregate.db'}", None)
            self._closers.append(self.db.dispose)
            self.committer = GroupCommitter(self.db)
            self._closers.append(self.committer.close)
            self.policy = PolicyManager(
                db=self.db, committer=self.committer, audit=SqlAuditStore(), metrics=self.metrics,
                engine_factory=engine_factory(self.settings),
                shadow_engine_factory=lambda bundle: EmbeddedRegoEngine(bundle, workers=1),
                max_bundle_bytes=self.settings.policy_max_bundle_bytes,
            )
            self._closers.append(self.policy.close)
            self.policy.start(policy_dir or self.settings.policy_dir)
            loaded = matcher if matcher is not None else build_matcher(self.settings)
            self.matcher: ConceptSimilarity = BatchedMatcher(loaded) if isinstance(loaded, ConceptMatcher) else loaded
            self.features = PromptFeatures(self.matcher, self.metrics, cache_size=self.settings.features_cache_size)
            settings_doc = self.policy.evaluate("data.mediagate.pre.settings", {"principal": self.principal.as_dict()})
        except BaseException:
            self.close()
            raise
        self.banned_terms: tuple[str, ...] = tuple(settings_doc.get("banned_terms", ()))
        self.banned_concepts: tuple[str, ...] = tuple(settings_doc.get("banned_concepts", ()))
        config = self.policy.active.bundle.data.get("mediagate", {}).get("config", {})
        self.concepts: dict[str, Any] = dict(config.get("concepts", {}))  # {id: {title, threshold, examples}}

    @property
    def revision(self) -> str:
        return self.policy.revision

    def request(self, text: str) -> FlowRequest:
        """The request the gateway would build for ``POST /v1/generations`` with this prompt."""
        width, height = self.size
        return FlowRequest(kind="prompt", model=self.model, width=width, height=height, n=1, seed=0, prompt=text)

    def decide(self, text: str) -> GateDecision:
        """The pre-policy decision, computed as ``Flow.run`` computes it (features, input document, decide)."""
        req = self.request(text)
        features = self.features.compute(req.text, self.policy.active.catalogue)
        base_input = {
            "principal": self.principal.as_dict(),
            "request": {**req.as_dict(), "text": req.text},
            "features": features,
            "context": {"time": datetime.now(UTC).isoformat(), "usage": {}},  # Flow._usage: {} for a prompt
        }
        pre = self.policy.decide("pre", base_input, ref="adversarial", tenant=self.principal.tenant)
        review = tuple(str(r.get("code", "")) for r in pre.obligations.get("review_reasons", ()))
        return GateDecision(text, pre.result, tuple(pre.codes), review, dict(features.get("concepts", {})))

    def decide_many(self, texts: Sequence[str]) -> list[GateDecision]:
        """``decide`` for each text, each distinct text once; their embeddings computed ahead in large batches."""
        unique = list(dict.fromkeys(texts))
        if isinstance(self.matcher, BatchedMatcher):
            self.matcher.prefetch(r for text in unique for r in _readings(self.request(text).text))
        done = {text: self.decide(text) for text in unique}
        return [done[text] for text in texts]

    def close(self) -> None:
        """Stop the engine threads and the committer, and remove the temporary database. Idempotent."""
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> PreGate:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _readings(text: str) -> list[str]:
    """The readings ``PromptFeatures`` embeds for ``text`` (normalised and folded)."""
    normalized = normalize_prompt(text)
    return list(dict.fromkeys([normalized.normalized, normalized.folded]))
